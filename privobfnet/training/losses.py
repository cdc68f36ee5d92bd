"""PrivObfNet's losses, one function per equation of the paper (section 3.6), plus the crop target.

Where the paper leaves a choice open, the paper's literal reading is the default and L2G's code
is the option (``train.crop_target``; README "The model"):

- paper: the target of eq. 2 is the crop CAM S_i itself (ReLU of Model-Cropped's mask-weighted
  CAM logits, C channels, no post-processing); the global CAM cut at the crop is softmaxed over
  the C attribute channels. No background channel.
- l2g: both networks get a background channel (C + 1, last). The crop CAM is max-normalised per
  channel, absent classes zeroed, only the argmax channel kept per pixel, thresholded at
  ``l2g_bg_threshold``, then foreground channels are multiplied by their prior mask (L2G: the
  saliency map) and the background by 1 - the union of the masks; softmax over C + 1 channels.

``||.||^2`` of eq. 2 is taken as a mean over channels and pixels (L2G's ``MSELoss``), the scale
that the paper's weight lambda_1 = 10 was set for.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F


def image_loss(aligned_global_logits: torch.Tensor, crop_target: torch.Tensor) -> torch.Tensor:
    """Eq. 2: L_img = 1/N sum_i ||softmax_c(G_i) - S_i||^2.

    aligned_global_logits (B*N, K, h, w): Model-Image's CAM logits cut at the crop boxes (G_i);
    crop_target (B*N, K, h, w): S_i, no gradient. Returns the mean over crops, channels, pixels.
    """
    return (F.softmax(aligned_global_logits, dim=1) - crop_target.detach()).pow(2).mean()


def cropped_loss(crop_class_logits: torch.Tensor, crop_labels: torch.Tensor) -> torch.Tensor:
    """Eq. 3: multilabel soft margin on the global-average-pooled crop CAMs, mean over crops and classes.

    crop_class_logits (B*N, C), crop_labels (B*N, C) in {0, 1} (each crop carries its image's labels).
    """
    return F.multilabel_soft_margin_loss(crop_class_logits, crop_labels.float())


def privacy_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 4: MSE between predicted and user-preference privacy scores, over images that have one.

    predicted (B,), target (B,) with NaN where the data set has no score; 0 when no image has one.
    """
    known = ~torch.isnan(target)
    if not known.any():
        return predicted.sum() * 0.0  # keeps the graph; VOC and COCO have no scores
    return F.mse_loss(predicted[known], target[known])


def attribute_loss(attribute_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 5: binary cross-entropy per attribute, mean over images and attributes. (B, C), (B, C)."""
    return F.binary_cross_entropy_with_logits(attribute_logits, labels.float())


def total_loss(losses: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """Eq. 1: L_all = l1 L_img + l2 L_cr + l3 L_priv + l4 L_att over the terms present in ``losses``."""
    if not losses:
        raise ValueError("no loss term is enabled")
    return sum(weights[name] * value for name, value in losses.items())


# --------------------------------------------------------------------------------------------
# The target S_i of eq. 2
# --------------------------------------------------------------------------------------------
def paper_crop_target(crop_cam_logits: torch.Tensor, n_classes: int) -> torch.Tensor:
    """The paper's S_i: Model-Cropped's CAMs (ReLU of the mask-weighted logits), (B*N, C, h, w)."""
    return torch.relu(crop_cam_logits[:, :n_classes]).detach()


def l2g_crop_target(
    crop_cam_logits: torch.Tensor,
    crop_labels: torch.Tensor,
    fg_gate: torch.Tensor,
    bg_gate: torch.Tensor,
    *,
    bg_threshold: float,
) -> torch.Tensor:
    """L2G's processed crop CAM: (B*N, C + 1, h, w) logits, background last -> target of the same shape.

    crop_labels (B*N, C); fg_gate (B*N, C, h, w): each attribute's prior mask (ones for un-masked
    attributes or without mask weighting); bg_gate (B*N, 1, h, w): 1 - union of the prior masks.
    """
    cams = torch.relu(crop_cam_logits.detach())
    cams = cams / (cams.amax(dim=(2, 3), keepdim=True) + 1e-8)  # per-channel max-normalise
    keep_channel = torch.cat(
        [crop_labels.float(), torch.ones_like(crop_labels[:, :1]).float()], dim=1
    )
    cams = cams * keep_channel[:, :, None, None]  # absent classes out; background always kept
    winner = (
        F.one_hot(cams.argmax(dim=1), cams.shape[1]).permute(0, 3, 1, 2).to(cams)
    )  # argmax class only
    binary = ((cams * winner) > bg_threshold).to(cams)
    return binary * torch.cat([fg_gate, bg_gate], dim=1)
