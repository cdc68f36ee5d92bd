"""Trivial baselines, printed beside every model metric: what a model that looks at no image scores."""

from __future__ import annotations

import math

import numpy as np
import torch

from privobfnet.evaluation.attributes import mean_average_precision
from privobfnet.models.checkpoints import model_from_meta
from privobfnet.models.privobfnet import PrivObfNet


def background_everywhere(cm: np.ndarray | torch.Tensor) -> np.ndarray:
    """The confusion matrix the trivial baseline would get on the same pixels: each predicted background."""
    cm = np.asarray(cm.cpu() if isinstance(cm, torch.Tensor) else cm)
    out = np.zeros_like(cm)
    out[:, 0] = cm.sum(axis=1)  # cm[t, p]: every true pixel of class t lands in column 0
    return out


def trivial_baselines(
    labels: np.ndarray, scores: np.ndarray, train_scores: np.ndarray
) -> dict[str, float | None]:
    """What a model that looks at no image scores on a split, to print beside every model metric.

    labels (N, C) multi-hot, scores (N,) the split's privacy scores, train_scores the training split's
    (NaN where unknown). ``always_absent_mean_accuracy``: every attribute predicted absent;
    ``constant_map``: mAP of one constant probability (each class's AP is then its positive rate);
    ``mean_score_l1``: the training split's mean privacy score predicted for every image (its Pearson
    is undefined).
    """
    labels = np.asarray(labels, dtype=np.float64)
    known_train = np.asarray(train_scores, dtype=np.float64)
    known_train = known_train[~np.isnan(known_train)]
    scores = np.asarray(scores, dtype=np.float64)
    known = scores[~np.isnan(scores)]
    mean_score = float(known_train.mean()) if known_train.size else math.nan
    l1 = float(np.abs(known - mean_score).mean()) if known.size and known_train.size else math.nan
    return {
        "always_absent_mean_accuracy": float((labels == 0).mean()) if labels.size else None,
        "constant_map": mean_average_precision(np.zeros_like(labels), labels)[0]
        if labels.size
        else None,
        "mean_score_l1": None if math.isnan(l1) else l1,
    }


def untrained_model_image(meta: dict, *, seed: int, device: torch.device) -> PrivObfNet:
    """The masks-only baseline's network: Model-Image as the ensemble checkpoint's ``meta`` describes it
    (backbone, mask types, the same mask weighting), randomly initialised from ``seed``, never trained
    and without ImageNet weights, in eval mode. Deterministic; the global RNG is left untouched.

    Its pseudo-labels, made by the same procedure (``privobfnet.cams``) from the same true image
    labels, are what the prior masks give for free: the method's CAMs must beat them."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_from_meta(meta)
    return model.to(device).eval()
