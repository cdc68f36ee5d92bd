"""DeepLabV2 (Chen et al., TPAMI 2017): a dilated backbone at output stride 8 and the ASPP head.

The head is four parallel 3x3 convolutions at rates 6, 12, 18 and 24, each mapping the backbone's
features straight to class scores; their outputs are summed (kazuto1011/deeplab-pytorch's layout).
Backbones: ResNet-101 (torchvision's, the last two stages dilated 2 and 4 instead of strided;
with ImageNet weights its batch norm is frozen, as in the reference), the small
``TinyDilatedBody`` for the CPU profile (trained from scratch, batch norm trainable), or
EfficientNet-Lite0 at output stride 16 (ImageNet weights on CPU; batch norm and the stages up to
stride 8 frozen). At output stride 16 the ASPP rates are halved (3, 6, 9, 12) so that each branch
spans the same image area as the reference's at stride 8. Each body declares its input
normalisation (``input_norm``) and ``output_stride``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from privobfnet.config import DeeplabConfig
from privobfnet.models.backbones import build_backbone
from privobfnet.models.layers import freeze_batchnorm, keep_batchnorm_frozen

ASPP_RATES = (6, 12, 18, 24)
ASPP_LR_MULT = 10.0  # the head learns from scratch; the reference gives it 10x the backbone's rate
ASPP_BIAS_LR_MULT = 20.0  # deeplab-pytorch: the head's biases 20x, without weight decay


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling, v2: one 3x3 conv per rate to class scores, outputs summed."""

    def __init__(self, in_channels: int, n_classes: int, *, rates: tuple[int, ...] = ASPP_RATES):
        super().__init__()
        self.rates = tuple(rates)
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, n_classes, 3, padding=rate, dilation=rate, bias=True)
            for rate in rates
        )
        for branch in self.branches:  # the reference's init: small weights, zero bias
            nn.init.normal_(branch.weight, mean=0.0, std=0.01)
            nn.init.zeros_(branch.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, K, h, w)
        return sum(branch(x) for branch in self.branches)


def aspp_rates(output_stride: int) -> tuple[int, ...]:
    """The reference's rates (defined at output stride 8) rescaled to the body's feature cells."""
    if output_stride not in (8, 16):
        raise ValueError(f"DeepLabV2: output stride {output_stride} is not supported (8 or 16)")
    return tuple(rate * 8 // output_stride for rate in ASPP_RATES)


class DeepLabV2(nn.Module):
    """Images (B, 3, H, W) in [0, 1] -> class scores (B, K, ceil(H/os), ceil(W/os)), os the body's stride."""

    def __init__(self, body: nn.Module, *, body_channels: int, n_classes: int, freeze_bn: bool):
        super().__init__()
        self.body = body
        self.aspp = ASPP(body_channels, n_classes, rates=aspp_rates(body.output_stride))
        self.n_classes = n_classes
        self.freeze_bn = freeze_bn
        # the body's own input normalisation (its ImageNet weights were trained with it)
        mean, std = body.input_norm.tensors()
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        if freeze_bn:
            freeze_batchnorm(self.body)
        self.train()

    def batch_norms(self) -> list[nn.BatchNorm2d]:
        """The backbone's batch-norm layers."""
        return [m for m in self.body.modules() if isinstance(m, nn.BatchNorm2d)]

    def train(self, mode: bool = True) -> "DeepLabV2":
        """As ``nn.Module.train``, but frozen batch norm stays in eval mode (running statistics)."""
        super().train(mode)
        if self.freeze_bn:
            keep_batchnorm_frozen(self.body)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean) / self.std
        return self.aspp(self.body(x))  # (B, K, H/os, W/os)


class MSC(nn.Module):
    """Multi-scale inputs (deeplab-pytorch's MSC): the model on the image and on copies rescaled by
    ``scales`` (bilinear); the copies' scores are upsampled (bilinear) to the full image's and fused
    by a pixel-wise max. In training mode the list [full, *rescaled, fused] (a loss on each), in
    eval mode the fused scores. Wraps the model for a step; checkpoints hold the model itself."""

    def __init__(self, model: nn.Module, scales: Sequence[float]):
        super().__init__()
        self.model, self.scales = model, tuple(scales)

    def forward(self, images: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        full = self.model(images)
        pyramid = [
            self.model(F.interpolate(images, scale_factor=s, mode="bilinear", align_corners=False))
            for s in self.scales
        ]
        size = full.shape[-2:]
        resized = [
            F.interpolate(p, size=size, mode="bilinear", align_corners=False) for p in pyramid
        ]
        fused = torch.stack([full, *resized]).amax(dim=0)
        return [full, *pyramid, fused] if self.training else fused


# DeepLabV2's deeplab.backbone -> the backbone factory's name (its small body is the dilated one)
BODIES = {
    "tiny": "tiny_dilated",
    "resnet101": "resnet101",
    "resnet101_msra": "resnet101_msra",
    "lite0": "lite0",
}


def build_deeplab(cfg: DeeplabConfig, *, n_classes: int, load_pretrained: bool = True) -> DeepLabV2:
    """DeepLabV2 on the configured body (``build_backbone``); ImageNet weights from ``cfg.pretrained``
    when set and ``load_pretrained`` (a trained checkpoint's weights replace them otherwise)."""
    body = build_backbone(
        BODIES[cfg.backbone],
        pretrained=cfg.pretrained,
        load_weights=load_pretrained,
        tiny_width=cfg.tiny_width,
        lite0_frozen_stages=cfg.lite0_frozen_stages,
    )
    return DeepLabV2(
        body,
        body_channels=body.out_channels,
        n_classes=n_classes,
        freeze_bn=cfg.pretrained is not None,
    )
