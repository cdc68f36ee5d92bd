"""The one interface every mask backend implements: an RGB image in, a mask of its size out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence

import numpy as np

MaskKind = Literal["human", "text", "face"]
Box = tuple[float, float, float, float, float]  # x0, y0, x1, y1 (pixels, x1/y1 exclusive), score


@dataclass(frozen=True, eq=False)  # arrays inside
class MaskResult:
    """A backend's answer for one image."""

    mask: np.ndarray  # (H, W) float32 in [0, 1], the image's size
    boxes: tuple[Box, ...] = field(default=())  # where the backend gives them (faces, text lines)
    # text backends: each line's polygon, (K, 2) x/y in the image's pixels, in the order of ``boxes``
    polygons: tuple[np.ndarray, ...] = field(default=())
    # text backends that read: each polygon's recognised line (privobfnet.text.lines.Line), same order
    lines: tuple = field(default=())


class MaskBackend(Protocol):
    """Builds its model once; then one call per image."""

    name: str  # e.g. "rapidocr", "mediapipe", "simulated"
    kind: MaskKind

    def __call__(self, image: np.ndarray, *, image_id: str | None = None) -> MaskResult:
        """``image``: (H, W, 3) uint8 RGB. ``image_id`` is read only by backends that look results up."""
        ...


def check_rgb(image: np.ndarray) -> None:
    """Refuse anything but a non-empty (H, W, 3) uint8 array (a backend's input contract)."""
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] != 3
    ):
        what = (
            type(image).__name__
            if not isinstance(image, np.ndarray)
            else f"{image.dtype} {image.shape}"
        )
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {what}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"empty image {image.shape}")


def boxes_mask(boxes: tuple[Box, ...], shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 mask: 1 inside any of the boxes."""
    mask = np.zeros(shape, np.float32)
    for x0, y0, x1, y1, _ in boxes:
        rows = slice(max(0, int(np.floor(y0))), max(0, int(np.ceil(y1))))
        cols = slice(max(0, int(np.floor(x0))), max(0, int(np.ceil(x1))))
        mask[rows, cols] = 1
    return mask


def pixel_box(box: Sequence[float], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Float x0, y0, x1, y1 -> the pixel box that covers it, clipped to the image."""
    h, w = shape
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    return x0, y0, max(x0, x1), max(y0, y1)


def polygon_patch(
    polygon: np.ndarray, shape: tuple[int, int]
) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """A polygon as (its pixel box, the filled bool patch of that box's size)."""
    import cv2

    points = np.asarray(polygon, np.float64).reshape(-1, 2)
    x0, y0, x1, y1 = pixel_box((*points.min(0), *(points.max(0) + 1)), shape)
    patch = np.zeros((y1 - y0, x1 - x0), np.uint8)
    if patch.size:
        cv2.fillPoly(patch, [np.round(points - [x0, y0]).astype(np.int32)], 1)
    return (x0, y0, x1, y1), patch.astype(bool)


def mask_to_uint8(mask: np.ndarray) -> np.ndarray:
    """[0, 1] float mask -> (H, W) uint8 0..255 (the stored form: mask * 255, rounded)."""
    return np.rint(np.clip(mask, 0.0, 1.0) * 255.0).astype(np.uint8)


def coverage(mask: np.ndarray) -> float:
    """Share of pixels whose mask value is at least 0.5 (uint8 masks: at least 128)."""
    threshold = 128 if mask.dtype == np.uint8 else 0.5
    return float((mask >= threshold).mean()) if mask.size else 0.0


class NoPrior:
    """An all-ones mask (no weighting) for a kind of mask that no class of the data set uses."""

    name = "unused"

    def __init__(self, kind: MaskKind):
        self.kind = kind

    def __call__(self, image: np.ndarray, *, image_id: str | None = None) -> MaskResult:
        """Ones of the image's size."""
        check_rgb(image)
        return MaskResult(np.ones(image.shape[:2], np.float32))
