"""The Prefect flow runs the DVC stages in order and never shows a failed stage as green; its
deployment runs one flow run at a time; a stage past its timeout fails the run; the run leaves the
tables and the evaluate run's link as artifacts.

The tests of the deployment's behaviour run the real flow on a stub project: profiles/ and a
dvc.yaml of stub stages (``STUB_STAGE``, which records what it saw), no pipeline code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import psutil
import pytest
import yaml
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness

from ops.tracking import STAGE_RUNS
from pipelines.artifacts import EVALUATE_RUN_KEY, TABLES_KEY
from pipelines.flow import StageFailed, StageTimedOut, pipeline
from pipelines.serve import DEPLOYMENT, stop
from privobfnet.masks.assets import CACHE_ENV
from tests.conftest import REPO, dvc

FLOW = "privobfnet-pipeline"
# a stub stage: records (stage, pipeline id, params.yaml's profile, pid) as it starts and ends
STUB_STAGE = """\
import json, os, sys, time
from pathlib import Path

stage, seconds = sys.argv[1], float(sys.argv[2])


def record(what):
    profile = next(
        line.split(":", 1)[1].strip()
        for line in Path("params.yaml").read_text().splitlines()
        if line.startswith("profile:")
    )
    event = {"stage": stage, "what": what, "profile": profile, "pid": os.getpid(),
             "pipeline": os.environ.get("PRIVOBFNET_PIPELINE_ID")}
    with open("events.jsonl", "a") as log:
        log.write(json.dumps(event) + "\\n")


record("start")
time.sleep(seconds)
if stage == "report":
    Path("reports").mkdir(exist_ok=True)
    Path("reports/tables.md").write_text("# Tables\\n\\n| model | mIoU |\\n|---|---|\\n| stub | 0.5 |\\n")
record("end")
"""


@pytest.fixture(scope="module")
def harness():
    # a run refused a slot is rescheduled this many seconds later (Prefect's default: 30)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS", "1")
        with prefect_test_harness(server_startup_timeout=60):
            yield


def stub_project(root: Path, stages: dict[str, float]) -> Path:
    """profiles/ and a DVC project whose stages (name: seconds) run ``STUB_STAGE``, always."""
    root.mkdir()
    shutil.copytree(REPO / "profiles", root / "profiles")
    (root / "stub_stage.py").write_text(STUB_STAGE)
    spec = {
        name: {"cmd": f"python stub_stage.py {name} {seconds}", "always_changed": True}
        for name, seconds in stages.items()
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": spec}, sort_keys=False))
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True)
    return root


def events(root: Path) -> list[dict]:
    path = root / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


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


def test_the_deployment_runs_one_flow_run_at_a_time(tmp_path, harness):
    root = stub_project(tmp_path / "stub", {"first": 1, "second": 1})
    api = PREFECT_API_URL.value()
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),  # the flow's code; the working directory is the stub project
        PREFECT_RUNNER_POLL_FREQUENCY="1",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    port = api.rsplit(":", 1)[1].split("/")[0]
    serve = subprocess.Popen(
        [sys.executable, "-m", "pipelines.serve", "--no-server", "--port", port],
        cwd=root,
        env=env,
        stdout=(tmp_path / "serve.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    name = f"{FLOW}/{DEPLOYMENT}"
    try:
        deadline = time.monotonic() + 90
        with get_client(sync_client=True) as client:
            while True:
                try:
                    deployment = client.read_deployment_by_name(name)
                    break
                except Exception:
                    assert serve.poll() is None, (tmp_path / "serve.log").read_text()
                    assert time.monotonic() < deadline, "the deployment was never registered"
                    time.sleep(0.5)
            assert deployment.global_concurrency_limit.limit == 1
            assert deployment.concurrency_options.collision_strategy.value == "ENQUEUE"
            # two runs at once, on two profiles: each rewrites params.yaml before its stages
            runs = {
                profile: run_deployment(name, parameters={"profile": profile}, timeout=0)
                for profile in ("ci", "default")
            }
            deadline = time.monotonic() + 150
            while not all(
                (state := client.read_flow_run(run.id).state).is_final() for run in runs.values()
            ):
                assert time.monotonic() < deadline, f"not finished: {state}"
                time.sleep(1)
            for run in runs.values():
                assert client.read_flow_run(run.id).state.is_completed()
            waited = [
                profile
                for profile, run in runs.items()
                if "AwaitingConcurrencySlot"
                in {s.name for s in client.read_flow_run_states(run.id)}
            ]
            ids = FlowRunFilter(id=FlowRunFilterId(any_=[run.id for run in runs.values()]))
            tasks = client.read_task_runs(flow_run_filter=ids)
    finally:
        stop(serve)
    seen = events(root)
    assert len(seen) == 8  # 2 runs x 2 stages x start and end
    pipelines = [e["pipeline"] for e in seen]
    first, second = dict.fromkeys(pipelines)
    assert pipelines == [first] * 4 + [second] * 4  # never interleaved
    by_run = {f"prefect-{run.id}": profile for profile, run in runs.items()}
    assert all(e["profile"] == by_run[e["pipeline"]] for e in seen)  # params.yaml was its own
    assert waited == [by_run[second]]  # the second run waited for a slot
    # and no stage met DVC's lock: each ran once, none was retried
    assert len(tasks) == 4 and all(t.run_count == 1 and t.state.is_completed() for t in tasks)


def test_a_stage_past_its_timeout_fails_the_run_and_is_stopped(tmp_path, harness, monkeypatch):
    root = stub_project(tmp_path / "stub", {"quick": 0, "hangs": 600, "never": 0})
    monkeypatch.chdir(root)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    state = pipeline(profile="ci", stage_timeout_s=15, return_state=True)
    assert state.is_failed()
    with pytest.raises(StageTimedOut, match="stage 'hangs' ran past its timeout of 15 s"):
        state.result()
    seen = events(root)
    assert [(e["stage"], e["what"]) for e in seen] == [
        ("quick", "start"),
        ("quick", "end"),
        ("hangs", "start"),
    ]
    hung = seen[-1]["pid"]
    assert not psutil.pid_exists(hung) or psutil.Process(hung).status() == psutil.STATUS_ZOMBIE
    with pytest.raises(ValueError, match="stage_timeout_s"):
        pipeline(profile="ci", stage_timeout_s=0)


def test_the_run_publishes_the_tables_and_the_evaluate_run(tmp_path, harness, monkeypatch):
    root = stub_project(tmp_path / "stub", {"evaluate": 0, "report": 0})
    monkeypatch.chdir(root)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")  # the project's default store
    experiment = client.create_experiment("privobfnet")
    run = client.create_run(experiment)
    client.create_registered_model("privobfnet-ensemble")
    version = client.create_model_version("privobfnet-ensemble", "file:///m", run.info.run_id)
    facts = {
        "registered_models": {
            "ensemble": {"name": "privobfnet-ensemble", "version": version.version}
        }
    }
    (root / "reports/runs").mkdir(parents=True)
    (root / "reports/runs/evaluate.json").write_text(json.dumps(facts))
    pipeline(profile="ci", mlflow_ui="http://mlflow.example:5001/")
    tables = Artifact.get(TABLES_KEY)
    assert tables.type == "markdown" and tables.data == (root / "reports/tables.md").read_text()
    link = Artifact.get(EVALUATE_RUN_KEY)  # Prefect keeps a link artifact as markdown: [text](url)
    url = f"http://mlflow.example:5001/#/experiments/{experiment}/runs/{run.info.run_id}"
    assert link.data.endswith(f"]({url})")
