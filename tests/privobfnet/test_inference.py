"""Model-Image on one image (scores, maps, masks) and DeepLabV2 on one image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from privobfnet.inference import predict, predict_segmentation
from privobfnet.models.deeplabv2 import (
    build_deeplab,
)
from tests.fixtures.models import deeplab_config, tiny_model


def test_predict_segmentation_returns_a_full_size_label_map():
    model = build_deeplab(deeplab_config(), n_classes=4).train()
    image = np.random.default_rng(0).integers(0, 255, size=(37, 45, 3), dtype=np.uint8)
    pred = predict_segmentation(model, image, "cpu")
    assert pred.shape == (37, 45) and pred.dtype == np.uint8 and pred.max() < 4
    assert model.training  # the caller's mode is restored
    with torch.no_grad():
        model.aspp.branches[1].bias[2] = 100.0  # class 2 wins everywhere
    assert (predict_segmentation(model, image, "cpu") == 2).all()


def test_predict_returns_image_resolution_masks():
    image = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    human = np.zeros((90, 120), np.uint8)
    human[:, :60] = 255
    result = predict(
        tiny_model(), image, human, None, input_size=64, class_threshold=0.0, bg_threshold=0.25
    )
    assert result.attribute_probs.shape == (4,) and 0 <= result.privacy_score <= 1
    assert result.attention.shape == result.masks.shape == (4, 90, 120)
    assert result.attention.max() <= 1.0 and result.masks.sum(axis=0).max() <= 1
    assert not result.masks[1][:, 70:].any()  # the human attribute stays on the person
    with pytest.raises(ValueError, match="does not match"):
        predict(
            tiny_model(),
            image,
            human[:10],
            None,
            input_size=64,
            class_threshold=0.5,
            bg_threshold=0.25,
        )
