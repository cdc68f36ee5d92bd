"""The Prefect flow runs the DVC stages in order and never shows a failed stage as green."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from prefect.testing.utilities import prefect_test_harness

from ops.tracking import STAGE_RUNS
from pipelines.flow import StageFailed, pipeline
from privobfnet.masks.assets import CACHE_ENV
from tests.conftest import dvc


@pytest.fixture(scope="module")
def harness():
    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.mark.slow
def test_flow_runs_the_stages_and_groups_mlflow_runs(project, harness):
    selected = ["download", "weights", "validate"]
    results = pipeline(profile="ci", stages=selected)
    assert list(results) == selected
    assert results["validate"]["success"] is True
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(
        experiment_names=["privobfnet"], filter_string=STAGE_RUNS, output_format="list"
    )
    ids = {r.data.tags["privobfnet.pipeline_id"] for r in runs}
    assert len(ids) == 1 and ids.pop().startswith("prefect-")
    assert sorted(r.info.run_name for r in runs) == sorted(selected)


@pytest.mark.slow
def test_failing_stage_fails_the_flow(project, harness):
    dvc("repro", "download")
    image = next((project / "data/raw/synthpriv/images/train").glob("*.jpg"))
    image.write_bytes(b"not a jpeg")
    state = pipeline(profile="ci", stages=["validate"], return_state=True)
    assert state.is_failed()
    with pytest.raises(StageFailed, match="validate") as failure:
        state.result()
    assert failure.value.transient is False and failure.value.returncode != 0


def test_unknown_stage_is_refused(project, harness):
    with pytest.raises(ValueError, match="unknown stage"):
        pipeline(profile="ci", stages=["nonsense"])


@pytest.mark.slow
def test_flow_runs_the_masks_stage_on_the_dask_cluster_it_starts(
    project,
    harness,
    model_cache,
    monkeypatch,
):
    monkeypatch.setenv(CACHE_ENV, str(model_cache))
    selected = ["download", "validate", "masks"]
    results = pipeline(
        profile="ci",
        stages=selected,
        masks_cluster="distributed.LocalCluster",
        masks_cluster_kwargs={"dashboard_address": ":0"},
    )
    assert list(results) == selected and results["masks"]["failed"] == 0
    facts = json.loads((project / "reports/runs/masks.json").read_text())
    assert (
        facts["scheduler"].startswith("tcp://127.0.0.1:") and facts["workers"] == 2
    )  # ci: masks.workers 2
    assert (
        facts["computed"]
        == results["masks"]["images"]
        == len(pd.read_parquet(project / "data/masks/index.parquet"))
    )
    assert "masks" not in dvc("status", "masks").stdout.replace(
        "Data and pipelines are up to date", ""
    )


def test_a_mistyped_masks_cluster_fails_before_any_stage(project, harness):
    with pytest.raises(Exception, match="NoSuchCluster"):
        pipeline(
            profile="ci", stages=["download", "masks"], masks_cluster="distributed.NoSuchCluster"
        )
    assert not (project / "data/raw").exists()
    with pytest.raises(ValueError, match="not with a scheduler address"):
        pipeline(
            profile="ci",
            stages=["masks"],
            masks_cluster="tcp://127.0.0.1:8786",
            masks_cluster_kwargs={"n_workers": 2},
        )
