"""A small dilated backbone for DeepLabV2 on CPU (default profile, trained from scratch).

Three strided 3x3 convolutions take the image to output stride 8, then residual blocks with
dilated 3x3 convolutions widen the receptive field without further downsampling, as ResNet-101's
last two stages do in DeepLabV2. Batch norm stays trainable: there are no pre-trained statistics
to keep. The last block hands its sum to the head without a ReLU: features that are not all
positive keep the summed ASPP head, at 10x the backbone's learning rate, from overshooting in its
first steps (on SynthPriv this trained steadier and reached a higher mIoU at a given budget).
"""

from __future__ import annotations

import torch
from torch import nn

from privobfnet.models.inputs import IMAGENET_NORM
from privobfnet.models.layers import conv_bn_relu


class DilatedResidualBlock(nn.Module):
    """Two dilated 3x3 convolutions with an identity shortcut, then a ReLU unless ``relu=False``."""

    def __init__(self, channels: int, *, dilation: int, relu: bool = True):
        super().__init__()
        self.conv1 = conv_bn_relu(channels, channels, dilation=dilation)
        self.conv2 = nn.Conv2d(
            channels, channels, 3, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, C, h, w)
        out = x + self.bn2(self.conv2(self.conv1(x)))
        return torch.relu(out) if self.relu else out


class TinyDilatedBody(nn.Module):
    """Image (B, 3, H, W) -> features (B, 4 * width, H/8, W/8); ``out_channels`` says how many."""

    DILATIONS = (1, 2, 4, 2)  # a 2-4-2 "sawtooth" avoids the gridding of a steadily rising rate
    input_norm = IMAGENET_NORM
    output_stride = 8

    def __init__(self, *, width: int):
        super().__init__()
        self.out_channels = 4 * width
        self.stem = nn.Sequential(
            conv_bn_relu(3, width, stride=2),  # (B, w, H/2, W/2)
            conv_bn_relu(width, 2 * width, stride=2),  # (B, 2w, H/4, W/4)
            conv_bn_relu(2 * width, 2 * width),
            conv_bn_relu(2 * width, 4 * width, stride=2),  # (B, 4w, H/8, W/8)
        )
        last = len(self.DILATIONS) - 1
        self.blocks = nn.Sequential(
            *(
                DilatedResidualBlock(4 * width, dilation=d, relu=i < last)
                for i, d in enumerate(self.DILATIONS)
            )
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))  # (B, 4w, H/8, W/8)
