"""CAM pseudo-labels (L2G's inference protocol): multi-scale + flip CAMs -> per-pixel class labels.

The CAMs of Model-Image only, at each scale with and without a horizontal flip, upsampled to the
image size and summed; then ReLU, max-normalised per class, and zeroed for the classes absent from
the image-level label. A pixel takes the argmax class unless every class scores below the
background threshold. Only the segmentation classes' CAM channels are used (``privobfnet.seg_classes``:
no ``a0_safe``), and labels are in the segmentation encoding: 0 background, segmentation class j -> j + 1.

The masks-only baseline (``untrained_model_image``) runs the same protocol with an untrained
Model-Image: what the prior masks and the true image labels give for free.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from privobfnet.baselines import background_everywhere
from privobfnet.config import PseudoLabelConfig
from privobfnet.crf import dense_crf, scores_to_probs
from privobfnet.metrics import confusion_matrix, segmentation_scores
from privobfnet.models.ensemble import PrivObfNet, build_model
from privobfnet.models.inputs import mask_tensor, normalize
from privobfnet.seg_classes import BACKGROUND, SegmentationClasses

# (1, 3, h, w) image tensor, (1, 1, h, w) human mask, (1, 1, h, w) text mask -> (1, C, h', w') CAMs
CamFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    return F.interpolate(x, size=size, mode=mode, **kwargs)


@torch.no_grad()
def multiscale_cams(
    cam_fn: CamFn,
    image: torch.Tensor,
    human_mask: torch.Tensor,
    text_mask: torch.Tensor,
    *,
    scales: Sequence[float],
    labels: Sequence[int],
) -> torch.Tensor:
    """(C, H, W) CAMs in [0, 1] for one image: multi-scale + flip, summed, normalised per class.

    Args:
        cam_fn: Model-Image's CAM function (already normalising its input as it was trained).
        image: (1, 3, H, W) float image as ``cam_fn`` takes it.
        human_mask, text_mask: (1, 1, H, W) float masks in [0, 1].
        scales: input scales (L2G: 0.5, 1, 1.5, 2), each also run flipped.
        labels: multi-hot image-level label (length C); absent classes are zeroed.
    """
    height, width = image.shape[-2:]
    total: torch.Tensor | None = None
    for scale in scales:
        size = (max(8, round(height * scale)), max(8, round(width * scale)))
        img = _resize(image, size, "bilinear")
        human, text = _resize(human_mask, size, "bilinear"), _resize(text_mask, size, "bilinear")
        for flip in (False, True):
            args = [t.flip(-1) if flip else t for t in (img, human, text)]
            cams = cam_fn(*args)  # (1, C, h', w')
            cams = cams.flip(-1) if flip else cams
            cams = _resize(cams, (height, width), "bicubic")[0]  # (C, H, W)
            total = cams if total is None else total + cams
    assert total is not None, "at least one scale is needed"
    cams = F.relu(total)
    present = torch.as_tensor(np.asarray(labels, dtype=bool))
    cams[~present] = 0.0
    peak = cams.flatten(1).max(dim=1).values.clamp_min(1e-5)  # (C,)
    return cams / peak[:, None, None]


def cams_to_label(cams: torch.Tensor | np.ndarray, bg_threshold: float) -> np.ndarray:
    """(H, W) uint8 labels from (C, H, W) normalised CAMs: 0 where all classes < bg_threshold."""
    cams = torch.as_tensor(cams)
    background = torch.full_like(cams[:1], bg_threshold)
    scores = torch.cat([background, cams], dim=0)  # (1 + C, H, W): index 0 is background
    return scores.argmax(dim=0).to(torch.uint8).numpy()


def pseudo_label(image: np.ndarray, cams: torch.Tensor, settings: PseudoLabelConfig) -> np.ndarray:
    """The (H, W) uint8 pseudo-label written for (K, H, W) CAMs: background threshold, then the CRF if on."""
    if not settings.crf:
        return cams_to_label(cams, settings.bg_threshold)
    probs = scores_to_probs(cams.numpy(), settings.bg_threshold)
    return (
        dense_crf(image, probs, iterations=settings.crf_iterations).argmax(axis=0).astype(np.uint8)
    )


@torch.no_grad()
def image_cams(
    model_image,
    image: np.ndarray,
    human: np.ndarray | None,
    text: np.ndarray | None,
    *,
    scales: Sequence[float],
    labels: Sequence[int],
    device: torch.device,
) -> torch.Tensor:
    """Model-Image's (C, H, W) multi-scale + flip CAMs of one (H, W, 3) uint8 image with its (H, W) prior masks."""
    shape = image.shape[:2]
    human_t, text_t = (
        mask_tensor(m, shape)[None].to(device) for m in (human, text)
    )  # (1, 1, H, W)
    tensor = (
        torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float().to(device)
    )  # (1, 3, H, W) 0..255

    def cam_fn(images, human_masks, text_masks):
        return model_image.cams(normalize(images), human_masks, text_masks)

    return multiscale_cams(cam_fn, tensor, human_t, text_t, scales=scales, labels=labels).cpu()


def segmentation_cams(
    model_image,
    image: np.ndarray,
    human: np.ndarray | None,
    text: np.ndarray | None,
    *,
    seg: SegmentationClasses,
    scales: Sequence[float],
    labels: Sequence[int],
    device: torch.device,
) -> torch.Tensor:
    """(K, H, W) CAMs of the K segmentation classes only (``image_cams`` less the classes without a region)."""
    cams = image_cams(
        model_image, image, human, text, scales=scales, labels=labels, device=device
    )  # (C, H, W)
    return cams[seg.indices]


def untrained_model_image(meta: dict, *, seed: int, device: torch.device) -> PrivObfNet:
    """The masks-only baseline's network: Model-Image as the ensemble checkpoint's ``meta`` describes it
    (backbone, mask types, the same mask weighting), randomly initialised from ``seed``, never trained
    and without ImageNet weights, in eval mode. Deterministic; the global RNG is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(
            backbone=meta["backbone"],
            tiny_width=meta["tiny_width"],
            pretrained=None,
            mask_types=meta["mask_types"],
            background_channel=meta["background_channel"],
            use_mask_weighting=meta["use_mask_weighting"],
        )
    return model.to(device).eval()


class CamScores:
    """Confusion matrices of one split's pseudo-labels against ground truth: at the chosen background
    threshold, and at every threshold of the sweep (always on the raw CAMs). ``class_names`` are the
    segmentation classes; CAMs, labels and ground truth are in their encoding."""

    def __init__(self, class_names: Sequence[str], *, sweep: Sequence[float]):
        self.names = [BACKGROUND, *class_names]
        n_labels = len(self.names)
        self.chosen = np.zeros((n_labels, n_labels), np.int64)
        self.sweep = {t: np.zeros((n_labels, n_labels), np.int64) for t in sweep}

    def add(self, label: np.ndarray, cams: torch.Tensor, truth: np.ndarray) -> None:
        """One image: its written pseudo-label, its raw CAMs, its ground truth (255 ignored)."""
        self.chosen += confusion_matrix(label, truth, len(self.names))
        for threshold, cm in self.sweep.items():
            cm += confusion_matrix(cams_to_label(cams, threshold), truth, len(self.names))

    def metrics(self) -> dict:
        """CAM mIoU, pixel accuracy and per-class IoU at the chosen threshold; mIoU per swept threshold."""
        scores = segmentation_scores(self.chosen, self.names)
        swept = {
            f"{t:.2f}": segmentation_scores(cm, self.names)["miou"] for t, cm in self.sweep.items()
        }
        scored = {t: m for t, m in swept.items() if m is not None}
        return {
            "cam_miou": scores["miou"],
            "pixel_accuracy": scores["pixel_accuracy"],
            "background_everywhere_miou": segmentation_scores(
                background_everywhere(self.chosen), self.names
            )["miou"],
            "per_class_iou": scores["per_class_iou"],
            "sweep_miou": swept,
            "best_bg_threshold": float(max(scored, key=scored.get)) if scored else None,
        }
