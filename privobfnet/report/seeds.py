"""Results over seeds: group finished experiments by configuration, mean +- std, significance (pure).

An experiment (a row of reports/ablation.json, ``tools.collect_ablation``) is one pipeline run; runs
that differ only in ``seed`` form a group. A number of a group is reported as its mean and its
sample standard deviation (n - 1 in the denominator) over the seeds. A difference between two
numbers is *not significant* when it is not larger than its spread, the standard deviation of a
difference of two independent runs: ``sqrt(std_a**2 + std_b**2)`` (a side with one seed, or a
paper number, contributes 0; equal numbers are never significant). With no spread on either side
nothing is said.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

NOT_SIGNIFICANT = "n.s."


@dataclass(frozen=True)
class Spread:
    """A number over seeds: mean, sample std (None for one seed), and how many seeds."""

    mean: float
    std: Optional[float]
    n: int


def spread(values: Iterable[Optional[float]]) -> Optional[Spread]:
    """Mean and sample std of the defined values (None skipped); None when no value is defined."""
    known = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not known:
        return None
    mean = sum(known) / len(known)
    std = (
        math.sqrt(sum((v - mean) ** 2 for v in known) / (len(known) - 1))
        if len(known) > 1
        else None
    )
    return Spread(mean, std, len(known))


def significant(a: Optional[Spread], b: Optional[Spread]) -> Optional[bool]:
    """Whether |a - b| > its spread; None when either is missing or neither side has a spread."""
    if a is None or b is None or (a.std is None and b.std is None):
        return None
    return (
        abs(a.mean - b.mean) > math.hypot(a.std or 0.0, b.std or 0.0) + 1e-12
    )  # float noise is no difference


def format_spread(value: Optional[Spread], scale: float = 1.0, digits: int = 2) -> str:
    """'0.46 ± 0.02 (n=3)' over seeds, '0.46' for one run, '-' for none."""
    if value is None:
        return "-"
    mean = f"{value.mean * scale:.{digits}f}"
    return mean if value.std is None else f"{mean} ± {value.std * scale:.{digits}f} (n={value.n})"


def mark(
    value: Optional[Spread], reference: Optional[Spread], scale: float = 1.0, digits: int = 2
) -> str:
    """``format_spread`` of ``value``, with ' n.s.' when its difference to ``reference`` is not significant."""
    text = format_spread(value, scale, digits)
    return f"{text} {NOT_SIGNIFICANT}" if significant(value, reference) is False else text


def one_per_seed(experiments: list[dict]) -> list[dict]:
    """The newest experiment of each seed (by its ``timestamp``; the last listed where none is recorded), in seed
    order (an experiment without a seed counts as one seed)."""
    by_seed: dict[Any, dict] = {}
    for experiment in experiments:
        kept = by_seed.get(experiment.get("seed"))
        if kept is None or (experiment.get("timestamp") or "") >= (kept.get("timestamp") or ""):
            by_seed[experiment.get("seed")] = experiment
    return [
        by_seed[s] for s in sorted(by_seed, key=lambda s: (s is None, s if s is not None else 0))
    ]


def over_seeds(
    experiments: list[dict], read: Callable[[dict], Optional[float]]
) -> Optional[Spread]:
    """One number (``read`` of each experiment) over the seeds of one configuration."""
    return spread(read(e) for e in one_per_seed(experiments))


def dig(mapping: Any, *keys: str) -> Optional[float]:
    """mapping[k1][k2]...; None where a level is missing."""
    for key in keys:
        if not isinstance(mapping, dict) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping if isinstance(mapping, (int, float)) and not isinstance(mapping, bool) else None
