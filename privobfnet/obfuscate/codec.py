"""Decoding inputs upright and re-encoding outputs from pixels alone, written atomically.

Decoding is ``privobfnet.data.images.load_rgb``: every mode to RGB, the EXIF orientation applied (a
phone photo comes out the way it looks), corrupt files and decompression bombs refused with errors
naming the file.

Encoding builds a fresh image from the RGB array: nothing of the input's metadata (EXIF, GPS, XMP,
IPTC, ICC profile, comments, PNG text chunks) can reach the output, because none of it is passed
to the encoder. JPEG inputs give JPEG outputs (quality 95); every other format gives PNG.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from privobfnet.data.errors import DataError
from privobfnet.data.images import load_rgb

JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")
JPEG_QUALITY = 95


def decode_upright(path: str | os.PathLike, *, max_pixels: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file of any mode, EXIF orientation applied (``load_rgb``);
    ``DataError`` naming the file and the rule it broke."""
    return load_rgb(path, max_pixels=max_pixels)


def output_format(path: str | os.PathLike) -> str:
    """PIL format name of the output for an input path: JPEG for JPEG inputs, else PNG."""
    return "JPEG" if Path(path).suffix.lower() in JPEG_SUFFIXES else "PNG"


def encode(image: np.ndarray, fmt: str) -> bytes:
    """(H, W, 3) uint8 RGB -> encoded bytes with no metadata at all (pixels only)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {image.dtype} {image.shape}")
    fresh = Image.frombytes(
        "RGB", (image.shape[1], image.shape[0]), np.ascontiguousarray(image).tobytes()
    )
    buffer = io.BytesIO()
    if fmt == "JPEG":
        fresh.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    elif fmt == "PNG":
        fresh.save(buffer, format="PNG")
    else:
        raise ValueError(f"unsupported output format {fmt!r} (JPEG or PNG)")
    return buffer.getvalue()


def output_path(source: str | os.PathLike, out_dir: str | os.PathLike, suffix: str = "") -> Path:
    """Where the output of ``source`` goes: ``out_dir/<stem><suffix>.<jpg|png>``."""
    source = Path(source)
    extension = ".jpg" if output_format(source) == "JPEG" else ".png"
    return Path(out_dir) / f"{source.stem}{suffix}{extension}"


def check_outputs(pairs: Iterable[tuple[Path, Path]], *, suffix: str = "") -> None:
    """Refuse a plan that would overwrite an input, write two inputs to one output, or write into an
    input's own folder without a ``suffix`` (the output would be mistaken for the original)."""
    pairs = list(pairs)
    inputs = {Path(os.path.realpath(s)) for s, _ in pairs}
    seen: dict[Path, Path] = {}
    for source, target in pairs:
        real = Path(os.path.realpath(target))
        if not suffix and real.parent == Path(os.path.realpath(source)).parent:
            raise ValueError(
                f"{target}: output folder is the input's folder; choose another --out or give a "
                "--suffix"
            )
        if real in inputs:
            raise ValueError(
                f"{target}: output would overwrite an input; choose another --out or a --suffix"
            )
        if real in seen:
            raise ValueError(
                f"{seen[real]} and {source} would both be written to {target}; use separate "
                "folders or rename one"
            )
        seen[real] = Path(source)


__all__ = [
    "DataError",
    "check_outputs",
    "decode_upright",
    "encode",
    "output_format",
    "output_path",
]
