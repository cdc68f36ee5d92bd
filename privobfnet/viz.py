"""Every figure the pipeline and the tools draw (pure: arrays in, a matplotlib Figure out; Agg
canvas, no pyplot, no display needed): data set samples, prior masks, CAM overlays, segmentation
panels, redaction before / after."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

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


def overlay_attention(
    image: np.ndarray,
    attention: np.ndarray,
    color: Sequence[int] = (255, 40, 40),
    alpha: float = 0.7,
) -> np.ndarray:
    """(H, W, 3) uint8 image tinted by one (H, W) attention map in [0, 1] -> (H, W, 3) uint8."""
    weight = np.clip(attention, 0.0, 1.0)[..., None] * alpha
    dimmed = image.astype(np.float32) * 0.6
    return np.clip(dimmed * (1 - weight) + np.asarray(color, np.float32) * weight, 0, 255).astype(
        np.uint8
    )


def attention_figure(
    images: Sequence[np.ndarray],
    attentions: Sequence[np.ndarray],
    probs: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    class_names: Sequence[str],
    *,
    top_k: int = 3,
) -> Figure:
    """One row per image: the image titled with its true labels, then the attention overlays of the
    ``top_k`` most probable attributes titled with their probability. Arrays in, Figure out.

    images (H, W, 3) uint8; attentions (C, H, W) in [0, 1]; probs (C,); labels (C,) {0, 1}.
    """
    fig = Figure(figsize=(2.2 * (top_k + 1), 2.4 * len(images)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(images), top_k + 1, squeeze=False)
    for row, (image, attention, prob, label) in enumerate(zip(images, attentions, probs, labels)):
        truth = [class_names[c] for c in np.flatnonzero(label)]
        axes[row, 0].imshow(image)
        axes[row, 0].set_title("\n".join(textwrap.wrap(", ".join(truth), 28)), fontsize=7)
        for col, c in enumerate(np.argsort(-prob)[:top_k], start=1):
            axes[row, col].imshow(overlay_attention(image, attention[c]))
            axes[row, col].set_title(f"{class_names[c]}\np={prob[c]:.2f}", fontsize=7)
        for ax in axes[row]:
            ax.set_axis_off()
    return fig


def before_after_figure(
    rows: Sequence[tuple[str, np.ndarray, Sequence[tuple[str, np.ndarray]]]],
) -> Figure:
    """One row per image: the original titled with its id, then each (title, output) beside it."""
    n_cols = 1 + max((len(outputs) for _, _, outputs in rows), default=0)
    fig = Figure(figsize=(2.4 * n_cols, 2.5 * max(1, len(rows))), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(1, len(rows)), n_cols, squeeze=False)
    for ax_row, (image_id, original, outputs) in zip(axes, rows):
        for ax, (title, picture) in zip(ax_row, [(image_id, original), *outputs]):
            ax.imshow(picture)
            ax.set_title(title, fontsize=7)
    for ax in axes.ravel():
        ax.set_axis_off()
    return fig
