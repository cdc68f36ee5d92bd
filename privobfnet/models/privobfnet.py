"""Model-Image and Model-Cropped: two networks of one architecture (paper sections 3.1-3.5).

``PrivObfNet`` = backbone -> CAM head (mask-gated) -> attention-weighted features V -> attribute
head and privacy-score head. Model-Image sees whole images; Model-Cropped sees random crops and
only its CAM is used (eq. 2, eq. 3). Only Model-Image is used at inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from privobfnet.models.backbones import BackboneName, build_backbone
from privobfnet.models.backbones.lite0 import LITE0_FROZEN_STAGES
from privobfnet.models.heads import (
    AttentionFeatures,
    AttributeHead,
    CamHead,
    PrivacyHead,
    gate_by_prior_masks,
    mask_type_index,
    prior_masks_at,
)
from privobfnet.models.inputs import IMAGENET_NORM, renormalize_affine


@dataclass(frozen=True)
class ModelOutput:
    """What one forward pass gives."""

    cam_logits: (
        torch.Tensor
    )  # (B, K, h, w) mask-gated CAM logits; K = C, or C + 1 with background last
    class_logits: (
        torch.Tensor
    )  # (B, C) global average of the attribute channels of cam_logits (eq. 3)
    attribute_logits: Optional[torch.Tensor]  # (B, C) attribute head (eq. 5); None when heads=False
    privacy: Optional[torch.Tensor]  # (B,) privacy score in [0, 1] (eq. 4); None when heads=False


class PrivObfNet(nn.Module):
    """One network of the ensemble: image + human/text masks -> CAMs, attribute logits, privacy score.

    Images come ImageNet-normalised (``inputs.normalize``'s default) whatever the backbone; a
    backbone whose weights expect another normalisation (``input_norm``) gets them converted.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        mask_types: Sequence[str],
        background_channel: bool,
        feature_dim: int,
        use_mask_weighting: bool,
    ):
        super().__init__()
        self.n_classes = len(mask_types)
        self.use_mask_weighting = use_mask_weighting
        self.backbone = backbone
        # (1, 3, 1, 1) affine map to the backbone's own normalisation; None when it is ImageNet's
        scale, shift = (
            (None, None)
            if backbone.input_norm == IMAGENET_NORM
            else renormalize_affine(IMAGENET_NORM, backbone.input_norm)
        )
        self.register_buffer("input_scale", scale, persistent=False)
        self.register_buffer("input_shift", shift, persistent=False)
        # each class's prior type (privobfnet.priors: the coarse Table 1 types, or refined ones)
        self.prior_types = tuple(mask_types)
        background = ["none"] if background_channel else []
        self.register_buffer(
            "type_index", mask_type_index(self.prior_types, background), persistent=False
        )
        self.cam_head = CamHead(backbone.out_channels, self.n_classes + len(background))
        self.attention_features = AttentionFeatures(backbone.out_channels, feature_dim)
        self.attribute_head = AttributeHead(self.n_classes, feature_dim)
        self.privacy_head = PrivacyHead(self.n_classes, feature_dim)

    def forward(
        self,
        images: torch.Tensor,
        human_masks: torch.Tensor,
        text_masks: torch.Tensor,
        *,
        heads: bool = True,
    ) -> ModelOutput:
        """images (B, 3, H, W) ImageNet-normalised; the prior stacks (B, Ch, H, W) and (B, Ct, H, W)
        in [0, 1] (``privobfnet.priors``; coarse: one channel each). ``heads=False``: CAMs only."""
        if self.input_scale is not None:
            images = images * self.input_scale + self.input_shift
        features = self.backbone(images)  # (B, D, h, w)
        logits = self.cam_head(features)  # (B, K, h, w)
        if self.use_mask_weighting:
            priors = prior_masks_at(
                human_masks, text_masks, tuple(logits.shape[-2:])
            )  # (B, 1 + Ch + Ct, h, w)
            logits = gate_by_prior_masks(logits, priors, self.type_index)
        class_logits = logits[:, : self.n_classes].mean(dim=(2, 3))  # (B, C)
        if not heads:
            return ModelOutput(logits, class_logits, None, None)
        attention = torch.relu(
            logits[:, : self.n_classes]
        )  # (B, C, h, w): the weighted attention maps
        v = self.attention_features(features, attention)  # (B, C, dim)
        return ModelOutput(logits, class_logits, self.attribute_head(v), self.privacy_head(v))

    def cams(
        self, images: torch.Tensor, human_masks: torch.Tensor, text_masks: torch.Tensor
    ) -> torch.Tensor:
        """Mask-weighted CAM logits of the attributes, (B, C, h, w) at the backbone's output stride,
        signed: CAM inference averages the views' signed maps before its one ReLU, as L2G's."""
        return self(images, human_masks, text_masks, heads=False).cam_logits[:, : self.n_classes]

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone parameters, new-layer parameters), trainable ones only; new layers get lr x10."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        ids = {id(p) for p in self.backbone.parameters()}
        new = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return backbone, new


def feature_dim_for(out_channels: int) -> int:
    """Width of the attention-weighted features V: the backbone's, at most 256."""
    return min(256, out_channels)


def build_model(
    *,
    backbone: BackboneName,
    tiny_width: int,
    pretrained: Optional[str],
    mask_types: Sequence[str],
    background_channel: bool,
    use_mask_weighting: bool,
    lite0_frozen_stages: int = LITE0_FROZEN_STAGES,
) -> PrivObfNet:
    """One ``PrivObfNet`` (random heads; backbone from ImageNet weights when ``pretrained``)."""
    trunk = build_backbone(
        backbone,
        tiny_width=tiny_width,
        pretrained=pretrained,
        lite0_frozen_stages=lite0_frozen_stages,
    )
    return PrivObfNet(
        trunk,
        mask_types=mask_types,
        background_channel=background_channel,
        feature_dim=feature_dim_for(trunk.out_channels),
        use_mask_weighting=use_mask_weighting,
    )
