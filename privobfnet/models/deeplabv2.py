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

import dataclasses
import os
from collections import OrderedDict
from typing import Any

import torch
import torchvision
from torch import nn

from privobfnet.config import DeeplabConfig
from privobfnet.models.deeplab_tiny import TinyDilatedBody
from privobfnet.models.inputs import IMAGENET_NORM
from privobfnet.models.lite0 import EfficientNetLite0
from privobfnet.models.norm import keep_batchnorm_frozen

ASPP_RATES = (6, 12, 18, 24)
ASPP_LR_MULT = 10.0  # the head learns from scratch; the reference gives it 10x the backbone's rate


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
            for module in self.batch_norms():
                module.requires_grad_(False)
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


class ResNet101Body(nn.Sequential):
    """torchvision's ResNet-101 modules in sequence; ImageNet-normalised input, output stride 8."""

    input_norm = IMAGENET_NORM
    output_stride = 8


def resnet101_body() -> ResNet101Body:
    """torchvision's ResNet-101 without pooling and classifier, output stride 8 (B, 2048, H/8, W/8).

    Module names match torchvision's state dict (``conv1``, ``layer1`` ...), so its ImageNet
    weights load directly.
    """
    net = torchvision.models.resnet101(
        weights=None, replace_stride_with_dilation=[False, True, True]
    )
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    return ResNet101Body(OrderedDict((name, getattr(net, name)) for name in names))


def load_resnet101_weights(body: nn.Sequential, path: str | os.PathLike) -> None:
    """Load torchvision ImageNet ResNet-101 weights (a state dict file) into ``body``; fc is skipped.

    Every backbone tensor must be present (strict), so a wrong file fails loudly.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in state:  # some exporters nest it
        state = state["state_dict"]
    body.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")}, strict=True)


def build_deeplab(cfg: DeeplabConfig, *, n_classes: int, load_pretrained: bool = True) -> DeepLabV2:
    """DeepLabV2 with the configured backbone; ImageNet weights from ``cfg.pretrained`` when set."""
    if cfg.backbone == "resnet101":
        body = resnet101_body()
        if cfg.pretrained and load_pretrained:
            load_resnet101_weights(body, cfg.pretrained)
        # Frozen batch norm keeps ImageNet's statistics; without them it would be the identity
        # (mean 0, var 1) and 101 un-normalised layers diverge (NaN in the first steps on a GPU).
        return DeepLabV2(
            body, body_channels=2048, n_classes=n_classes, freeze_bn=cfg.pretrained is not None
        )
    if cfg.backbone == "lite0":
        frozen = cfg.pretrained is not None
        lite0 = EfficientNetLite0(
            frozen_stages=cfg.lite0_frozen_stages if frozen else 0, freeze_bn=frozen
        )
        if cfg.pretrained and load_pretrained:
            lite0.load_imagenet(cfg.pretrained)
        return DeepLabV2(
            lite0, body_channels=lite0.out_channels, n_classes=n_classes, freeze_bn=frozen
        )
    if cfg.pretrained and load_pretrained:
        raise ValueError(
            f"deeplab.pretrained: the {cfg.backbone} backbone trains from scratch; set it to null"
        )
    body = TinyDilatedBody(width=cfg.tiny_width)
    return DeepLabV2(body, body_channels=body.out_channels, n_classes=n_classes, freeze_bn=False)


def optimizer_param_groups(model: DeepLabV2, *, weight_decay: float) -> list[dict[str, Any]]:
    """SGD groups: the backbone's trainable tensors at 1x, the ASPP head at 10x (key ``lr_mult``)."""
    body = [p for p in model.body.parameters() if p.requires_grad]
    head = list(model.aspp.parameters())
    return [
        {"params": body, "lr_mult": 1.0, "weight_decay": weight_decay},
        {"params": head, "lr_mult": ASPP_LR_MULT, "weight_decay": weight_decay},
    ]


def checkpoint_payload(
    model: DeepLabV2, cfg: DeeplabConfig, *, class_names: list[str], iteration: int
) -> dict:
    """What ``final.pt`` holds: the weights, the deeplab config, class names (background first)."""
    return {
        "model": model.state_dict(),
        "config": dataclasses.asdict(cfg),
        "class_names": list(class_names),
        "iteration": iteration,
    }


def load_deeplab(path: str | os.PathLike, device: str | torch.device) -> tuple[DeepLabV2, dict]:
    """A trained model from ``final.pt`` in eval mode, and its metadata (config, class_names ...)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    cfg = DeeplabConfig(**payload["config"])
    model = build_deeplab(cfg, n_classes=len(payload["class_names"]), load_pretrained=False)
    model.load_state_dict(payload["model"])
    meta = {k: v for k, v in payload.items() if k != "model"}
    return model.to(device).eval(), meta
