"""The small backbone of the default profile: trained from scratch on 2 CPU cores in minutes.

Designed for CPU throughput: a space-to-depth stem (``PixelUnshuffle(4)``) instead of a conv on 3
channels at full resolution (such convs run at a few percent of the machine's matmul speed), all
work at output stride 4 and 8 with at least 2 * width channels, convs without bias (BN follows),
and ``channels_last`` memory format so oneDNN picks its blocked kernels.
"""

from __future__ import annotations

import torch
from torch import nn

from privobfnet.models.inputs import IMAGENET_NORM
from privobfnet.models.layers import conv_bn_relu


class BasicBlock(nn.Module):
    """Two dilated 3x3 convs with an identity shortcut (ResNet's basic block, shape-preserving)."""

    def __init__(self, channels: int, *, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, dilation, dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, C, h, w)
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + x)


class TinyBackbone(nn.Module):
    """Image -> features at output stride 8 with ``4 * width`` channels."""

    output_stride = 8
    input_norm = IMAGENET_NORM

    def __init__(self, *, width: int = 32):
        super().__init__()
        self.out_channels = 4 * width
        self.stem = nn.Sequential(nn.PixelUnshuffle(4), conv_bn_relu(3 * 16, 2 * width))  # OS 4
        self.down = conv_bn_relu(2 * width, 4 * width, stride=2)  # OS 8
        self.blocks = nn.Sequential(
            BasicBlock(4 * width, dilation=1), BasicBlock(4 * width, dilation=2)
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 4 * width, ceil(H/8), ceil(W/8)); exact for multiples of 8."""
        pad_h, pad_w = -images.shape[2] % 4, -images.shape[3] % 4  # the stem needs multiples of 4
        if pad_h or pad_w:
            images = nn.functional.pad(images, (0, pad_w, 0, pad_h))
        return self.blocks(self.down(self.stem(images)))
