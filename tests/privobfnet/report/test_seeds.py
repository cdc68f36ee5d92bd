"""Results over seeds: mean +- sample std, significance marking, and the report's use of them (hand-made numbers)."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from privobfnet.report.seeds import (
    Spread,
    format_spread,
    mark,
    one_per_seed,
    over_seeds,
    significant,
    spread,
    t_test,
)
from privobfnet.report.tables import render_tables


def test_spread_is_mean_and_sample_std_of_the_defined_values():
    value = spread([0.5, 0.7, None, 0.6])
    assert value.mean == pytest.approx(0.6) and value.n == 3
    assert value.std == pytest.approx(0.1)  # sqrt(((-.1)^2 + .1^2 + 0) / 2)
    assert spread([0.4]) == Spread(0.4, None, 1)
    assert spread([None, math.nan]) is None


def test_significance_is_a_t_test_paired_on_shared_seeds():
    ensemble = spread([0.40, 0.44, 0.42], seeds=[0, 1, 2])
    variant = spread([0.38, 0.43, 0.40], seeds=[0, 1, 2])  # lower in every seed
    paired = t_test(variant, ensemble)
    expected = stats.ttest_rel([0.38, 0.43, 0.40], [0.40, 0.44, 0.42]).pvalue
    assert (paired.kind, paired.n) == ("paired", "3") and paired.p == pytest.approx(expected)
    assert paired.p < 0.05 and significant(variant, ensemble) is True
    # the same numbers from other seeds cannot be paired: Welch's test, which sees no difference
    unpaired = t_test(spread([0.38, 0.43, 0.40], seeds=[3, 4, 5]), ensemble)
    welch = stats.ttest_ind([0.38, 0.43, 0.40], [0.40, 0.44, 0.42], equal_var=False).pvalue
    assert (unpaired.kind, unpaired.n) == ("Welch", "3+3") and unpaired.p == pytest.approx(welch)
    assert unpaired.p > 0.05
    # against one number (one run, a paper's): a one-sample test of the side with seeds
    one = t_test(ensemble, spread([0.30]))
    assert one.kind == "one-sample"
    assert one.p == pytest.approx(stats.ttest_1samp([0.40, 0.44, 0.42], 0.30).pvalue)
    # known only by mean, std and n: tested from those
    a, b = Spread(0.60, 0.03, 3), Spread(0.56, 0.04, 3)
    assert t_test(a, b).p == pytest.approx(
        stats.ttest_ind_from_stats(0.60, 0.03, 3, 0.56, 0.04, 3, equal_var=False).pvalue
    )
    assert significant(Spread(0.5, 0.0, 3), Spread(0.5, 0.0, 3)) is False  # equal, no spread
    assert significant(Spread(0.6, None, 1), Spread(0.5, None, 1)) is None  # nothing to judge by
    assert significant(a, None) is None


def test_formatting_and_marks():
    assert format_spread(Spread(0.1234, 0.0123, 3), 100, 1) == "12.3 ± 1.2 (n=3)"
    assert format_spread(Spread(0.1234, None, 1)) == "0.12" and format_spread(None) == "-"
    assert mark(Spread(0.60, 0.03, 3), Spread(0.56, 0.04, 3)) == (
        "0.60 ± 0.03 (n=3) n.s. (p=0.24, Welch n=3+3)"
    )
    assert mark(Spread(0.70, 0.03, 3), Spread(0.56, 0.04, 3)) == (
        "0.70 ± 0.03 (n=3) (p=0.01, Welch n=3+3)"
    )
    ensemble = spread([0.40, 0.44, 0.42], seeds=[0, 1, 2])
    assert mark(spread([0.38, 0.43, 0.40], seeds=[0, 1, 2]), ensemble, 100, 1) == (
        "40.3 ± 2.5 (n=3) (p=0.038, paired n=3)"
    )
    assert mark(Spread(0.6, None, 1), Spread(0.5, None, 1)) == "0.60"  # nothing to test


def test_one_run_per_seed_the_last_one_wins():
    runs = [{"seed": 1, "v": 0.1}, {"seed": 0, "v": 0.2}, {"seed": 1, "v": 0.3}]
    assert [r["v"] for r in one_per_seed(runs)] == [0.2, 0.3]
    assert over_seeds(runs, lambda r: r["v"]).mean == pytest.approx(0.25)


def _experiment(
    seed, *, cropped=True, labels="pseudo", pearson=0.8, cam=0.4, free=0.2, miou=0.3, mean_acc=0.9
):
    return {
        "name": f"e{seed}{'c' if cropped else 's'}{labels[0]}",
        "rev": "r",
        "profile": "ci",
        "seed": seed,
        "deeplab_labels": labels,
        "crop_target": "paper",
        "switches": {
            "use_mask_weighting": True,
            "use_cropped": cropped,
            "use_privacy": True,
            "use_attribute": True,
        },
        "privacy": {"test": {"l1": 0.1, "pearson": pearson, "spearman": pearson - 0.1}},
        "attributes": {
            "test": {"mean_accuracy": mean_acc, "map": 0.5, "accuracy": {"a9": mean_acc}}
        },
        "segmentation": {"val": {"miou": miou}},
        "cam_miou": {"train": cam},
        "masks_only_cam_miou": {"train": free},
    }


def test_report_prints_mean_std_over_seeds_and_marks_not_significant(ci_config):
    experiments = []
    for seed, (ens, one, top) in enumerate(
        [(0.40, 0.41, 0.70), (0.44, 0.39, 0.72), (0.42, 0.43, 0.74)]
    ):
        experiments += [
            _experiment(seed, cam=ens, miou=ens - 0.1, free=0.2 + seed * 0.01),
            _experiment(seed, cropped=False, cam=one, miou=one - 0.1, pearson=0.5 + seed * 0.01),
            _experiment(seed, labels="ground_truth", miou=top),
        ]
    evaluate = {
        "privacy": {"test": {"l1": 0.1, "pearson": 0.8, "spearman": 0.7}},
        "attributes": {"test": {"mean_accuracy": 0.9, "map": 0.5, "accuracy": {"a9": 0.9}}},
        "segmentation": {"val": {"miou": 0.3}},
    }
    pseudo = {
        "classes": ["background", "a9"],
        "splits": {"train": {"cam_miou": 0.42, "masks_only_cam_miou": 0.2}},
    }
    tables, _ = render_tables(ci_config, evaluate, pseudo, experiments)
    # ensemble CAM: 40/44/42 -> 42.0 ± 2.0; masks-only 20/21/22 -> 21.0 ± 1.0, far below: no mark
    assert (
        "| ours: CAM pseudo-labels vs ground truth (train) | I+S | - | - | - | 42.0 ± 2.0 (n=3) |"
        in tables
    )
    # masks-only 20/21/22 against 40/44/42, seed by seed: paired p = ttest_rel's
    p = stats.ttest_rel([0.20, 0.21, 0.22], [0.40, 0.44, 0.42]).pvalue
    assert (
        "untrained Model-Image's pseudo-labels (train) | I+S | - | - | - | "
        f"21.0 ± 1.0 (n=3) (p={p:.2g}, paired n=3) |" in tables
    )
    # single model CAM 41/39/43 -> 41.0 ± 2.0: differences +1, -5, +1 to the ensemble: p 0.67
    assert (
        "Model-Cropped off (train) | I+S | - | - | - | 41.0 ± 2.0 (n=3) n.s. (p=0.67, paired n=3) |"
        in tables
    )
    assert (
        "| ours: fully supervised ceiling (val) | full | - | - | - | 72.0 ± 2.0 (n=3) |" in tables
    )
    # Table 2: the ensemble's Pearson is the same 0.80 in every seed (std 0); the single model's 0.50-0.52 differs
    assert (
        "| **PrivObfNet, ours** (synthpriv test) | 0.10 ± 0.00 (n=3) | 0.80 ± 0.00 (n=3) |"
        in tables
    )
    assert (
        "| ours: single model, Model-Cropped off (test) | 0.10 ± 0.00 (n=3) n.s. (p=1, paired n=3) "
        "| 0.51 ± 0.01 (n=3) (p<0.001, paired n=3) |" in tables
    )
    # Table 4's last row is the full model, the + Priv + Attr row is the single model compared with it
    assert (
        "| + Priv + Attr | 0.85 | 0.83 | 0.51 ± 0.01 (n=3) (p<0.001, paired n=3) "
        "| 0.41 ± 0.01 (n=3) (p<0.001, paired n=3) | 41.0 ± 2.0 (n=3) n.s. (p=0.67, paired n=3) |"
        in tables
    )
    assert "*Segmentation classes* (2): `background`, `a9`" in tables
    assert "*Attribute classes* (1): `a9`" in tables


def test_one_run_per_seed_the_newest_by_timestamp_wins_whatever_the_listing_order():
    runs = [
        {"seed": 0, "v": 0.2, "timestamp": "2026-12-02T09:00:00"},
        {"seed": 0, "v": 0.1, "timestamp": "2026-11-30T12:00:00"},
    ]  # an older run listed later
    assert [r["v"] for r in one_per_seed(runs)] == [0.2]


def test_table5_shows_the_coarse_priors_beside_their_own_masks_only_baseline(ci_config):
    assert ci_config.train.priors == "refined"
    experiments = []
    for seed in range(3):
        experiments += [
            _experiment(seed, cam=0.40 + 0.01 * seed, miou=0.30 + 0.01 * seed),
            {
                **_experiment(seed, cam=0.20 + 0.01 * seed, free=0.10, miou=0.20 + 0.02 * seed),
                "name": f"coarse{seed}",
                "priors": "coarse",
            },
        ]
    evaluate = {"segmentation": {"val": {"miou": 0.3}}}
    pseudo = {"classes": ["background", "a9"], "splits": {"train": {"cam_miou": 0.41}}}
    tables, _ = render_tables(ci_config, evaluate, pseudo, experiments)
    row = "| ours, coarse priors (paper Table 1): CAM pseudo-labels (train) | I+S | - | - | - | "
    assert row + "21.0 ± 1.0 (n=3) |" in tables  # only the coarse runs, not the refined ones
    assert "masks-only baseline (train) | I+S | - | - | - | 10.0 ± 0.0 (n=3) |" in tables
    p = stats.ttest_rel([0.20, 0.22, 0.24], [0.30, 0.31, 0.32]).pvalue
    assert (
        f"coarse priors (paper Table 1) (val) | I+S | - | - | - | 22.0 ± 2.0 (n=3) (p={p:.2g}"
        in tables
    )
    # the refined profile's own rows ignore the coarse runs
    assert (
        "| ours: CAM pseudo-labels vs ground truth (train) | I+S | - | - | - | 41.0 ± 1.0 (n=3) |"
        in tables
    )
