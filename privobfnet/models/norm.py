"""Frozen batch norm: the backbones that start from ImageNet weights keep its running statistics."""

from __future__ import annotations

from torch import nn


def keep_batchnorm_frozen(module: nn.Module) -> None:
    """Put every BatchNorm2d under ``module`` back in eval mode (call after ``nn.Module.train``)."""
    for child in module.modules():
        if isinstance(child, nn.BatchNorm2d):
            child.eval()
