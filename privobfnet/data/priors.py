"""The prior masks' on-disk format (the masks stage's outputs), written and read here only.

Under the masks folder: ``human/<image_id>.png`` and ``text/<image_id>.png`` (8-bit L, mask * 255,
the image's size) and ``index.parquet``, one row per image: ``image_id``, ``split``,
``human_path``, ``text_path`` (relative to the project or to the masks folder), ``face_boxes`` (a
JSON string of ``[[x0, y0, x1, y1, score], ...]``, null without a face backend), ``fallback``
(the image failed and got all-ones masks) and ``saliency_path`` (the image's placed saliency map,
``privobfnet.data.saliency``; null with ``masks.saliency`` off). Training, pseudo-labels, evaluation and the redact
stage read the priors through ``read_index`` and ``read_mask``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from privobfnet.data.errors import DataError
from privobfnet.io import atomic_path

KINDS = ("human", "text")  # the stored mask kinds (faces are boxes in the index)
INDEX_FILE = "index.parquet"


def mask_file(masks_dir: str | os.PathLike, kind: str, image_id: str) -> Path:
    """Where the ``kind`` mask of ``image_id`` is stored."""
    return Path(masks_dir) / kind / f"{image_id}.png"


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Store an (H, W) uint8 mask (0..255) as an 8-bit L PNG, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(mask, "L").save(tmp, format="PNG")


def read_valid_mask(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray | None:
    """A stored mask if it decodes as 8-bit L of ``size`` (width, height); None if missing or torn."""
    try:
        with Image.open(path) as png:
            if png.mode != "L" or png.size != size:
                return None
            png.load()
            return np.asarray(png)
    except (OSError, ValueError, SyntaxError):
        return None


def read_mask(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A stored mask as (H, W) uint8; ``DataError`` naming the file if unreadable or not ``shape``."""
    try:
        with Image.open(path) as png:
            mask = np.asarray(png.convert("L"))
    except FileNotFoundError:
        raise DataError(path, "prior mask missing (re-run the masks stage)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(path, "prior mask unreadable", str(exc)) from None
    if shape is not None and mask.shape != tuple(shape):
        raise DataError(path, "prior mask has the wrong size", f"{mask.shape}, the image {shape}")
    return mask


@dataclass(frozen=True)
class Priors:
    """One image's row of the index: its mask files and face boxes (None: no face backend ran)."""

    image_id: str
    human_path: Path | None
    text_path: Path | None
    face_boxes: tuple[tuple[float, ...], ...] | None
    fallback: bool = False
    saliency_path: Path | None = None


def write_index(
    masks_dir: str | os.PathLike,
    rows: Iterable[tuple[str, str]],
    faces: dict[str, list] | None,
    failed: set[str],
    saliency: dict[str, Path] | None = None,
) -> None:
    """``index.parquet`` for the (image_id, split) ``rows``; ``faces``: image_id -> boxes, or None;
    ``saliency``: image_id -> saliency map, or None."""
    masks_dir = Path(masks_dir)
    rows = list(rows)
    frame = pd.DataFrame(
        {
            "image_id": [image_id for image_id, _ in rows],
            "split": [split for _, split in rows],
            "human_path": pd.array(
                [str(mask_file(masks_dir, "human", i)) for i, _ in rows], dtype="string"
            ),
            "text_path": pd.array(
                [str(mask_file(masks_dir, "text", i)) for i, _ in rows], dtype="string"
            ),
            "face_boxes": pd.array(
                [None if faces is None else json.dumps(faces[i]) for i, _ in rows], dtype="string"
            ),
            "fallback": [i in failed for i, _ in rows],
            "saliency_path": pd.array(
                [None if saliency is None else str(saliency[i]) for i, _ in rows], dtype="string"
            ),
        }
    )
    with atomic_path(masks_dir / INDEX_FILE) as tmp:
        frame.to_parquet(tmp, index=False)


def read_index(
    masks_dir: str | os.PathLike, image_ids: Sequence[str] | None = None
) -> dict[str, Priors]:
    """image_id -> ``Priors`` from the index; with ``image_ids``, every one must be there (the error
    names the index and a few missing ids)."""
    masks_dir = Path(masks_dir)
    path = masks_dir / INDEX_FILE
    try:
        index = pd.read_parquet(path)
    except FileNotFoundError:
        raise DataError(path, "masks index missing (run the masks stage)") from None

    def resolve(value: object) -> Path | None:  # relative to the project, else to the masks folder
        if not isinstance(value, str):
            return None
        candidate = Path(value)
        return candidate if candidate.is_absolute() or candidate.exists() else masks_dir / value

    def boxes(value: object) -> tuple[tuple[float, ...], ...] | None:
        return tuple(tuple(box) for box in json.loads(value)) if isinstance(value, str) else None

    priors = {
        str(row.image_id): Priors(
            str(row.image_id),
            resolve(row.human_path),
            resolve(row.text_path),
            boxes(row.face_boxes),
            bool(getattr(row, "fallback", False)),
            resolve(getattr(row, "saliency_path", None)),
        )
        for row in index.itertuples()
    }
    missing = [i for i in image_ids or () if i not in priors]
    if missing:
        raise DataError(
            path,
            f"no masks for {len(missing)} images (re-run the masks stage)",
            f"e.g. {missing[:3]}",
        )
    return priors


def read_prior_masks(
    priors: Priors, shape: tuple[int, int] | None = None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(human, text) (H, W) uint8 masks of one image (None where the index has no file)."""
    return tuple(  # type: ignore[return-value]
        None if path is None else read_mask(path, shape)
        for path in (priors.human_path, priors.text_path)
    )


def read_lines_log(path: str | os.PathLike) -> dict[str, list]:
    """image_id -> its line records from ``lines.jsonl`` (a torn last line is skipped)."""
    lines: dict[str, list] = {}
    path = Path(path)
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
                lines[record["image_id"]] = record["lines"]
            except (ValueError, KeyError, TypeError):
                continue
    return lines


def read_faces_log(path: str | os.PathLike) -> dict[str, list]:
    """image_id -> face boxes from ``faces.jsonl`` (a torn last line from a killed run is skipped)."""
    faces: dict[str, list] = {}
    path = Path(path)
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
                faces[record["image_id"]] = record["faces"]
            except (ValueError, KeyError, TypeError):
                continue
    return faces
