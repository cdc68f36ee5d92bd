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


def read_typed_lines(
    lines_path: str | os.PathLike, typed_path: str | os.PathLike, class_names: Sequence[str]
) -> dict[str, list]:
    """image_id -> its read lines (``privobfnet.priors.TypedLine``: polygon, typer score per class
    index) from the masks stage's ``lines.parquet`` and the type_text stage's
    ``typed_lines.parquet`` (the refined priors' typed masks). A typed row naming a line the lines
    file lacks, or scores that are not a JSON object of numbers, is an error naming the file."""
    from privobfnet.priors import TypedLine
    from privobfnet.text.lines import read_lines

    lines = read_lines(lines_path)
    typed_path = Path(typed_path)
    try:
        typed = pd.read_parquet(typed_path, columns=["image_id", "line", "scores"])
    except FileNotFoundError:
        raise DataError(typed_path, "typed lines missing (run the type_text stage)") from None
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(typed_path, "typed lines unreadable", str(exc)) from None
    index = {name: c for c, name in enumerate(class_names)}
    out: dict[str, list] = {}
    for number, row in enumerate(typed.itertuples(index=False)):
        image_lines = lines.get(str(row.image_id), [])
        if not 0 <= int(row.line) < len(image_lines):
            raise DataError(
                typed_path,
                f"row {number}: line {row.line} of {row.image_id} is not in {lines_path}",
            )
        try:
            scores = {
                index[name]: float(value)
                for name, value in json.loads(row.scores).items()
                if name in index
            }
        except (ValueError, TypeError, AttributeError):
            raise DataError(typed_path, f"row {number}: scores are not a JSON object") from None
        polygon = np.asarray(image_lines[int(row.line)].polygon, np.float64).reshape(-1, 2)
        out.setdefault(str(row.image_id), []).append(TypedLine(polygon, scores))
    return out


def stored_priors(
    priors: Priors, shape: tuple[int, int], layout=None, lines: Sequence | None = None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """One image's priors as the model takes them: the stored (H, W) human and text masks (no
    ``layout``: the coarse masks), or ``layout``'s (Ch, H, W) and (Ct, H, W) stacks
    (``privobfnet.priors.build_stacks``) from them, the stored face boxes and ``lines`` (the
    image's ``read_typed_lines``)."""
    from privobfnet.priors import build_stacks

    human, text = read_prior_masks(priors, shape)
    if layout is None:
        return human, text
    return build_stacks(
        layout, shape, human=human, text=text, face_boxes=priors.face_boxes, lines=lines or ()
    )


def layout_lines(cfg, layout, class_names: Sequence[str]) -> dict[str, list]:
    """The typed lines a layout's typed classes need (``read_typed_lines`` from the masks and
    type_text stages' outputs), {} when it has none."""
    from privobfnet.text.lines import LINES_FILE, TYPED_LINES_FILE

    if layout is None or not layout.typed_classes:
        return {}
    return read_typed_lines(
        Path(cfg.masks.out_dir) / LINES_FILE,
        Path(cfg.text.out_dir) / TYPED_LINES_FILE,
        class_names,
    )
