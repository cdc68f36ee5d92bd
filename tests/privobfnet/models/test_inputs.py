"""Tests of inputs."""

from __future__ import annotations

import torch

from privobfnet.models.inputs import images_to_tensor


def test_images_to_tensor_scales_to_unit_range_channels_last():
    images = torch.tensor([[[[0, 128, 255]]]], dtype=torch.uint8)  # (1, 1, 1, 3)
    x = images_to_tensor(images, "cpu")
    assert x.shape == (1, 3, 1, 1)
    torch.testing.assert_close(x.flatten(), torch.tensor([0.0, 128 / 255, 1.0]))
