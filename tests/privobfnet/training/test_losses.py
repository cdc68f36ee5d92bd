"""The paper's losses (eq. 1-5) and the crop targets against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from privobfnet.training.losses import (
    attribute_loss,
    cropped_loss,
    image_loss,
    l2g_crop_target,
    paper_crop_target,
    privacy_loss,
    total_loss,
)

LN3 = math.log(3.0)  # sigmoid(ln 3) = 0.75; softmax([0, ln 3]) = [0.25, 0.75]


def test_image_loss_eq2_is_the_mean_over_crops_of_the_squared_error():
    g = torch.tensor([[0.0, LN3], [0.0, 0.0]]).view(
        2, 2, 1, 1
    )  # two crops, two channels, one pixel
    s = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).view(2, 2, 1, 1)
    # crop 1: softmax [.25, .75] vs [0, 1] -> (.0625 + .0625) / 2; crop 2: [.5, .5] vs [1, 0] -> .25
    assert image_loss(g, s).item() == pytest.approx((0.0625 + 0.25) / 2)


def test_image_loss_sends_no_gradient_into_the_crop_target():
    g = torch.zeros(1, 2, 2, 2, requires_grad=True)
    s = torch.rand(1, 2, 2, 2, requires_grad=True)
    image_loss(g, s).backward()
    assert g.grad is not None and g.grad.abs().sum() > 0
    assert s.grad is None


def test_cropped_loss_eq3_multilabel_soft_margin():
    logits = torch.tensor([[0.0, LN3]])
    labels = torch.tensor([[1, 0]])
    # class 0 present: -log sigmoid(0) = ln 2; class 1 absent: -log(1 - .75) = ln 4
    assert cropped_loss(logits, labels).item() == pytest.approx((math.log(2) + math.log(4)) / 2)


def test_privacy_loss_eq4_skips_images_without_a_score():
    predicted = torch.tensor([0.5, 0.2, 0.9])
    target = torch.tensor([1.0, float("nan"), 0.6])
    assert privacy_loss(predicted, target).item() == pytest.approx((0.5**2 + 0.3**2) / 2)


def test_privacy_loss_is_zero_but_differentiable_without_any_score():
    predicted = torch.tensor([0.3, 0.7], requires_grad=True)
    loss = privacy_loss(predicted, torch.full((2,), float("nan")))
    loss.backward()
    assert loss.item() == 0.0 and predicted.grad is not None and predicted.grad.abs().sum() == 0


def test_attribute_loss_eq5_binary_cross_entropy():
    logits = torch.tensor([[0.0, LN3]])
    labels = torch.tensor([[0, 1]])
    # class 0 absent: -log(1 - .5) = ln 2; class 1 present: -log .75
    assert attribute_loss(logits, labels).item() == pytest.approx(
        (math.log(2) - math.log(0.75)) / 2
    )


def test_total_loss_eq1_weights_each_present_term():
    weights = {"image": 10.0, "cropped": 1.0, "privacy": 1.0, "attribute": 1.0}
    terms = {
        "image": torch.tensor(0.1),
        "cropped": torch.tensor(0.2),
        "privacy": torch.tensor(0.3),
        "attribute": torch.tensor(0.4),
    }
    assert total_loss(terms, weights).item() == pytest.approx(10 * 0.1 + 0.2 + 0.3 + 0.4)
    ablated = {"image": torch.tensor(0.1), "cropped": torch.tensor(0.2)}  # no privacy, no attribute
    assert total_loss(ablated, weights).item() == pytest.approx(1.2)
    with pytest.raises(ValueError, match="no loss term"):
        total_loss({}, weights)


def test_paper_crop_target_is_the_relu_crop_cam_without_background():
    logits = torch.tensor([-1.0, 2.0, 5.0]).view(1, 3, 1, 1)  # two attributes + a third channel
    target = paper_crop_target(logits, n_classes=2)
    assert target.flatten().tolist() == [0.0, 2.0]


def test_l2g_crop_target_normalises_keeps_argmax_thresholds_and_weights_by_masks():
    # three pixels; channels: attribute 0 (present), attribute 1 (absent), background
    logits = torch.tensor([[4.0, 1.0, 0.4], [-1.0, 2.0, 0.0], [0.5, 1.0, 0.05]]).view(1, 3, 1, 3)
    # max-normalised: a0 [1, .25, .1]; a1 [0, 1, 0] but absent -> 0; bg [.5, 1, .05]
    # argmax: pixel 0 -> a0 (1), pixel 1 -> bg (1), pixel 2 -> a0 (.1 < threshold .2 -> dropped)
    labels = torch.tensor([[1.0, 0.0]])
    fg_gate = torch.tensor([[0.8, 0.6, 1.0], [1.0, 1.0, 1.0]]).view(1, 2, 1, 3)
    bg_gate = torch.tensor([0.3, 0.4, 0.5]).view(1, 1, 1, 3)
    target = l2g_crop_target(logits, labels, fg_gate, bg_gate, bg_threshold=0.2)
    expected = torch.tensor([[0.8, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.4, 0.0]]).view(1, 3, 1, 3)
    torch.testing.assert_close(target, expected)


def test_l2g_crop_target_gives_each_pixel_to_its_winning_present_class():
    # already max-normalised; each channel peaks at its own pixel
    logits = torch.tensor([[1.0, 0.2, 0.1], [0.3, 1.0, 0.2], [0.1, 0.4, 1.0]]).view(1, 3, 1, 3)
    ones_fg, ones_bg = torch.ones(1, 2, 1, 3), torch.ones(1, 1, 1, 3)
    both = l2g_crop_target(logits, torch.tensor([[1.0, 1.0]]), ones_fg, ones_bg, bg_threshold=0.001)
    torch.testing.assert_close(both, torch.eye(3).view(3, 1, 3).unsqueeze(0))
    only_first = l2g_crop_target(
        logits, torch.tensor([[1.0, 0.0]]), ones_fg, ones_bg, bg_threshold=0.001
    )
    # pixel 1 loses attribute 1: attribute 0 has .2 there, background .4 -> background
    expected = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 1.0]]).view(1, 3, 1, 3)
    torch.testing.assert_close(only_first, expected)
