"""Inference: Model-Image on an image (privacy score, attributes, per-attribute maps and masks), on a
split (scores only), and DeepLabV2 on an image (a label map).

The maps and masks come from the one CAM -> mask procedure (``privobfnet.cams``), as the
pseudo-labels do: at the model's input size the image gives the same maps the pseudo-labels stage
computes at scale 1. ``load_ensemble`` (``privobfnet.models.checkpoints``) reads the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from privobfnet.cams import class_maps, gate_types_of, label_masks, sum_views
from privobfnet.cams import normalise_maps as _normalise_maps
from privobfnet.crf import DEEPLAB_CRF, dense_crf
from privobfnet.models.deeplabv2 import MSC
from privobfnet.models.inputs import images_to_tensor, normalize, resize_sample
from privobfnet.models.privobfnet import PrivObfNet

if TYPE_CHECKING:  # a split needs pandas, the pipeline extra: not imported by the tool
    from privobfnet.data.splits import SplitData

TOOL_SCALES = (1.0,)  # the obfuscation tool's views: the model's input size, unflipped and flipped


@dataclass(frozen=True)
class Prediction:
    """Model-Image's answer for one image."""

    privacy_score: float  # in [0, 1]
    attribute_probs: np.ndarray  # (C,) float32, sigmoid of the attribute head
    # (C, H, W) float32 in [0, 1]: every attribute's map (``privobfnet.cams``), not zeroed
    attention: np.ndarray
    # (C, H, W) bool: the label map of the detected attributes (at most one per pixel)
    masks: np.ndarray


@torch.no_grad()
def predict(
    model_image: PrivObfNet,
    image: np.ndarray,
    human_mask: np.ndarray | None,
    text_mask: np.ndarray | None,
    *,
    input_size: int,
    class_threshold: float,
    bg_threshold: float,
    scales: Sequence[float] = TOOL_SCALES,
    device: str | torch.device = "cpu",
) -> Prediction:
    """Model-Image on one (H, W, 3) uint8 image with (H, W) masks (uint8 0..255 or [0, 1]; None: none).

    The image and its masks are resized to ``input_size`` square, as the model trained; the scores
    come from that view, the maps from every view of ``scales`` (``privobfnet.cams``) at the image's
    own size. ``masks``: the label map of the attributes detected (probability >= ``class_threshold``)
    against ``bg_threshold``.
    """
    model_image.eval()
    rgb, human, text = resize_sample(image, human_mask, text_mask, input_size)
    tensors = (rgb[None].float().to(device), human[None].to(device), text[None].to(device))
    out = model_image(normalize(tensors[0]), tensors[1], tensors[2])
    probs = torch.sigmoid(out.attribute_logits[0])

    # views() runs the unflipped view of the first scale first: at scale 1 that is the pass above
    base_view = [out.cam_logits[:, : model_image.n_classes]] if scales[0] == 1.0 else []

    def cam_fn(images, human_masks, text_masks):
        if base_view:
            return base_view.pop()
        return model_image.cams(normalize(images), human_masks, text_masks)

    maps = class_maps(
        cam_fn,
        *tensors,
        scales=scales,
        present=None,
        out_size=image.shape[:2],
        gate_types=gate_types_of(model_image),
    )
    present = (probs >= class_threshold).cpu().numpy()
    masks = label_masks(
        maps * torch.as_tensor(present, device=maps.device)[:, None, None], bg_threshold
    )
    return Prediction(float(out.privacy[0]), probs.cpu().numpy(), maps.cpu().numpy(), masks)


def batch_maps(cam_logits: torch.Tensor, n_classes: int, size: tuple[int, int]) -> torch.Tensor:
    """(B, K, h, w) CAM logits of one unflipped view each -> (B, C, H, W) maps (``privobfnet.cams``)."""
    return torch.stack(
        [
            _normalise_maps(sum_views([(logits[None, :n_classes], False)], size), None)
            for logits in cam_logits
        ]
    )


@torch.no_grad()
def predict_split(
    model, data: "SplitData", device: torch.device, batch_size: int, *, rows: range | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Model-Image on every image of a split (or on ``rows`` of it) -> (N, C) attribute
    probabilities, (N,) privacy scores."""
    model.eval()
    rows = range(len(data)) if rows is None else rows
    probs, scores = [], []
    for start in range(rows.start, rows.stop, batch_size):
        rgb, human, text = data.stack(list(range(start, min(start + batch_size, rows.stop))))
        out = model(normalize(rgb.to(device)), human.to(device), text.to(device))
        probs.append(torch.sigmoid(out.attribute_logits).float().cpu())
        scores.append(out.privacy.float().cpu())
    if not probs:  # an empty block (more ranks than images)
        return np.zeros((0, len(data.class_names)), np.float32), np.zeros(0, np.float32)
    return torch.cat(probs).numpy(), torch.cat(scores).numpy()


@torch.inference_mode()
def predict_segmentation(
    model: nn.Module,
    image: np.ndarray,
    device: str | torch.device,
    *,
    msc_scales: Sequence[float] = (),
    crf: bool = False,
) -> np.ndarray:
    """DeepLabV2 on a whole image: (H, W, 3) uint8 -> (H, W) uint8 labels, the argmax of the scores
    upsampled bilinearly. ``msc_scales``: the image and copies at these scales, fused by a pixel-wise
    max (``MSC``); ``crf``: the softmax refined by a dense CRF with deeplab-pytorch's parameters."""
    was_training = model.training
    model.eval()
    net = MSC(model, msc_scales).eval() if msc_scales else model
    x = images_to_tensor(torch.from_numpy(np.array(image))[None], device)  # (1, 3, H, W)
    logits = net(x)  # (1, K, H/8, W/8)
    logits = F.interpolate(logits, size=image.shape[:2], mode="bilinear", align_corners=False)
    model.train(was_training)
    if crf:
        probs = F.softmax(logits[0].float(), dim=0).cpu().numpy()
        return dense_crf(image, probs, **DEEPLAB_CRF).argmax(axis=0).astype(np.uint8)
    return logits.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()
