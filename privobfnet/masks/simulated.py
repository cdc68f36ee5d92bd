"""SynthPriv's simulated human parser as a mask backend: it looks each image's result up on disk.

Real human parsers do not fire on SynthPriv's drawn people, so the data set ships the output of a
SIMULATED parser (``<raw_dir>/synthpriv/SimulatedHumanParser/<image_id>.png``, 0/255); see
``privobfnet.data.synthpriv``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from privobfnet.data.errors import DataError
from privobfnet.masks.base import MaskResult, check_rgb


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
