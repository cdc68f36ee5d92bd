"""Stage `train_ensemble`: evaluation metrics, schedule, and (slow) a full ci run and a kill/resume run."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch
import yaml

from ops.params import resolve_profile
from ops.project_copy import copy_sources
from ops.tracking import STAGE_RUNS
from privobfnet.config import parse_config
from tests.conftest import REPO
from tests.fixtures.masks import write_fixture_masks

# ---- metrics against hand-computed numbers ----------------------------------------------------


# ---- the stage on the ci profile ---------------------------------------------------------------
@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A project copy with the ci profile, its SynthPriv manifests and stand-in masks (built once)."""
    root = tmp_path_factory.mktemp("ensemble") / "project"
    copy_sources(REPO, root)
    params = resolve_profile("ci", root / "profiles")
    params["train"]["checkpoint_every"] = 2  # leaves time to kill a run between two checkpoints
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, PYTHONPATH=str(root))
    for stage in ("download", "validate"):
        subprocess.run(
            [sys.executable, "-m", f"stages.{stage}"],
            cwd=root,
            env=env,
            check=True,
            capture_output=True,
        )
    write_fixture_masks(parse_config(params), root)
    shutil.rmtree(root / "reports", ignore_errors=True)
    (root / "mlflow.db").unlink(missing_ok=True)
    return root


def _copy(prepared: Path, dest: Path) -> Path:
    root = dest / "project"
    shutil.copytree(prepared, root, symlinks=True)
    return root


def _stage(root: Path, **popen) -> subprocess.Popen:
    # the copy's own store, named explicitly: nothing left in this process's environment may redirect it
    env = dict(
        os.environ, PYTHONPATH=str(root), MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}"
    )
    return subprocess.Popen(
        [sys.executable, "-m", "stages.train_ensemble"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


@pytest.fixture(scope="module")
def finished(prepared, tmp_path_factory) -> Path:
    """A project copy after one uninterrupted run of the stage."""
    root = _copy(prepared, tmp_path_factory.mktemp("uninterrupted"))
    proc = _stage(root)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    assert "resuming" not in output
    return root


@pytest.mark.slow
def test_stage_trains_evaluates_and_records(finished):
    root = finished
    metrics = json.loads((root / "reports/metrics/train_ensemble.json").read_text())
    assert 0 <= metrics["attribute_map"] <= 1 and 0 <= metrics["attribute_mean_accuracy"] <= 1
    assert (
        metrics["eval_split"] == "test"
        and metrics["eval_images"] == 8
        and metrics["iterations"] == 12
    )
    assert metrics["privacy"]["n_scored"] == 8 and math.isfinite(metrics["privacy"]["l1"])
    assert set(metrics["attribute_ap"]) == set(metrics["attribute_accuracy"])
    rows = (root / "reports/plots/train_ensemble_loss.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch,lr,total") and len(rows) == 1 + 12
    assert not (root / "checkpoints/ensemble/last.pt").exists()  # a finished run does not resume

    from privobfnet.models.checkpoints import load_ensemble, prior_layout

    model_image, _, meta = load_ensemble(root / "checkpoints/ensemble/final.pt")
    assert meta["config"]["train"]["input_size"] == 96 and meta["class_names"][0] == "a0_safe"
    layout = prior_layout(meta)  # the profile's refined priors: [person, face], [lines, typed...]
    assert layout.refined and len(layout.text_channels) == 1 + 6
    cams = model_image.cams(
        torch.zeros(1, 3, 96, 96),
        torch.zeros(1, len(layout.human_channels), 96, 96),
        torch.ones(1, len(layout.text_channels), 96, 96),
    )
    assert cams.shape == (1, 16, 12, 12)

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    run = mlflow.search_runs(
        experiment_names=["privobfnet"], filter_string=STAGE_RUNS, output_format="list"
    )[0]
    assert run.info.run_name == "train_ensemble" and run.info.status == "FINISHED"
    assert run.data.metrics["attribute_map"] == pytest.approx(metrics["attribute_map"])
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss.total")
    assert sorted(m.step for m in history) == list(range(1, 13))
    artifacts = {
        a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "cam_overlays")
    }
    assert "cam_overlays/epoch_002.png" in artifacts


def _weights(path: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return {
        f"{net}.{k}": v
        for net in ("model_image", "model_cropped")
        for k, v in checkpoint[net].items()
    }


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(prepared, finished, tmp_path):
    root = _copy(prepared, tmp_path)
    last, final = root / "checkpoints/ensemble/last.pt", root / "checkpoints/ensemble/final.pt"
    proc = _stage(root, start_new_session=True)
    deadline = time.monotonic() + 300
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL and last.exists() and not final.exists()

    resumed = _stage(root)
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert "resuming at iteration" in output
    a, b = _weights(final), _weights(finished / "checkpoints/ensemble/final.pt")
    assert a.keys() == b.keys()
    unequal = [k for k in a if not torch.equal(a[k], b[k])]
    assert not unequal, f"tensors differ from the uninterrupted run: {unequal[:5]}"
    loss_csv = "reports/plots/train_ensemble_loss.csv"
    assert (root / loss_csv).read_text() == (finished / loss_csv).read_text()


@pytest.mark.slow
def test_a_non_finite_loss_stops_naming_iteration_and_terms_and_keeps_the_last_checkpoint(
    prepared, tmp_path, monkeypatch
):
    import stages.train_ensemble as stage
    from ops.params import load_params
    from privobfnet.training.loop import NonFiniteLoss

    root = _copy(prepared, tmp_path)
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    real, calls = stage.ensemble_losses, []

    def poisoned_at_step_3(*args, **kwargs):
        losses = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            losses["image"] = losses["image"] * float("nan")
            losses["total"] = losses["total"] + losses["image"]
        return losses

    monkeypatch.setattr(stage, "ensemble_losses", poisoned_at_step_3)
    with pytest.raises(
        NonFiniteLoss, match=r"iteration 3: non-finite loss \(total=nan, .*image=nan"
    ):
        stage.main(load_params(root / "params.yaml"))
    state = torch.load(root / "checkpoints/ensemble/last.pt", weights_only=True)
    assert (
        state["iteration"] == 2 and len(state["history"]) == 2
    )  # the checkpoint before the bad step
    assert not (root / "checkpoints/ensemble/final.pt").exists()
    assert not (root / "reports/metrics/train_ensemble.json").exists()
