"""`python -m tools.compare_runs`: selectors and the Markdown comparison of two run selections."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tools.compare_runs import SelectorError, compare, parse_selector


def fake_run(run_id: str, params: dict, metrics: dict, profile: str = "ci"):
    tags = {
        "privobfnet.pipeline_id": f"pipe-{run_id}",
        "privobfnet.profile": profile,
        "mlflow.source.git.commit": "0123456789abcdef",
    }
    return SimpleNamespace(
        info=SimpleNamespace(run_id=run_id),
        data=SimpleNamespace(params=params, metrics=metrics, tags=tags),
    )


@pytest.mark.parametrize("text", ["default", "profile:", "team:x", ":x"])
def test_malformed_selectors_are_refused(text):
    with pytest.raises(SelectorError, match="selector"):
        parse_selector(text)


def test_selector_kinds():
    assert parse_selector("profile:default") == ("profile", "default")
    assert parse_selector("exp:my-exp:2") == ("exp", "my-exp:2")
    assert parse_selector("pipeline:prefect-1") == ("pipeline", "prefect-1")


def test_comparison_lists_changed_params_and_metric_differences():
    a = {
        "train_ensemble": fake_run(
            "a1", {"train.lr": "0.01", "seed": "1"}, {"map": 0.30, "l1": 0.2}
        ),
        "masks": fake_run("a2", {"masks.text": "rapidocr"}, {"coverage": 0.1}),
    }
    b = {
        "train_ensemble": fake_run(
            "b1", {"train.lr": "0.02", "seed": "1"}, {"map": 0.45}, profile="default"
        )
    }
    text = compare(a, b, ("profile:ci", "profile:default"), order=["masks", "train_ensemble"])
    assert text.index("## masks") < text.index("## train_ensemble")
    assert "B: no run" in text  # masks has no run in B
    assert "| train.lr | 0.01 | 0.02 |" in text and "| seed |" not in text
    assert "| map | 0.3000 | 0.4500 | 0.1500 |" in text
    assert "| l1 | 0.2000 | - | - |" in text
    only = compare(a, b, ("A", "B"), stages=["train_ensemble"], grep="^map$")
    assert "## masks" not in only and "| l1 |" not in only and "| map |" in only
