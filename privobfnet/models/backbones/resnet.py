"""torchvision's ResNet-50/101 trunk at output stride 8 (layer3 and layer4 dilated 2 and 4 instead of
strided), as DeepLabV2 and the WSSS literature use it; built and loaded once for both networks.

Module names are torchvision's (``conv1``, ``bn1``, ``layer1`` ... ``layer4``), so its ImageNet
state dict loads as it is (``fc`` dropped). With ImageNet weights batch norm stays frozen (eval
mode, fixed affine): the usual choice for small-batch training, and without ImageNet's statistics
101 un-normalised layers diverge.
"""

from __future__ import annotations

import os
from typing import Literal

import torch
import torchvision
from torch import nn

from privobfnet.models.inputs import IMAGENET_NORM
from privobfnet.models.layers import freeze_batchnorm, keep_batchnorm_frozen

TRUNK = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


class TorchvisionResNet(nn.Module):
    """(B, 3, H, W) ImageNet-normalised -> (B, 2048, ceil(H/8), ceil(W/8))."""

    output_stride = 8
    input_norm = IMAGENET_NORM
    out_channels = 2048

    def __init__(self, depth: Literal[50, 101], *, freeze_bn: bool = False):
        super().__init__()
        make = {50: torchvision.models.resnet50, 101: torchvision.models.resnet101}[depth]
        net = make(weights=None, replace_stride_with_dilation=[False, True, True])
        for name in TRUNK:
            setattr(self, name, getattr(net, name))
        self.depth = depth
        self.freeze_bn = freeze_bn
        if freeze_bn:
            freeze_batchnorm(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def train(self, mode: bool = True) -> "TorchvisionResNet":
        """Switch mode; batch norm stays in eval mode when ``freeze_bn``."""
        super().train(mode)
        if self.freeze_bn:
            keep_batchnorm_frozen(self)
        return self

    def load_imagenet(self, path: str | os.PathLike) -> None:
        """torchvision's ImageNet state dict (a file; ``fc`` skipped), every trunk tensor required."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:  # some exporters nest it
            state = state["state_dict"]
        try:
            self.load_state_dict(
                {k: v for k, v in state.items() if not k.startswith("fc.")}, strict=True
            )
        except RuntimeError as exc:  # missing, unexpected or misshapen tensors
            raise ValueError(
                f"{path}: weights do not fit resnet{self.depth}: {str(exc)[:300]}"
            ) from None
