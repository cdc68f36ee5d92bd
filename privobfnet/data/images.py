"""Safe image and mask decoding: every refusal names the file and the rule it broke."""
from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image

from privobfnet.data.errors import DataError

IGNORE_INDEX = 255  # VOC's "void" label in class masks


def _open(path: str | os.PathLike, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and refuse images larger than ``max_pixels`` before decoding."""
    if not os.path.exists(path):
        raise DataError(path, "file missing")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(path, "image too large (decompression bomb guard)", str(exc)) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(path, "not a readable image", str(exc)) from None
    w, h = img.size
    if w * h > max_pixels:
        img.close()
        raise DataError(
            path, "image too large (decompression bomb guard)", f"{w}x{h} = {w * h} pixels > {max_pixels}"
        )
    return img


def image_size(path: str | os.PathLike, *, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the header alone."""
    with _open(path, max_pixels) as img:
        return img.size


def load_rgb(path: str | os.PathLike, *, max_pixels: int, allow_grayscale: bool = True) -> np.ndarray:
    """Decode an 8-bit RGB image to a (H, W, 3) uint8 array.

    8-bit grayscale (L) and palette (P, no transparency) are converted to RGB when allowed.
    Refused: alpha channels (what lies under the alpha is ambiguous), 16-bit and float images
    (their scaling is ambiguous), CMYK and other exotic modes, truncated or corrupt files.
    """
    with _open(path, max_pixels) as img:
        mode = img.mode
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
            raise DataError(path, "image has an alpha channel", f"mode {mode}; expected 8-bit RGB")
        if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            raise DataError(path, "16-bit or float image", f"mode {mode}; expected 8-bit RGB")
        if mode in ("L", "P") and not allow_grayscale:
            raise DataError(path, "grayscale image", f"mode {mode}; expected 8-bit RGB")
        if mode not in ("RGB", "L", "P"):
            raise DataError(path, "unsupported image mode", f"mode {mode}; expected 8-bit RGB")
        try:
            img.load()
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(path, "corrupt or truncated image", str(exc)) from None
        arr = np.asarray(img.convert("RGB"))
    return arr


def load_mask(path: str | os.PathLike, *, n_classes: int, max_pixels: int) -> np.ndarray:
    """Decode a VOC-style class mask (palette or 8-bit grayscale PNG) to (H, W) uint8.

    Values must be 0 (background), 1..n_classes (class index + 1) or 255 (ignore).
    """
    with _open(path, max_pixels) as img:
        if img.mode not in ("P", "L"):
            raise DataError(path, "class mask must be a palette or 8-bit PNG", f"mode {img.mode}")
        try:
            img.load()
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(path, "corrupt or truncated mask", str(exc)) from None
        arr = np.array(img)  # palette indices, not colours
    bad = (arr > n_classes) & (arr != IGNORE_INDEX)
    if bad.any():
        values = sorted(int(v) for v in np.unique(arr[bad]))[:5]
        raise DataError(path, "mask label out of range", f"values {values} not in 0..{n_classes} or 255")
    return arr


def voc_palette() -> list[int]:
    """The 256-entry PASCAL VOC colour map, flattened to 768 ints for ``Image.putpalette``."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


def mask_to_image(mask: np.ndarray) -> Image.Image:
    """A (H, W) uint8 class mask as a palette PNG image in VOC colours."""
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    img = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
    img.putpalette(voc_palette())
    return img
