"""Backbones behind one interface, built by one factory: image (B, 3, H, W) -> features
(B, out_channels, H/os, W/os).

Every backbone has ``out_channels``, ``output_stride`` (8; EfficientNet-Lite0 16) and
``input_norm``, the normalisation its ImageNet weights expect. ImageNet weights come from a local
file; nothing is downloaded here. The ensemble (``privobfnet.models.privobfnet``) and DeepLabV2
(``privobfnet.models.deeplabv2``) both build their trunks with ``build_backbone``.

========================  =====================================================  ==================
name                      what                                                   ImageNet weights
========================  =====================================================  ==================
``tiny``                  the small from-scratch trunk of the ci profile         none
``tiny_dilated``          DeepLabV2's small from-scratch body (dilated blocks)   none
``resnet38``              ResNet-38 as PSA / L2G use it                          PSA's converted file
``resnet50``, ``resnet101``  torchvision's, output stride 8                      torchvision's
``resnet101_msra``        DeepLab's MSRA (Caffe) ResNet-101, deeplab-pytorch's   its COCO-trained init
``lite0``                 EfficientNet-Lite0 (timm), output stride 16            the PyPI wheel's
========================  =====================================================  ==================
"""

from __future__ import annotations

import os
from typing import Literal, Optional

from torch import nn

from privobfnet.models.backbones.lite0 import LITE0_FROZEN_STAGES, build_lite0
from privobfnet.models.backbones.resnet import MsraResNet, TorchvisionResNet
from privobfnet.models.backbones.resnet38 import ResNet38, resnet38_imagenet_state
from privobfnet.models.backbones.tiny import TinyBackbone
from privobfnet.models.backbones.tiny_dilated import TinyDilatedBody

BackboneName = Literal[
    "tiny", "tiny_dilated", "resnet38", "resnet50", "resnet101", "resnet101_msra", "lite0"
]
FROM_SCRATCH = ("tiny", "tiny_dilated")


def build_backbone(
    name: BackboneName,
    *,
    pretrained: Optional[str | os.PathLike] = None,
    load_weights: bool = True,
    tiny_width: int = 32,
    lite0_frozen_stages: int = LITE0_FROZEN_STAGES,
) -> nn.Module:
    """The named backbone. ``pretrained``: its ImageNet weights file; a pretrained backbone keeps
    batch norm frozen (and ResNet-38 / Lite0 their first layers), as it trained. ``load_weights=False``
    builds it so without reading the file (a checkpoint's weights replace them).

    Raises ValueError for an unknown name, weights for a from-scratch trunk, or a file whose tensors
    do not fit.
    """
    if name in FROM_SCRATCH:
        if pretrained is not None:
            raise ValueError(f"the {name} backbone has no ImageNet weights; set pretrained to null")
        return (
            TinyBackbone(width=tiny_width) if name == "tiny" else TinyDilatedBody(width=tiny_width)
        )
    frozen = pretrained is not None
    weights = pretrained if frozen and load_weights else None
    if name == "lite0":
        model = build_lite0(pretrained=None, frozen_stages=lite0_frozen_stages, frozen=frozen)
        if weights is not None:
            model.load_imagenet(weights)
        return model
    if name in ("resnet50", "resnet101"):
        model = TorchvisionResNet(50 if name == "resnet50" else 101, freeze_bn=frozen)
        if weights is not None:
            model.load_imagenet(weights)
        return model
    if name == "resnet101_msra":
        model = MsraResNet(freeze_bn=frozen)
        if weights is not None:
            model.load_deeplab_pytorch(weights)  # its fc / ASPP is not the body's: left out
        return model
    if name == "resnet38":
        model = ResNet38(
            freeze_bn=frozen, frozen_prefixes=("conv1a", "b2.", "b2_") if frozen else ()
        )
        if weights is not None:
            _load_exact(model, resnet38_imagenet_state(weights), weights, name)
        return model
    raise ValueError(f"unknown backbone {name!r}")


def _load_exact(model: nn.Module, state: dict, path: str | os.PathLike, name: str) -> None:
    """Load ``state``; every tensor of the model must be there (batch-norm counters aside)."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ValueError(f"{path}: weights do not fit {name}: {str(exc)[:300]}") from None
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not fit {name} (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )


__all__ = ["BackboneName", "TorchvisionResNet", "build_backbone"]
