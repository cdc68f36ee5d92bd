"""bench/deeplab.py times each part of a DeepLabV2 training step, in each variant, on a profile's shapes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from ops.params import resolve_profile
from privobfnet.config import parse_config
from tests.conftest import REPO


def _bench():
    spec = importlib.util.spec_from_file_location("bench_deeplab", REPO / "bench" / "deeplab.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("variant", ["deterministic_off", "loss_at_logits"])
def test_each_variant_times_every_part_and_leaves_the_stages_determinism_on(variant):
    bench = _bench()
    cfg = parse_config(resolve_profile("ci"))
    result = bench.measure(cfg, variant, steps=1)
    assert result["variant"] == variant and result["seconds_per_step"] > 0
    assert set(result["share"]) == set(bench.PARTS)
    assert sum(result["share"].values()) == pytest.approx(1.0, abs=0.01)
    assert result["minutes_for_iterations"] == pytest.approx(
        result["seconds_per_step"] * cfg.deeplab.iterations / 60, abs=0.01
    )
    assert torch.are_deterministic_algorithms_enabled()


def test_the_loss_at_the_scores_size_ignores_what_the_labels_ignore():
    bench = _bench()
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1] = 5.0  # class 1 everywhere
    labels = torch.full((1, 4, 4), 255, dtype=torch.uint8)
    labels[0, :2, :2] = 1  # the one top-left score cell, right; the rest ignored
    assert bench.loss_at_logits(logits, labels).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits[:, :, :1, :1], torch.ones(1, 1, 1).long()).item()
    )


def test_the_command_prints_each_variant_as_a_ratio_to_the_first():
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "deeplab.py"),
            "--profile",
            "ci",
            "--steps",
            "1",
            "--variants",
            "configured,contiguous",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    report = json.loads(out)
    assert [v["variant"] for v in report["variants"]] == ["configured", "contiguous"]
    assert report["variants"][0]["step_over_first"] == 1.0
    assert len(report["matmul_gflops_before_after"]) == 2


def test_an_unknown_variant_is_refused_with_the_known_ones():
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "deeplab.py"), "--variants", "fast"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 2 and "unknown variants ['fast']" in done.stderr
    assert "deterministic_off" in done.stderr
