"""SynthPriv's simulated human parser and face detector as mask backends: each looks an image's
result up on disk.

Real human parsers and face detectors do not fire on SynthPriv's drawn people, so the data set
ships the output of a SIMULATED parser (``<raw_dir>/synthpriv/SimulatedHumanParser/<image_id>.png``,
0/255) and of a SIMULATED face detector (``SimulatedFaceDetector/<image_id>.json`` beside it,
``[[x0, y0, x1, y1, score], ...]``); see ``privobfnet.data.synthpriv``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from privobfnet.data.errors import DataError
from privobfnet.data.synthpriv import FACE_FOLDER
from privobfnet.masks.base import MaskResult, boxes_mask, check_rgb


class SimulatedHumanParser:
    """Human mask of a SynthPriv image, read from the simulated parser's PNG."""

    name = "simulated"
    kind = "human"

    def __init__(self, *, parser_dir: str | os.PathLike):
        self.parser_dir = Path(parser_dir)
        if not self.parser_dir.is_dir():
            raise DataError(
                self.parser_dir,
                "simulated human parser folder missing",
                "masks.human_backend=simulated works on SynthPriv only",
            )

    def __call__(self, image: np.ndarray, *, image_id: str | None = None) -> MaskResult:
        """The parser's mask for ``image_id``, checked against the image's size."""
        check_rgb(image)
        if not image_id:
            raise ValueError("the simulated human parser needs the image_id")
        path = self.parser_dir / f"{image_id}.png"
        if not path.is_file():
            raise DataError(path, "simulated human parser output missing")
        try:
            with Image.open(path) as png:
                mask = np.asarray(png.convert("L"))
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(path, "simulated human parser output unreadable", str(exc)) from None
        if mask.shape != image.shape[:2]:
            raise DataError(
                path,
                "simulated human parser output has the wrong size",
                f"{mask.shape[1]}x{mask.shape[0]}, image {image.shape[1]}x{image.shape[0]}",
            )
        return MaskResult(mask.astype(np.float32) / 255.0)


class SimulatedFaceDetector:
    """Face boxes of a SynthPriv image, read from the simulated detector's JSON (in the folder
    beside the simulated parser's)."""

    name = "simulated"
    kind = "face"

    def __init__(self, *, parser_dir: str | os.PathLike):
        self.faces_dir = Path(parser_dir).parent / FACE_FOLDER
        if not self.faces_dir.is_dir():
            raise DataError(
                self.faces_dir,
                "simulated face detector folder missing",
                "masks.face_backend=simulated works on SynthPriv only (regenerate it: dvc repro download)",
            )

    def __call__(self, image: np.ndarray, *, image_id: str | None = None) -> MaskResult:
        """The detector's boxes for ``image_id``; each must be 5 finite numbers inside the image."""
        check_rgb(image)
        if not image_id:
            raise ValueError("the simulated face detector needs the image_id")
        path = self.faces_dir / f"{image_id}.json"
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(path, "simulated face detector output missing") from None
        except (OSError, ValueError) as exc:
            raise DataError(path, "simulated face detector output unreadable", str(exc)) from None
        h, w = image.shape[:2]
        boxes = []
        for number, box in enumerate(raw if isinstance(raw, list) else [None]):
            ok = (
                isinstance(box, list)
                and len(box) == 5
                and all(isinstance(v, (int, float)) and np.isfinite(v) for v in box)
            )
            if not ok or not (0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h):
                raise DataError(
                    path, f"box {number}: expected [x0, y0, x1, y1, score] inside {w}x{h}", box
                )
            boxes.append(tuple(float(v) for v in box))
        return MaskResult(boxes_mask(tuple(boxes), (h, w)), tuple(boxes))
