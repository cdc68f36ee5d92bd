"""bench/gpu.py: it measures both paper trainings on a CUDA device, and says so and exits 0 without one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO

BENCH = [sys.executable, str(REPO / "bench" / "gpu.py")]


def test_without_cuda_it_says_so_and_exits_cleanly():
    done = subprocess.run(
        BENCH,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES=""),
    )
    assert done.returncode == 0, done.stderr
    assert "no CUDA device here" in done.stdout and "nothing measured" in done.stdout


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_it_measures_both_paper_trainings_and_estimates_their_wall_time():
    done = subprocess.run([*BENCH, "--steps", "3"], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    ensemble, deeplab = report["trainings"]["ensemble"], report["trainings"]["deeplab"]
    assert (ensemble["input_size"], ensemble["n_crops"], ensemble["crop_size"]) == (448, 6, 320)
    assert deeplab["crop_size"] == 321
    for training in (ensemble, deeplab):
        assert (
            training["images_per_s"] > 0
            and training["achieved_tflops"] > 0
            and training["peak_memory_gib"] > 0
        )
        # achieved FLOP/s above the device's own matmul peak would mean the FLOP count is wrong
        assert training["achieved_over_matmul"] < 1.5
    assert set(report["estimated_training_wall_time"]) == {"paper_voc", "paper_coco", "paper_vispr"}
    assert all(e["hours_one_gpu"] > 0 for e in report["estimated_training_wall_time"].values())
