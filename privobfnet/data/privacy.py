"""VISPR-style privacy scores: an attribute x user-preference matrix pooled over an image.

VISPR (Orekondy et al., ICCV 2017) asked users to rate each attribute's sensitivity from 1 (not
private) to 5 (very private); VPA's ``user_studies/user_profiles.tsv`` holds 30 such profiles.
The PrivObfNet paper does not say which profile its score uses nor where rescaling happens, so
both are parameters (``data.privacy_profile``, ``data.privacy_rescale``). The score of an image:

1. per profile, pool its ratings over the attributes present (default: max);
2. ``profile="mean"``: average the pooled ratings over all profiles; an int ``k``: profile k only;
3. rescale the 1..5 rating: ``"unit"`` (x - 1) / 4 to [0, 1], or ``"vpa"`` (x - 2.5) / 2.5 to
   [-0.6, 1].

Rescaling comes after pooling. Both rescales are affine with a positive slope, so for max and
mean pooling (and the mean over profiles) rescaling first would give the same score; only
``sum`` pooling, which saturates at 5 before rescaling, depends on the order.
"""

from __future__ import annotations

from typing import Literal, Sequence, Union

import numpy as np

Pooling = Literal["max", "mean", "sum"]
Rescale = Literal["unit", "vpa"]
Profile = Union[Literal["mean"], int]

# rating x -> score, and the score range a rescale maps 1..5 onto
RESCALES: dict[str, tuple[str, float, float, tuple[float, float]]] = {
    # name: (formula, offset, divisor, (low, high))
    "unit": ("(x - 1) / 4", 1.0, 4.0, (0.0, 1.0)),
    "vpa": ("(x - 2.5) / 2.5", 2.5, 2.5, (-0.6, 1.0)),
}


def score_range(rescale: Rescale) -> tuple[float, float]:
    """(low, high) of the scores ``rescale`` produces from ratings in 1..5."""
    if rescale not in RESCALES:
        raise ValueError(f"unknown privacy rescale {rescale!r} (known: {', '.join(RESCALES)})")
    return RESCALES[rescale][3]


def rescale_rating(rating: float | np.ndarray, rescale: Rescale) -> float | np.ndarray:
    """A 1..5 rating (or array of them) on the score scale of ``rescale``, clipped to its range."""
    low, high = score_range(rescale)
    _, offset, divisor, _ = RESCALES[rescale]
    return np.clip((np.asarray(rating, dtype=np.float64) - offset) / divisor, low, high)


def privacy_score(
    label_indices: Sequence[int],
    preferences: np.ndarray,
    *,
    pooling: Pooling = "max",
    profile: Profile = "mean",
    rescale: Rescale = "unit",
) -> float:
    """Score of an image with the given attribute indices (see the module docstring).

    Args:
        label_indices: indices (columns of ``preferences``) of the attributes present.
        preferences: (n_profiles, n_attributes) ratings in 1..5.
        pooling: how one profile's ratings over the present attributes combine (VISPR: max).
        profile: ``"mean"`` over all profiles, or the index of one profile (row of ``preferences``).
        rescale: ``"unit"`` maps 1..5 to [0, 1]; ``"vpa"`` maps it to [-0.6, 1].
    """
    prefs = np.asarray(preferences, dtype=np.float64)
    if prefs.ndim != 2:
        raise ValueError(f"preferences must be (n_profiles, n_attributes), got shape {prefs.shape}")
    if len(label_indices) == 0:
        raise ValueError("an image needs at least one attribute to be scored")
    if profile != "mean":
        if isinstance(profile, bool) or not isinstance(profile, (int, np.integer)):
            raise ValueError(f"profile must be 'mean' or a profile index, got {profile!r}")
        if not 0 <= profile < prefs.shape[0]:
            raise ValueError(f"profile index {profile} out of range 0..{prefs.shape[0] - 1}")
        prefs = prefs[[profile]]
    per_profile = prefs[:, list(label_indices)]  # (U, K)
    if pooling == "max":
        pooled = per_profile.max(axis=1)
    elif pooling == "mean":
        pooled = per_profile.mean(axis=1)
    elif pooling == "sum":
        pooled = np.minimum(per_profile.sum(axis=1), 5.0)  # a sum past "very private" saturates
    else:
        raise ValueError(f"unknown pooling {pooling!r}")
    return float(rescale_rating(pooled.mean(), rescale))


def privacy_protocol(
    dataset: str, *, profile: Profile, rescale: Rescale, pooling: Pooling = "max"
) -> str:
    """One sentence stating how the privacy scores of ``dataset`` were made (for protocol lines)."""
    if dataset not in ("vispr", "synthpriv"):
        return f"Privacy score: none ({dataset} has no user preferences)."
    which = "mean over all profiles" if profile == "mean" else f"profile {profile} only"
    formula, _, _, (low, high) = RESCALES[rescale]
    return (
        f"Privacy score: {pooling} over the image's attributes of each profile's 1-5 rating "
        f"(user_studies/user_profiles.tsv, a0_safe = 1), {which}, then rescaled {formula} to [{low:g}, {high:g}]."
    )
