"""The masks figure (pure: arrays in, a matplotlib Figure out; Agg canvas, no display needed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from privobfnet.viz import triptych_grid

HUMAN_COLOR = np.array([255, 40, 200], np.float32)  # magenta
TEXT_COLOR = np.array([255, 200, 0], np.float32)  # amber
FACE_COLOR = "#00e5ff"


@dataclass(frozen=True, eq=False)
class MaskSample:
    """One image with its stored masks (uint8 0..255; None where not computed) and face boxes."""

    image_id: str
    image: np.ndarray  # (H, W, 3) uint8
    human: np.ndarray | None
    text: np.ndarray | None
    faces: Sequence[Sequence[float]] = ()  # [x0, y0, x1, y1, score]


def tint(image: np.ndarray, mask: np.ndarray, color: np.ndarray, alpha: float = 0.65) -> np.ndarray:
    """The image dimmed outside the mask and tinted by ``color`` inside, weighted by the mask's value."""
    weight = (mask.astype(np.float32) / 255.0)[..., None]  # (H, W, 1)
    dimmed = image.astype(np.float32) * 0.45
    inside = image.astype(np.float32) * (1 - alpha) + color * alpha
    return np.clip(dimmed * (1 - weight) + inside * weight, 0, 255).astype(np.uint8)


def _faces(ax, faces: Sequence[Sequence[float]]) -> None:
    for x0, y0, x1, y1, score in faces:
        ax.add_patch(
            Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=1.2, ec=FACE_COLOR)
        )
        ax.text(x0, y0 - 1, f"{score:.2f}", color=FACE_COLOR, fontsize=5, va="bottom")


def masks_figure(samples: Sequence[MaskSample], *, backends: str = "", per_row: int = 2) -> Figure:
    """Grid: per sample the image with face boxes, the human mask overlay, the text mask overlay."""
    if not samples:
        raise ValueError("masks_figure needs at least one sample")
    fig, panels = triptych_grid(len(samples), per_row, (2.2, 2.4), extra_height=0.4)
    if backends:
        fig.suptitle(backends, fontsize=8)
    for sample, (ax_image, ax_human, ax_text) in zip(samples, panels):
        ax_image.imshow(sample.image, interpolation="nearest")
        ax_image.set_title(f"{sample.image_id}: {len(sample.faces)} face(s)", fontsize=7)
        _faces(ax_image, sample.faces)
        for ax, mask, color, what in (
            (ax_human, sample.human, HUMAN_COLOR, "human"),
            (ax_text, sample.text, TEXT_COLOR, "text"),
        ):
            if mask is None:
                ax.set_title(f"(no {what} mask)", fontsize=7)
                continue
            ax.imshow(tint(sample.image, mask, color), interpolation="nearest")
            ax.set_title(f"{what} mask: {np.mean(mask >= 128):.0%} of pixels", fontsize=7)
        _faces(ax_human, sample.faces)
    return fig
