"""Figures (pure: arrays in, a matplotlib Figure out; Agg canvas, no pyplot, no display needed)."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from privobfnet.data.images import voc_palette


class SampleLike(Protocol):
    """What ``samples_figure`` reads from each sample (``synthpriv.Sample`` has all of it)."""

    image: np.ndarray  # (H, W, 3) uint8
    class_mask: np.ndarray | None  # (H, W) uint8, class index + 1, 0 background, 255 ignore
    parser_mask: np.ndarray | None  # (H, W) uint8 0/255; None where the data set has no parser
    labels: tuple[int, ...]  # class indices present


@dataclass(frozen=True)
class FigureSample:
    """A sample read back from a manifest (any data set) for ``samples_figure``."""

    image: np.ndarray
    class_mask: np.ndarray | None
    parser_mask: np.ndarray | None
    labels: tuple[int, ...]


def _palette() -> np.ndarray:
    return np.array(voc_palette(), np.float32).reshape(256, 3)


def overlay(image: np.ndarray, class_mask: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """The image with every non-background mask pixel tinted in its VOC colour; (H, W, 3) uint8."""
    colors = _palette()[class_mask]
    tint = (class_mask > 0)[..., None] * alpha
    return np.clip(image * (1 - tint) + colors * tint, 0, 255).astype(np.uint8)


def _parser_overlay(image: np.ndarray, parser_mask: np.ndarray) -> np.ndarray:
    person = (parser_mask > 127)[..., None]
    dimmed = image * 0.35
    return np.where(person, image * 0.4 + np.array([255, 60, 200]) * 0.6, dimmed).astype(np.uint8)


def triptych_grid(
    n_samples: int, per_row: int, panel_size: tuple[float, float], extra_height: float = 0.0
) -> tuple[Figure, list[tuple]]:
    """A figure for ``n_samples`` samples, ``per_row`` per row, three panels (axes, all off) each.

    Returns the figure and, per sample, its three axes. ``panel_size`` is (width, height) in inches.
    """
    rows = math.ceil(n_samples / per_row)
    width, height = panel_size
    fig = Figure(figsize=(3 * width * per_row, height * rows + extra_height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 3 * per_row, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    panels = []
    for n in range(n_samples):
        row, col = divmod(n, per_row)
        panels.append(tuple(axes[row, 3 * col : 3 * col + 3]))
    return fig, panels


def samples_figure(
    samples: Sequence[SampleLike], class_names: Sequence[str], *, per_row: int = 2
) -> Figure:
    """Grid of samples: image (titled with its labels), class-mask overlay with a legend, parser overlay."""
    if not samples:
        raise ValueError("samples_figure needs at least one sample")
    palette = _palette() / 255.0
    fig, panels = triptych_grid(len(samples), per_row, (2.3, 2.9))
    for sample, (ax_img, ax_mask, ax_parser) in zip(samples, panels):
        names = [class_names[i] for i in sample.labels]
        ax_img.imshow(sample.image, interpolation="nearest")
        ax_img.set_title(
            "\n".join(textwrap.wrap(", ".join(names), 34)) or "(no labels)", fontsize=7
        )
        if sample.class_mask is None:
            ax_mask.set_title("(no mask)", fontsize=7)
            continue
        ax_mask.imshow(overlay(sample.image, sample.class_mask), interpolation="nearest")
        ax_mask.set_title("class mask", fontsize=7)
        shown = [int(v) for v in np.unique(sample.class_mask) if 0 < v <= len(class_names)]
        if shown:
            handles = [Patch(color=palette[v], label=class_names[v - 1]) for v in shown]
            ax_mask.legend(
                handles=handles,
                loc="upper left",
                bbox_to_anchor=(0.0, -0.01),
                fontsize=6,
                frameon=False,
                handlelength=1,
                borderaxespad=0,
            )
        if sample.parser_mask is not None:
            ax_parser.imshow(
                _parser_overlay(sample.image, sample.parser_mask), interpolation="nearest"
            )
            ax_parser.set_title("simulated human parser", fontsize=7)
    return fig


def truth_overlay(image: np.ndarray, truth: np.ndarray | None) -> np.ndarray | None:
    """A ground-truth class mask over its image, the ignore label (255) shown as background."""
    return (
        None if truth is None else overlay(image, np.where(truth == 255, 0, truth).astype(np.uint8))
    )


def panels_figure(
    rows: Sequence[Sequence[tuple[np.ndarray | None, str]]], panel_inches: float = 2.2
) -> Figure:
    """A grid with one row per sample: each panel a picture (None: left blank) under a small title."""
    n_cols = max(len(row) for row in rows)
    fig = Figure(figsize=(panel_inches * n_cols, panel_inches * len(rows)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for row, row_axes in zip(rows, axes):
        for (picture, title), ax in zip(row, row_axes):
            if picture is not None:
                ax.imshow(picture)
            ax.set_title(title, fontsize=7)
        for ax in row_axes:
            ax.set_axis_off()
    return fig
