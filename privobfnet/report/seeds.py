"""Results over seeds: group finished experiments by configuration, mean +- std, significance (pure).

An experiment (a row of reports/ablation.json, ``tools.collect_ablation``) is one pipeline run; runs
that differ only in ``seed`` form a group. A number of a group is reported as its mean and its
sample standard deviation (n - 1 in the denominator) over the seeds. Two numbers are compared by a
two-sided t-test: paired on the seeds both sides share (``scipy.stats.ttest_rel``; every
configuration runs seeds 0, 1, 2, so their runs pair up), Welch's where they share fewer than two,
a one-sample test against a single number (one run, or a paper number). The p is printed with n
(the pairs, or the seeds of each side); a difference with p >= 0.05 is marked "n.s.". With fewer
than two values on both sides nothing is said.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

from scipy import stats

NOT_SIGNIFICANT = "n.s."
ALPHA = 0.05  # p >= ALPHA: not significant


@dataclass(frozen=True)
class Spread:
    """A number over seeds: mean, sample std (None for one seed), how many seeds, and the values by
    seed (``seeds[i]`` gave ``values[i]``; a seed is None where unknown)."""

    mean: float
    std: Optional[float]
    n: int
    values: tuple[float, ...] = field(default=(), compare=False)
    seeds: tuple[Any, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class TTest:
    """A t-test of two numbers: the two-sided p, its n as printed, and which test."""

    p: float
    n: str
    kind: str  # "paired", "Welch", "one-sample"


def spread(
    values: Iterable[Optional[float]], seeds: Iterable[Any] | None = None
) -> Optional[Spread]:
    """Mean and sample std of the defined values (None and NaN skipped, with their seeds); None when
    no value is defined."""
    values = list(values)
    seeds = list(seeds) if seeds is not None else [None] * len(values)
    known = [(float(v), s) for v, s in zip(values, seeds) if v is not None and not math.isnan(v)]
    if not known:
        return None
    numbers = [v for v, _ in known]
    mean = sum(numbers) / len(numbers)
    std = (
        math.sqrt(sum((v - mean) ** 2 for v in numbers) / (len(numbers) - 1))
        if len(numbers) > 1
        else None
    )
    return Spread(mean, std, len(numbers), tuple(numbers), tuple(s for _, s in known))


def _p(result, differences: list[float]) -> float:
    """A scipy t-test's two-sided p; with no variance (NaN), 1 for equal numbers and 0 otherwise."""
    p = float(result.pvalue)
    if math.isnan(p):
        return 1.0 if all(abs(d) < 1e-12 for d in differences) else 0.0
    return p


def t_test(a: Optional[Spread], b: Optional[Spread]) -> Optional[TTest]:
    """Paired t-test on the seeds ``a`` and ``b`` share (two or more), else Welch's, else a one-sample
    test of the side with several values against the other's single number; None when neither
    side has two values. A spread known only by its mean, std and n is tested from those."""
    if a is None or b is None or (a.n < 2 and b.n < 2):
        return None
    if a.n < 2 or b.n < 2:
        many, one = (a, b) if a.n >= 2 else (b, a)
        if many.values:
            result = stats.ttest_1samp(list(many.values), popmean=one.mean)
            differences = [v - one.mean for v in many.values]
            return TTest(_p(result, differences), str(many.n), "one-sample")
        if not many.std:
            return TTest(1.0 if many.mean == one.mean else 0.0, str(many.n), "one-sample")
        t = (many.mean - one.mean) / (many.std / math.sqrt(many.n))
        return TTest(float(2 * stats.t.sf(abs(t), many.n - 1)), str(many.n), "one-sample")
    by_seed_a = {s: v for s, v in zip(a.seeds, a.values) if s is not None}
    by_seed_b = {s: v for s, v in zip(b.seeds, b.values) if s is not None}
    shared = sorted(set(by_seed_a) & set(by_seed_b), key=str)
    if len(shared) >= 2:
        xs, ys = [by_seed_a[s] for s in shared], [by_seed_b[s] for s in shared]
        result = stats.ttest_rel(xs, ys)
        return TTest(_p(result, [x - y for x, y in zip(xs, ys)]), str(len(shared)), "paired")
    result = stats.ttest_ind_from_stats(
        a.mean, a.std or 0.0, a.n, b.mean, b.std or 0.0, b.n, equal_var=False
    )
    return TTest(_p(result, [a.mean - b.mean]), f"{a.n}+{b.n}", "Welch")


def significant(a: Optional[Spread], b: Optional[Spread]) -> Optional[bool]:
    """Whether ``t_test(a, b)`` gives p < 0.05; None when there is nothing to test."""
    test = t_test(a, b)
    return None if test is None else test.p < ALPHA


def format_spread(value: Optional[Spread], scale: float = 1.0, digits: int = 2) -> str:
    """'0.46 ± 0.02 (n=3)' over seeds, '0.46' for one run, '-' for none."""
    if value is None:
        return "-"
    mean = f"{value.mean * scale:.{digits}f}"
    return mean if value.std is None else f"{mean} ± {value.std * scale:.{digits}f} (n={value.n})"


def format_p(p: float) -> str:
    """A p-value as ``p=`` and two significant digits ('p=0.23', 'p=0.004'), 'p<0.001' below that."""
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def mark(
    value: Optional[Spread], reference: Optional[Spread], scale: float = 1.0, digits: int = 2
) -> str:
    """``format_spread`` of ``value`` and its t-test against ``reference``: ' (p=0.004, paired n=3)',
    or ' n.s. (p=0.23, paired n=3)' when p >= 0.05; nothing when there is nothing to test."""
    text = format_spread(value, scale, digits)
    test = t_test(value, reference)
    if test is None:
        return text
    verdict = f" {NOT_SIGNIFICANT}" if test.p >= ALPHA else ""
    return f"{text}{verdict} ({format_p(test.p)}, {test.kind} n={test.n})"


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
    runs = one_per_seed(experiments)
    return spread([read(e) for e in runs], [e.get("seed") for e in runs])


def dig(mapping: Any, *keys: str) -> Optional[float]:
    """mapping[k1][k2]...; None where a level is missing."""
    for key in keys:
        if not isinstance(mapping, dict) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping if isinstance(mapping, (int, float)) and not isinstance(mapping, bool) else None
