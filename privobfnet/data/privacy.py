"""VISPR-style privacy scores: an attribute x user-preference matrix pooled over an image.

VISPR (Orekondy et al., ICCV 2017) asked users to rate each attribute's sensitivity from 1 (not
private) to 5 (very private). An image's score for one user is a pooling (default: max) of that
user's ratings over the attributes present; we average over users and rescale 1..5 to [0, 1].
"""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

Pooling = Literal["max", "mean", "sum"]


def privacy_score(
    label_indices: Sequence[int], preferences: np.ndarray, *, pooling: Pooling = "max"
) -> float:
    """Score in [0, 1] of an image with the given attribute indices.

    Args:
        label_indices: indices (columns of ``preferences``) of the attributes present.
        preferences: (n_users, n_attributes) ratings in 1..5.
        pooling: how one user's ratings over the present attributes combine (VISPR: max).
    """
    prefs = np.asarray(preferences, dtype=np.float64)
    if prefs.ndim != 2:
        raise ValueError(f"preferences must be (n_users, n_attributes), got shape {prefs.shape}")
    if len(label_indices) == 0:
        raise ValueError("an image needs at least one attribute to be scored")
    per_user = prefs[:, list(label_indices)]  # (U, K)
    if pooling == "max":
        pooled = per_user.max(axis=1)
    elif pooling == "mean":
        pooled = per_user.mean(axis=1)
    elif pooling == "sum":
        pooled = np.minimum(per_user.sum(axis=1), 5.0)  # a sum past "very private" saturates
    else:
        raise ValueError(f"unknown pooling {pooling!r}")
    return float(np.clip((pooled.mean() - 1.0) / 4.0, 0.0, 1.0))
