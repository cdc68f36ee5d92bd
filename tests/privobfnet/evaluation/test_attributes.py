"""Tests of attributes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from privobfnet.evaluation.attributes import (
    attribute_accuracy,
    average_precision,
    mean_average_precision,
    pearson,
    privacy_metrics,
    spearman,
)


def test_attribute_accuracy_per_attribute():
    probs = np.array([[0.6, 0.4], [0.2, 0.7]])
    labels = np.array([[1, 1], [0, 1]])
    assert attribute_accuracy(probs, labels).tolist() == [1.0, 0.5]


def test_average_precision_by_hand():
    # ranks: + (P 1, R .5), - , + (P 2/3, R 1), -  ->  .5 * 1 + .5 * 2/3
    assert average_precision(
        np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])
    ) == pytest.approx(5 / 6)
    # tied scores form one operating point: (P 1/3, R 1) after the top negative
    assert average_precision(np.array([0.9, 0.5, 0.5]), np.array([0, 1, 0])) == pytest.approx(1 / 3)
    assert math.isnan(average_precision(np.array([0.1, 0.2]), np.array([0, 0])))


def test_map_skips_attributes_without_positives_and_matches_scikit_learn():
    probs = np.array([[0.9, 0.1, 0.3], [0.8, 0.4, 0.2], [0.7, 0.35, 0.6], [0.1, 0.8, 0.6]])
    labels = np.array([[1, 0, 0], [0, 0, 0], [1, 1, 0], [0, 1, 0]])
    m_ap, ap = mean_average_precision(probs, labels)
    assert math.isnan(ap[2]) and m_ap == pytest.approx((ap[0] + ap[1]) / 2)
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2)  # +, -, +, -  as above
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    scores, truth = rng.random(50).round(1), rng.random(50) < 0.3  # rounding makes ties
    assert average_precision(scores, truth) == pytest.approx(
        metrics.average_precision_score(truth, scores)
    )


def test_pearson_and_spearman_by_hand():
    # dx = [-1, 0, 1], dy = [-7/3, -1/3, 8/3]: r = 5 / sqrt(2 * 114/9)
    assert pearson(np.array([1, 2, 3]), np.array([2, 4, 7])) == pytest.approx(
        5 / math.sqrt(2 * 114 / 9)
    )
    assert spearman(np.array([1, 2, 3]), np.array([2, 4, 7])) == pytest.approx(1.0)
    # ties share their average rank: x ranks [1, 2.5, 2.5, 4] -> r = 4.5 / sqrt(4.5 * 5)
    assert spearman(np.array([1, 2, 2, 3]), np.array([1, 2, 3, 4])) == pytest.approx(
        4.5 / math.sqrt(22.5)
    )
    assert math.isnan(pearson(np.array([1, 1, 1]), np.array([1, 2, 3])))


def test_privacy_metrics_skip_unscored_images():
    out = privacy_metrics(np.array([0.5, 0.9, 0.1, 0.3]), np.array([0.7, np.nan, 0.0, 0.5]))
    assert out["l1"] == pytest.approx((0.2 + 0.1 + 0.2) / 3) and out["n_scored"] == 3
    assert math.isnan(privacy_metrics(np.array([0.5]), np.array([np.nan]))["pearson"])
