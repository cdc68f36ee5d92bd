"""End to end: the DVC pipeline on the ci profile in a throw-away copy of the project."""
from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import pytest

from privobfnet.data.manifest import read_manifest
from pipelines.flow import stage_order
from tests.conftest import dvc

pytestmark = pytest.mark.slow


def test_repro_then_noop_then_profile_switch(project, monkeypatch):
    monkeypatch.setenv("PRIVOBFNET_PIPELINE_ID", "test-pipeline")
    dvc("repro")
    for split, rows in {"train": 24, "val": 8, "test": 8}.items():
        manifest = read_manifest(project / "data/manifests" / f"{split}.parquet")
        assert len(manifest) == rows and manifest["mask_path"].notna().all()
        assert manifest.attrs["dataset"] == "synthpriv" and manifest.attrs["class_names"][0] == "a0_safe"
    assert json.loads((project / "reports/metrics/validate.json").read_text())["success"] is True
    assert (project / "reports/figures/synthpriv_samples.png").stat().st_size > 10_000

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["privobfnet"], output_format="list")
    assert sorted(r.info.run_name for r in runs) == sorted(stage_order(project / "dvc.yaml"))
    assert {r.data.tags["privobfnet.pipeline_id"] for r in runs} == {"test-pipeline"}
    assert {r.data.tags["privobfnet.profile"] for r in runs} == {"ci"}

    again = dvc("repro")
    assert "Data and pipelines are up to date" in again.stdout
    assert "dvc.yaml" in dvc("dag").stdout or "validate" in dvc("dag").stdout

    subprocess.run([sys.executable, "-m", "stages.use_profile", "default"], check=True, capture_output=True)
    diff = dvc("params", "diff", "--md").stdout
    assert "data.splits.train" in diff and "synthpriv.image_size" in diff
    status = dvc("status").stdout
    assert "download" in status and "validate" in status and "weights" not in status


def test_bad_data_stops_the_pipeline_before_manifests(project):
    dvc("repro", "download")
    image = next((project / "data/raw/synthpriv/images/train").glob("*.jpg"))
    image.write_bytes(image.read_bytes()[:200])  # truncate one image
    failed = dvc("repro", "--single-item", "validate", check=False)  # download would re-make it
    assert failed.returncode != 0
    assert image.name in failed.stderr + failed.stdout
    assert not (project / "data/manifests").exists()
    report = (project / "reports/validation.md").read_text()
    assert image.name in report and "FAIL" in report
