"""Stage train_deeplab on the ci profile: end to end through DVC, resume after SIGKILL, label sources."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from ops.params import write_params
from privobfnet.config import parse_config
from privobfnet.data.images import mask_to_image
from privobfnet.data.manifest import read_manifest
from privobfnet.data.mask_types import load_mask_types
from privobfnet.evaluation.segmentation import confusion_matrix, segmentation_scores
from privobfnet.labels import segmentation_classes
from privobfnet.models.checkpoints import load_deeplab
from stages import download, validate
from tests.conftest import REPO, ci_params


def dvc(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def ci_data(tmp_path_factory) -> Path:
    """SynthPriv at the ci size with validated manifests, made once for this module."""
    root = tmp_path_factory.mktemp("deeplab_data")
    cfg = parse_config(ci_params(root))
    cwd = os.getcwd()
    os.chdir(root)  # the stages write reports/ under the working directory
    try:
        download.main(cfg)
        validate.main(cfg)
    finally:
        os.chdir(cwd)
    return root


def seg_of(manifest: pd.DataFrame):
    """The manifest's segmentation classes (SynthPriv: every attribute but a0_safe)."""
    names = list(manifest.attrs["class_names"])
    return segmentation_classes(names, load_mask_types(manifest.attrs["dataset"], names))


def write_pseudo_labels(
    manifest: pd.DataFrame, out_dir: Path, *, noise: float, seed: int = 0
) -> None:
    """Ground-truth masks as pseudo-labels (segmentation encoding), a share ``noise`` of labelled pixels set to 0."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    seg = seg_of(manifest)
    for row in manifest.itertuples(index=False):
        mask = seg.from_truth(np.array(Image.open(row.mask_path)))
        mask[(rng.random(mask.shape) < noise) & (mask != 255)] = 0
        mask_to_image(mask).save(out_dir / f"{row.image_id}.png")


def stage_params(root: Path, ci_data: Path, **deeplab) -> dict:
    """ci params reading ci_data's manifests, pseudo-labels under ``root``, MLflow in ci_data's store."""
    params = ci_params(ci_data)  # one store for the module: a fresh sqlite store costs seconds
    params["pseudo_labels"]["out_dir"] = str(root / "pseudo_labels")
    params["deeplab"].update(deeplab)
    return params


def background_everywhere_miou(manifest: pd.DataFrame, n_labels: int) -> float:
    """The trivial baseline: the mIoU of predicting background at every pixel."""
    cm = np.zeros((n_labels, n_labels), np.int64)
    for row in manifest.itertuples(index=False):
        truth = seg_of(manifest).from_truth(np.asarray(Image.open(row.mask_path)))
        cm += confusion_matrix(np.zeros_like(truth), truth, n_labels)
    return segmentation_scores(cm, [str(i) for i in range(n_labels)])["miou"]


# Scored on its own training images: the ci-size tiny DeepLab fits its near-perfect labels in 800
# steps at this lr, but does not yet generalise to the 8 held-out images (the default profile's
# from-scratch ceiling is the model-quality issue, not this stage's). With SynthPriv's Faker text
# (documents of thin lines at 96 px) 200 steps stayed at the background baseline (mIoU 0.054 vs
# 0.055) and 400 reached 0.069; 0.04 instead of 0.02 did worse.
ITERATIONS, LR = 800, 0.02


@pytest.mark.slow
def test_stage_through_dvc_trains_scores_and_logs(project, monkeypatch):
    monkeypatch.setenv("PRIVOBFNET_PIPELINE_ID", "deeplab-test")
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["deeplab"].update(iterations=ITERATIONS, checkpoint_every=50, lr=LR, eval_split="train")
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc("repro", "validate", "weights")
    train = read_manifest(project / "data/manifests/train.parquet")
    # stand-ins for the pseudo_labels stage's output, so only this stage runs
    write_pseudo_labels(train, project / "data/pseudo_labels", noise=0.05)
    dvc("repro", "--single-item", "train_deeplab")

    metrics = json.loads((project / "reports/metrics/train_deeplab.json").read_text())
    class_names = seg_of(train).label_names  # background + every attribute but a0_safe
    assert set(metrics["per_class_iou"]) == set(class_names) and "a0_safe" not in class_names
    assert metrics["per_class_iou"]["background"] > 0.5  # background dominates SynthPriv
    # a model that predicts background everywhere must fail here: it scores 0 on every drawn class
    baseline = background_everywhere_miou(train, len(class_names))
    assert metrics["miou"] > baseline + 0.02, (metrics["miou"], baseline)
    foreground = [
        iou for name, iou in metrics["per_class_iou"].items() if name != "background" and iou
    ]
    assert max(foreground) > 0.1, metrics["per_class_iou"]
    assert (
        metrics["iterations"] == ITERATIONS
        and metrics["eval_images"] == 24
        and metrics["train_images"] == 24
    )
    assert metrics["labels"] == "pseudo" and metrics["final_loss"] < 1.0
    run_facts = json.loads((project / "reports/runs/train_deeplab.json").read_text())
    assert run_facts["images_per_second"] > 0 and run_facts["resumed_from"] == 0

    model, meta = load_deeplab(project / "checkpoints/deeplab/final.pt", "cpu")
    assert meta["class_names"] == class_names and meta["config"]["iterations"] == ITERATIONS
    assert model.n_classes == len(class_names)
    assert not (project / "checkpoints/deeplab/last.pt").exists()  # removed once finished

    plot = pd.read_csv(project / "reports/plots/train_deeplab_loss.csv")
    assert list(plot.columns) == ["step", "lr", "total"] and plot["step"].tolist() == list(
        range(1, ITERATIONS + 1)
    )
    assert plot["lr"].is_monotonic_decreasing and plot["total"].notna().all()
    assert plot["total"].tail(20).mean() < plot["total"].head(20).mean()  # it learns
    assert "train_deeplab_loss.csv" in dvc("plots", "show", "--json").stdout

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    run = next(
        r
        for r in mlflow.search_runs(experiment_names=["privobfnet"], output_format="list")
        if r.info.run_name == "train_deeplab"
    )
    assert run.data.tags["privobfnet.pipeline_id"] == "deeplab-test"
    assert run.data.metrics["miou"] == pytest.approx(metrics["miou"])
    losses = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss.total")
    assert sorted(m.step for m in losses) == list(range(1, ITERATIONS + 1))
    assert (
        "Data and pipelines are up to date" in dvc("repro", "--single-item", "train_deeplab").stdout
    )


def run_stage(workdir: Path, params: dict) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    write_params(params, workdir / "params.yaml")
    return subprocess.Popen(
        [sys.executable, "-m", "stages.train_deeplab"],
        cwd=workdir,
        env=dict(os.environ, PYTHONPATH=str(REPO)),  # the stage runs outside the checkout here
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tmp_path, ci_data):
    train = read_manifest(ci_data / "data/manifests/train.parquet")
    settings = dict(iterations=24, checkpoint_every=4, batch_size=2, crop_size=48, tiny_width=8)

    write_pseudo_labels(train, tmp_path / "whole" / "pseudo_labels", noise=0.1)
    whole = run_stage(tmp_path / "whole", stage_params(tmp_path / "whole", ci_data, **settings))
    assert whole.wait(timeout=300) == 0, whole.stdout.read()

    killed_dir = tmp_path / "killed"
    write_pseudo_labels(train, killed_dir / "pseudo_labels", noise=0.1)
    params = stage_params(killed_dir, ci_data, **settings)
    first = run_stage(killed_dir, params)
    last = killed_dir / "checkpoints/deeplab/last.pt"
    deadline = time.monotonic() + 300
    while not last.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert last.exists() and not (killed_dir / "checkpoints/deeplab/final.pt").exists()
    resumed_at = torch.load(last, weights_only=True)["iteration"]
    assert 0 < resumed_at < 24

    second = run_stage(killed_dir, params)
    output = second.communicate(timeout=300)[0]
    assert second.returncode == 0, output
    assert f"checkpoints/deeplab/last.pt: resuming at iteration {resumed_at}" in output

    a = torch.load(tmp_path / "whole/checkpoints/deeplab/final.pt", weights_only=True)["model"]
    b = torch.load(killed_dir / "checkpoints/deeplab/final.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    whole_csv = (tmp_path / "whole/reports/plots/train_deeplab_loss.csv").read_text()
    assert (killed_dir / "reports/plots/train_deeplab_loss.csv").read_text() == whole_csv
    whole_metrics = (tmp_path / "whole/reports/metrics/train_deeplab.json").read_text()
    assert (
        killed_dir / "reports/metrics/train_deeplab.json"
    ).read_text() == whole_metrics  # byte for byte
    assert (
        json.loads((killed_dir / "reports/runs/train_deeplab.json").read_text())["resumed_from"]
        == resumed_at
    )


@pytest.mark.slow
def test_a_checkpoint_from_other_params_is_not_resumed(tmp_path, ci_data):
    train = read_manifest(ci_data / "data/manifests/train.parquet")
    write_pseudo_labels(train, tmp_path / "pseudo_labels", noise=0.0)
    last = tmp_path / "checkpoints/deeplab/last.pt"
    last.parent.mkdir(parents=True)
    torch.save({"fingerprint": "trained-on-something-else", "iteration": 3}, last)
    stage = run_stage(
        tmp_path, stage_params(tmp_path, ci_data, iterations=4, batch_size=2, crop_size=32)
    )
    output = stage.communicate(timeout=300)[0]
    assert stage.returncode == 0, output
    assert "is from other params or data; starting over" in output
    assert not last.exists()
    assert len(pd.read_csv(tmp_path / "reports/plots/train_deeplab_loss.csv")) == 4
