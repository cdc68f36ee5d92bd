"""Classification and regression metrics of the ensemble (paper Tables 2 and 3): numpy only.

- attribute accuracy: per attribute, the share of images whose thresholded prediction (p >= 0.5)
  equals the label; the mean over attributes is Table 3's "mean".
- mAP: macro mean over attributes of average precision, AP = sum_n (R_n - R_{n-1}) P_n over the
  distinct score thresholds (scikit-learn's ``average_precision_score``, VISPR's official metric);
  attributes without a positive image are left out (their AP is undefined).
- privacy score: L1 error (mean absolute error), Pearson and Spearman correlation (Table 2);
  Spearman ranks ties by their average rank.
"""

from __future__ import annotations

import math

import numpy as np


def attribute_accuracy(
    probabilities: np.ndarray, labels: np.ndarray, threshold: float = 0.5
) -> np.ndarray:
    """(N, C) probabilities and {0, 1} labels -> (C,) accuracy per attribute."""
    predicted = probabilities >= threshold
    return (predicted == labels.astype(bool)).mean(axis=0)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP of one attribute: (N,) scores, (N,) {0, 1} labels; NaN when there is no positive."""
    labels = labels.astype(bool)
    n_pos = int(labels.sum())
    if n_pos == 0:
        return math.nan
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    tp = np.cumsum(labels)
    # one operating point per distinct score: the last index of each run of equal scores
    last = np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1]
    precision = tp[last] / (last + 1)
    recall = tp[last] / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(
    probabilities: np.ndarray, labels: np.ndarray
) -> tuple[float, np.ndarray]:
    """(N, C), (N, C) -> (macro mAP over attributes with a positive, (C,) AP with NaN where undefined)."""
    ap = np.array(
        [average_precision(probabilities[:, c], labels[:, c]) for c in range(labels.shape[1])]
    )
    defined = ap[~np.isnan(ap)]
    return (float(defined.mean()) if defined.size else math.nan), ap


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    unique, inverse = np.unique(values, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks)
    counts = np.bincount(inverse)
    return (sums / counts)[inverse]


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    dx, dy = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float((dx * dx).sum() * (dy * dy).sum()))
    return float((dx * dy).sum() / denominator) if denominator > 0 else math.nan


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (Pearson of average ranks)."""
    return pearson(_ranks(np.asarray(x)), _ranks(np.asarray(y)))


def privacy_metrics(predicted: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """L1 error, Pearson and Spearman over the images that have a score (NaN targets skipped)."""
    known = ~np.isnan(target)
    if known.sum() < 2:
        return {
            "l1": math.nan,
            "pearson": math.nan,
            "spearman": math.nan,
            "n_scored": int(known.sum()),
        }
    p, t = predicted[known], target[known]
    return {
        "l1": float(np.abs(p - t).mean()),
        "pearson": pearson(p, t),
        "spearman": spearman(p, t),
        "n_scored": int(known.sum()),
    }


def finite(value):
    """NaN -> None, recursively (JSON has no NaN; undefined metrics are null)."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value


# Table 3's mean in the paper is over VISPR's attributes with > 300 training images (of 10,000): here
# the attributes with more than this share of the training split's images
FREQUENT_SHARE = 0.03


def frequent_attributes(
    accuracy: dict[str, float],
    train_labels: np.ndarray,
    eval_labels: np.ndarray,
    names: list[str],
) -> dict:
    """The mean accuracy over the attributes present in more than ``FREQUENT_SHARE`` of the
    training images (``train_labels``, ``eval_labels``: (N, C) 0/1 in ``names`` order), the same
    mean for "every attribute absent" (the trivial baseline), which attributes, and every
    attribute's training count. The means are None when no attribute is that frequent."""
    counts = np.asarray(train_labels).sum(axis=0)
    minimum = FREQUENT_SHARE * len(train_labels)
    kept = [n for n, c in zip(names, counts) if c > minimum and accuracy.get(n) is not None]
    absent = (np.asarray(eval_labels) == 0).mean(axis=0) if len(eval_labels) else None
    columns = [names.index(n) for n in kept]
    return {
        "frequent_mean_accuracy": (float(np.mean([accuracy[n] for n in kept])) if kept else None),
        "frequent_always_absent_mean_accuracy": (
            float(absent[columns].mean()) if kept and absent is not None else None
        ),
        "frequent_min_train_images": float(minimum),
        "frequent_attributes": kept,
        "train_images_per_attribute": {n: int(c) for n, c in zip(names, counts)},
    }


def ensemble_metrics(probs: np.ndarray, scores: np.ndarray, data) -> dict:
    """Table 3 (attribute accuracy, mAP) and Table 2 (privacy L1 / Pearson / Spearman) numbers of a
    split (``data``: a ``privobfnet.data.splits.SplitData``, its labels, scores and class names), NaN as None."""
    labels = data.labels.numpy()
    accuracy = attribute_accuracy(probs, labels)
    m_ap, ap = mean_average_precision(probs, labels)
    names = data.class_names
    return finite(
        {
            "attribute_mean_accuracy": float(accuracy.mean()),
            "attribute_map": m_ap,
            "privacy": privacy_metrics(scores, data.scores.numpy()),
            "attribute_accuracy": {n: float(a) for n, a in zip(names, accuracy)},
            "attribute_ap": {n: float(a) for n, a in zip(names, ap)},
            "eval_images": len(data),
        }
    )
