"""Layers shared by the networks: the 3x3 conv-BN-ReLU unit, and batch norm kept frozen."""

from __future__ import annotations

from torch import nn


def conv_bn_relu(
    in_channels: int, out_channels: int, *, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    """3x3 convolution without bias (padding keeps the size at stride 1), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            3,
            stride=stride,
            padding=dilation,
            dilation=dilation,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def freeze_batchnorm(module: nn.Module) -> None:
    """Fix the affine parameters of every BatchNorm2d under ``module`` (no gradient)."""
    for child in module.modules():
        if isinstance(child, nn.BatchNorm2d):
            child.requires_grad_(False)


def keep_batchnorm_frozen(module: nn.Module) -> None:
    """Put every BatchNorm2d under ``module`` back in eval mode (call after ``nn.Module.train``)."""
    for child in module.modules():
        if isinstance(child, nn.BatchNorm2d):
            child.eval()
