"""Inference with Model-Image: one image (+ its human/text masks) -> privacy score, attributes, masks.

The obfuscation tool calls ``predict`` and hides the pixels of ``Prediction.masks[c]`` for the
attributes the user picks. ``load_ensemble`` reads ``checkpoints/ensemble/final.pt``.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from privobfnet.models.ensemble import PrivObfNet, load_ensemble
from privobfnet.models.inputs import normalize, resize_sample


@dataclass(frozen=True)
class Prediction:
    """Model-Image's answer for one image."""

    privacy_score: float  # in [0, 1]
    attribute_probs: np.ndarray  # (C,) float32, sigmoid of the attribute head
    attention: (
        np.ndarray
    )  # (C, H, W) float32 in [0, 1]: mask-weighted CAM per attribute, max-normalised
    masks: (
        np.ndarray
    )  # (C, H, W) bool: pixels given to each detected attribute (at most one per pixel)


@torch.no_grad()
def predict(
    model_image: PrivObfNet,
    image: np.ndarray,
    human_mask: np.ndarray | None,
    text_mask: np.ndarray | None,
    *,
    input_size: int,
    class_threshold: float = 0.5,
    bg_threshold: float = 0.25,
    device: str | torch.device = "cpu",
) -> Prediction:
    """Run Model-Image on one (H, W, 3) uint8 image with (H, W) masks (uint8 0/255 or [0, 1]; None: none).

    A pixel goes to the attribute with the highest normalised attention among the detected ones
    (probability >= ``class_threshold``) if that attention exceeds ``bg_threshold``, else to none.
    """
    height, width = image.shape[:2]
    rgb, human, text = resize_sample(image, human_mask, text_mask, input_size)
    images = normalize(rgb[None].to(device))
    human, text = human[None].to(device), text[None].to(device)
    model_image.eval()
    out = model_image(images, human, text)
    attention = attention_at(out.cam_logits, model_image.n_classes, (height, width))[0]  # (C, H, W)
    probs = torch.sigmoid(out.attribute_logits[0])
    masks = attention_to_masks(attention, probs >= class_threshold, bg_threshold=bg_threshold)
    return Prediction(
        float(out.privacy[0]), probs.cpu().numpy(), attention.cpu().numpy(), masks.cpu().numpy()
    )


def attention_at(cam_logits: torch.Tensor, n_classes: int, size: tuple[int, int]) -> torch.Tensor:
    """(B, K, h, w) CAM logits -> (B, C, H, W) attention: ReLU, bilinear upsampling, per-map max-normalised."""
    cams = torch.relu(cam_logits[:, :n_classes])
    cams = F.interpolate(cams, size, mode="bilinear", align_corners=False)
    return cams / (cams.amax(dim=(2, 3), keepdim=True) + 1e-5)


def attention_to_masks(
    attention: torch.Tensor, present: torch.Tensor, *, bg_threshold: float
) -> torch.Tensor:
    """(C, H, W) attention in [0, 1] and (C,) bool -> (C, H, W) bool, argmax against a background score."""
    scores = attention * present[:, None, None]
    best, index = scores.max(dim=0)  # ties go to the first attribute, as argmax would
    winner = torch.where(best > bg_threshold, index + 1, 0)  # 0 = background (it wins ties)
    classes = torch.arange(1, attention.shape[0] + 1, device=attention.device)
    return winner[None] == classes[:, None, None]  # one comparison, not C full-size ones stacked


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


__all__ = [
    "Prediction",
    "attention_at",
    "attention_figure",
    "attention_to_masks",
    "load_ensemble",
    "overlay_attention",
    "predict",
]
