"""Backbones behind one interface: image (B, 3, H, W) -> feature map (B, out_channels, H/os, W/os).

Every backbone has ``out_channels``, ``output_stride`` (8; EfficientNet-Lite0 16) and
``input_norm``, the normalisation its ImageNet weights expect. ImageNet weights come from a local
file (the ``weights`` stage puts them in ``data/weights/``); nothing is downloaded here.
"""

from __future__ import annotations

import os
from typing import Literal, Optional

import torch
import torchvision
from torch import nn

from privobfnet.models.inputs import IMAGENET_NORM
from privobfnet.models.lite0 import LITE0_FROZEN_STAGES, build_lite0
from privobfnet.models.norm import keep_batchnorm_frozen
from privobfnet.models.resnet38 import ResNet38, resnet38_imagenet_state
from privobfnet.models.tiny import TinyBackbone

BackboneName = Literal["tiny", "resnet38", "resnet50", "resnet101", "lite0"]


class TorchvisionResNet(nn.Module):
    """torchvision ResNet-50/101 trunk at output stride 8 (layer3/4 dilated instead of strided).

    With ImageNet weights its BatchNorm layers stay frozen (eval mode, fixed affine), the usual
    choice for small-batch WSSS training; from scratch they train.
    """

    output_stride = 8
    input_norm = IMAGENET_NORM

    def __init__(self, depth: Literal[50, 101], *, freeze_bn: bool = False):
        super().__init__()
        make = {50: torchvision.models.resnet50, 101: torchvision.models.resnet101}[depth]
        net = make(weights=None, replace_stride_with_dilation=[False, True, True])
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        self.out_channels = 2048
        self.freeze_bn = freeze_bn
        if freeze_bn:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 2048, ceil(H/8), ceil(W/8))."""
        x = self.stem(images)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def train(self, mode: bool = True) -> "TorchvisionResNet":
        """Switch mode; BatchNorm stays in eval mode when ``freeze_bn``."""
        super().train(mode)
        if self.freeze_bn:
            keep_batchnorm_frozen(self)
        return self


def torchvision_imagenet_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet ResNet state dict renamed to ``TorchvisionResNet`` keys (fc dropped)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    stem = {"conv1.": "stem.0.", "bn1.": "stem.1."}
    out = {}
    for key, value in state.items():
        if key.startswith("fc."):
            continue
        for old, new in stem.items():
            if key.startswith(old):
                key = new + key[len(old) :]
        out[key] = value
    return out


def build_backbone(
    name: BackboneName,
    *,
    tiny_width: int = 32,
    pretrained: Optional[str] = None,
    lite0_frozen_stages: int = LITE0_FROZEN_STAGES,
) -> nn.Module:
    """The named backbone, with ImageNet weights loaded from ``pretrained`` (a local file) if given.

    Raises ValueError when the file's keys do not match the backbone (a wrong or damaged file).
    """
    if name == "tiny":
        if pretrained is not None:
            raise ValueError(
                "the tiny backbone has no ImageNet weights; set train.pretrained to null"
            )
        return TinyBackbone(width=tiny_width)
    if name == "lite0":  # loads its weights strictly itself
        return build_lite0(pretrained=pretrained, frozen_stages=lite0_frozen_stages)
    frozen = pretrained is not None
    if name == "resnet38":
        model: nn.Module = ResNet38(
            freeze_bn=frozen, frozen_prefixes=("conv1a", "b2.", "b2_") if frozen else ()
        )
        state = resnet38_imagenet_state(pretrained) if frozen else None
    elif name in ("resnet50", "resnet101"):
        model = TorchvisionResNet(50 if name == "resnet50" else 101, freeze_bn=frozen)
        state = torchvision_imagenet_state(pretrained) if frozen else None
    else:
        raise ValueError(f"unknown backbone {name!r}")
    if state is not None:
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise ValueError(f"{pretrained}: weights do not fit {name}: {str(exc)[:300]}") from None
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise ValueError(
                f"{pretrained}: weights do not fit {name} (missing {missing[:5]}, "
                f"unexpected {unexpected[:5]})"
            )
    return model
