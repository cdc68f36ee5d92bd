"""How hidden pixels are painted: solid (default), pixelate (coarse blocks only) or blur.

Blur and fine pixelation of text can be undone (deblurring, or matching rendered candidates
block by block), so solid fill is the default; pixelation uses blocks of at least a sixth of
each region's shorter side; blur is allowed, but callers must warn the user (``BLUR_WARNING``).
Styles act per connected region of the hidden mask and only change pixels inside it.
"""

from __future__ import annotations

import math
from typing import Literal

import cv2
import numpy as np

Style = Literal["solid", "pixelate", "blur"]
STYLES = ("solid", "pixelate", "blur")
MIN_BLOCK_SHARE = 1 / 6  # pixelate: block side >= this share of the region's shorter side
BLUR_WARNING = (
    "warning: blur can be partly undone (deblurring, or matching rendered text against the "
    "blurred pixels); use --style solid for anything that must stay hidden"
)


def block_size(width: int, height: int, requested: int = 0) -> int:
    """Pixelation block side for a region: the larger of ``requested`` and a sixth of its shorter side."""
    return max(1, int(requested), math.ceil(min(width, height) * MIN_BLOCK_SHARE))


def _components(hidden: np.ndarray) -> list[tuple[int, int, int, int, np.ndarray]]:
    """(x, y, w, h, bool patch) of each 8-connected region of the hidden mask."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(hidden.astype(np.uint8), connectivity=8)
    out = []
    for label in range(1, n):
        x, y, w, h = (int(v) for v in stats[label, :4])
        out.append((x, y, w, h, labels[y : y + h, x : x + w] == label))
    return out


def _pixelate(patch: np.ndarray, block: int) -> np.ndarray:
    """Tiles of at least block x block pixels (whole tiles: w // block across), each its mean colour."""
    h, w = patch.shape[:2]
    small = cv2.resize(
        patch, (max(1, w // block), max(1, h // block)), interpolation=cv2.INTER_AREA
    )
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def apply_style(
    image: np.ndarray,
    hidden: np.ndarray,
    style: Style,
    *,
    color: tuple[int, int, int] = (0, 0, 0),
    block_px: int = 0,
) -> np.ndarray:
    """A copy of the (H, W, 3) uint8 image with the (H, W) bool ``hidden`` pixels painted in ``style``."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r} (known: {', '.join(STYLES)})")
    out = image.copy()
    if not hidden.any():
        return out
    if style == "solid":
        out[hidden] = np.asarray(color, np.uint8)
        return out
    for x, y, w, h, inside in _components(hidden):
        patch = image[y : y + h, x : x + w]
        if style == "pixelate":
            painted = _pixelate(patch, block_size(w, h, block_px))
        else:  # blur strong enough that a region's shape survives but not its detail
            sigma = max(2.0, min(w, h) / 3)
            pad = int(3 * sigma)
            y0, x0 = max(0, y - pad), max(0, x - pad)
            context = image[y0 : y + h + pad, x0 : x + w + pad]
            blurred = cv2.GaussianBlur(context, (0, 0), sigmaX=sigma, sigmaY=sigma)
            painted = blurred[y - y0 : y - y0 + h, x - x0 : x - x0 + w]
        out[y : y + h, x : x + w][inside] = painted[inside]
    return out
