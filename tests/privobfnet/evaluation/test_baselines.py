"""Tests of baselines."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from privobfnet.cams import pseudo_label, segmentation_maps
from privobfnet.evaluation.baselines import untrained_model_image
from privobfnet.evaluation.segmentation import (
    segmentation_scores,
)
from tests.fixtures.models import (
    SEG,
    tiny_meta,
)


def test_background_everywhere_moves_every_true_pixel_to_the_background_column():
    from privobfnet.evaluation.baselines import background_everywhere

    cm = np.array([[50, 5, 0], [10, 20, 0], [0, 0, 0]])  # class 2 absent from truth and predictions
    out = background_everywhere(cm)
    np.testing.assert_array_equal(out, [[55, 0, 0], [30, 0, 0], [0, 0, 0]])
    scores = segmentation_scores(out, ["background", "a", "b"])
    # background IoU 55 / (55 + 30); class a: IoU 0; class b absent: not averaged
    assert scores["miou"] == pytest.approx((55 / 85 + 0.0) / 2)


def test_trivial_baselines_of_a_split():
    from privobfnet.evaluation.baselines import trivial_baselines

    labels = np.array([[1, 0], [0, 0], [1, 1], [0, 0]])
    scores = np.array([0.2, 0.4, np.nan, 1.0])
    out = trivial_baselines(
        labels, scores, train_scores=np.array([0.5, np.nan, 0.3])
    )  # train mean 0.4
    assert out["always_absent_mean_accuracy"] == pytest.approx(5 / 8)
    assert out["constant_map"] == pytest.approx((2 / 4 + 1 / 4) / 2)  # each class's positive rate
    assert out["mean_score_l1"] == pytest.approx((0.2 + 0.0 + 0.6) / 3)
    assert (
        trivial_baselines(labels, scores, train_scores=np.array([np.nan]))["mean_score_l1"] is None
    )


def test_masks_only_baseline_is_deterministic_and_stays_inside_the_priors(ci_config):
    device = torch.device("cpu")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    human = np.zeros((64, 64), np.uint8)
    human[:, :24] = 255  # the person is on the left
    text = np.zeros((64, 64), np.uint8)
    text[48:, 32:] = 255  # a text line bottom right
    before = torch.random.get_rng_state()
    first, second = (untrained_model_image(tiny_meta(), seed=3, device=device) for _ in range(2))
    assert torch.equal(torch.random.get_rng_state(), before)  # the global RNG is untouched
    other = untrained_model_image(tiny_meta(), seed=4, device=device)
    args = dict(seg=SEG, scales=[1.0], labels=[1, 1, 1], device=device)
    cams = segmentation_maps(first, image, human, text, **args)
    assert torch.equal(cams, segmentation_maps(second, image, human, text, **args))
    assert not torch.equal(cams, segmentation_maps(other, image, human, text, **args))
    label = pseudo_label(
        image, cams, dataclasses.replace(ci_config.pseudo_labels, bg_threshold=0.05, crf=False)
    )
    # mask weighting: the face class only inside the human mask, the name only inside the text mask (up to
    # one cell of the tiny backbone's stride 8 that the bicubic upsampling spreads)
    assert (
        not (label[:, 32:] == 1).any()
        and not (label[:40] == 2).any()
        and not (label[:, :24] == 2).any()
    )
    assert (label == 1).any() and (label == 2).any()
