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

from privobfnet.models.inputs import IMAGENET_NORM, InputNorm
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


# deeplab-pytorch's Caffe input: BGR, 0..255, minus these means (R, G, B here), no scaling
CAFFE_MEAN_RGB = (122.675, 116.669, 104.008)
CAFFE_NORM = InputNorm(tuple(m / 255 for m in CAFFE_MEAN_RGB), (1 / 255,) * 3)
RESNET101_BLOCKS = (3, 4, 23, 3)
# deeplab-pytorch's unit names -> torchvision's, within a bottleneck
_MSRA_UNITS = {
    "reduce.conv": "conv1",
    "reduce.bn": "bn1",
    "conv3x3.conv": "conv2",
    "conv3x3.bn": "bn2",
    "increase.conv": "conv3",
    "increase.bn": "bn3",
    "shortcut.conv": "downsample.0",
    "shortcut.bn": "downsample.1",
}


class MsraResNet(TorchvisionResNet):
    """The MSRA (Caffe) ResNet-101 of DeepLab's released models, at output stride 8, as
    kazuto1011/deeplab-pytorch builds it: the stride on a block's first 1x1 convolution (not its
    3x3), every block of the last two stages dilated 2 and 4, max pooling with ``ceil_mode``.

    Its weights are deeplab-pytorch's state dicts (``load_deeplab_pytorch``; e.g. the COCO-trained
    ``deeplabv1_resnet101-coco.pth`` that ``convert.py --dataset coco`` makes from DeepLab's
    ``init.caffemodel``, the initialisation of VOC runs). Caffe's input was BGR minus the means;
    the first convolution's input channels are reversed on loading, so the body takes RGB
    normalised by ``CAFFE_NORM``. Module names stay torchvision's.
    """

    input_norm = CAFFE_NORM

    def __init__(self, *, freeze_bn: bool = False, blocks: tuple[int, ...] = RESNET101_BLOCKS):
        nn.Module.__init__(self)
        net = torchvision.models.ResNet(
            torchvision.models.resnet.Bottleneck,
            list(blocks),
            replace_stride_with_dilation=[False, True, True],
        )
        for name in TRUNK:
            setattr(self, name, getattr(net, name))
        self.depth = 101 if tuple(blocks) == RESNET101_BLOCKS else sum(blocks) * 3 + 2
        self.maxpool.ceil_mode = True
        first = self.layer2[0]  # the one strided block at output stride 8
        first.conv1.stride, first.conv2.stride = (2, 2), (1, 1)
        for layer, rate in ((self.layer3, 2), (self.layer4, 4)):  # torchvision: 1 and 2 here
            layer[0].conv2.dilation, layer[0].conv2.padding = (rate, rate), (rate, rate)
        self.freeze_bn = freeze_bn
        if freeze_bn:
            freeze_batchnorm(self)

    def load_deeplab_pytorch(self, path: str | os.PathLike) -> dict[str, torch.Tensor]:
        """Load the trunk from a deeplab-pytorch state dict (every trunk tensor required; batch-norm
        counters optional); returns its tensors that are not the trunk's (its ``fc`` or ``aspp``)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        trunk, rest = msra_to_torchvision(state)
        missing, unexpected = self.load_state_dict(trunk, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise ValueError(
                f"{path}: not a deeplab-pytorch ResNet-101 state dict (missing {missing[:3]}, "
                f"unexpected {unexpected[:3]})"
            )
        return rest


def msra_to_torchvision(
    state: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """deeplab-pytorch's names (``layer1.conv1.conv``, ``layer{2..5}.block{j}.reduce.conv``, ...,
    optionally under ``base.``) -> (torchvision-named trunk tensors, the other tensors by their own
    names). The first convolution's input channels are reversed (BGR -> RGB)."""
    trunk, rest = {}, {}
    for key, value in state.items():
        name = key.removeprefix("base.")
        parts = name.split(".")
        if name.startswith("layer1.conv1."):
            unit = "conv1" if parts[2] == "conv" else "bn1"
            if name == "layer1.conv1.conv.weight":
                value = value.flip(1)  # Caffe's BGR input -> RGB
            trunk[f"{unit}.{parts[-1]}"] = value
        elif parts[0] in ("layer2", "layer3", "layer4", "layer5") and parts[1].startswith("block"):
            unit = _MSRA_UNITS.get(".".join(parts[2:4]))
            if unit is None:
                raise ValueError(f"{key}: not a deeplab-pytorch bottleneck tensor")
            stage, block = int(parts[0][5:]) - 1, int(parts[1][5:]) - 1
            trunk[f"layer{stage}.{block}.{unit}.{parts[-1]}"] = value
        else:
            rest[name] = value
    return trunk, rest
