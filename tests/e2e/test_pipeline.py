"""End to end on the ci profile in a throw-away copy: a Prefect deployment run of every DVC stage."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from ops.dvc_stages import stage_order, stage_params
from ops.outputs import ENSEMBLE_CHECKPOINT
from ops.params import load_params
from ops.registry import CHAMPION, DEEPLAB_MODEL, ENSEMBLE_MODEL, SELECTION_TAG
from ops.tracking import STAGE_RUNS, flatten
from pipelines.serve import stop, wait_for_server
from privobfnet.data.manifest import read_manifest
from privobfnet.data.mask_types import load_mask_types
from privobfnet.inference import predict_segmentation
from privobfnet.labels import segmentation_classes
from privobfnet.masks.assets import default_cache_dir
from privobfnet.models.checkpoints import load_deeplab
from privobfnet.serving import Scorer
from tests.conftest import copy_project, dvc
from tools.compare_outputs import files_under
from tools.ui_check import free_port, get_json, start

UUID_RE = re.compile(r"UUID:\s*([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def post_json(url: str, body: dict) -> list | dict:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_for_flow_run(api: str, flow_run_id: str, timeout_s: float) -> dict:
    """Poll the flow run until its state is terminal; returns the state."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = get_json(f"{api}/flow_runs/{flow_run_id}", timeout_s=30)["state"]
        if state and state["type"] in TERMINAL:
            return state
        time.sleep(2)
    raise TimeoutError(f"flow run {flow_run_id} did not finish within {timeout_s:.0f} s")


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict:
    """prefect server + the served deployment on a ci-profile copy; one run triggered through the API.

    Returns the project folder, the flow run id and the keys of the artifacts the run created.
    """
    tmp_path = tmp_path_factory.mktemp("served")
    project = copy_project(tmp_path / "project")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = dict(
        os.environ,
        PREFECT_HOME=str(tmp_path / "prefect_home"),
        PREFECT_API_URL=api,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    )
    for name in (
        "MLFLOW_TRACKING_URI",
        "PRIVOBFNET_PIPELINE_ID",
        "PRIVOBFNET_ROOT",
        "DVC_EXP_NAME",
    ):
        env.pop(name, None)
    logs = tmp_path / "logs"
    logs.mkdir()
    cwd = os.getcwd()
    os.chdir(project)  # the served flow runs the stages in its working directory
    server = start(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env,
        logs / "server.log",
    )
    procs = [server]
    try:
        wait_for_server(api, timeout_s=120)
        procs.append(
            start(
                [
                    sys.executable,
                    "-m",
                    "pipelines.serve",
                    "--no-server",
                    "--port",
                    str(port),
                    "--cron",
                    "0 3 * * *",
                    "--profile",
                    "ci",
                ],
                env,
                logs / "serve.log",
            )
        )
        deployment = get_json(
            f"{api}/deployments/name/privobfnet-pipeline/privobfnet", timeout_s=120
        )
        trigger = subprocess.run(
            [
                sys.executable,
                "-m",
                "prefect",
                "deployment",
                "run",
                "privobfnet-pipeline/privobfnet",
                "--params",
                json.dumps({"profile": "ci"}),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert trigger.returncode == 0, trigger.stdout + trigger.stderr
        flow_run_id = UUID_RE.search(trigger.stdout).group(1)
        state = wait_for_flow_run(api, flow_run_id, timeout_s=900)
        assert state["type"] == "COMPLETED", (state, (logs / "serve.log").read_text()[-5000:])
        artifacts = post_json(
            f"{api}/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}
        )
    finally:
        for proc in reversed(procs):
            stop(proc)
        os.chdir(cwd)
    assert all(proc.poll() is not None for proc in procs)
    return {
        "project": project,
        "flow_run_id": flow_run_id,
        "deployment": deployment,
        "artifacts": {a["key"] for a in artifacts},
    }


def test_served_deployment_runs_every_stage(served):
    (schedule,) = served["deployment"]["schedules"]
    assert schedule["schedule"]["cron"] == "0 3 * * *" and schedule["active"] is True
    assert served["deployment"]["parameters"] == {"profile": "ci"}
    assert served["deployment"]["global_concurrency_limit"]["limit"] == 1  # one run at a time
    assert {
        "privobfnet-progress",
        "privobfnet-metrics",
        "privobfnet-tables",
        "privobfnet-evaluate-run",
    } <= served["artifacts"]
    project = served["project"]
    for split, rows in {"train": 24, "val": 8, "test": 8}.items():
        manifest = read_manifest(project / "data/manifests" / f"{split}.parquet")
        assert len(manifest) == rows and manifest["mask_path"].notna().all()
    assert json.loads((project / "reports/metrics/validate.json").read_text())["success"] is True
    assert "Table 5" in (project / "reports/tables.md").read_text()


def test_mlflow_holds_every_stage_run_and_both_registered_models(served, monkeypatch):
    monkeypatch.chdir(served["project"])
    check_mlflow_store(served["project"], pipeline_id=f"prefect-{served['flow_run_id']}")


def test_registered_ensemble_answers_as_the_checkpoint(served, monkeypatch):
    """The registry round trip: the champion pyfunc model gives the final.pt privacy scores and
    attribute probabilities on test images, as privobfnet score computes them."""
    project = served["project"]
    monkeypatch.chdir(project)
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    registered = mlflow.pyfunc.load_model(f"models:/{ENSEMBLE_MODEL}@{CHAMPION}")
    paths = list(read_manifest(project / "data/manifests/test.parquet")["path"][:3])
    answer = registered.predict(pd.DataFrame({"image": [Path(p).read_bytes() for p in paths]}))
    scorer = Scorer(project / ENSEMBLE_CHECKPOINT, cache_dir=default_cache_dir())
    assert list(answer.columns) == ["privacy_score", *scorer.class_names]
    for row, path in zip(answer.itertuples(index=False), paths):
        prediction = scorer.score_file(path)
        assert row[0] == prediction.privacy_score
        assert list(row[1:]) == prediction.attribute_probs.tolist()


def torchmetrics_miou(pairs, n_labels: int) -> float:
    """mIoU over the classes present in prediction or ground truth, by torchmetrics (255 ignored)."""
    from torchmetrics.classification import MulticlassJaccardIndex

    jaccard = MulticlassJaccardIndex(num_classes=n_labels, ignore_index=255, average="macro")
    for prediction, truth in pairs:
        jaccard.update(
            torch.from_numpy(prediction.astype(np.int64))[None],
            torch.from_numpy(truth.astype(np.int64))[None],
        )
    return float(jaccard.compute())


def seg_of(manifest):
    """The manifest's segmentation classes and encoding (SynthPriv: every attribute but a0_safe)."""
    names = list(manifest.attrs["class_names"])
    return segmentation_classes(names, load_mask_types(manifest.attrs["dataset"], names))


def test_pseudo_label_miou_is_recomputed_from_the_written_pngs(served):
    project = served["project"]
    metrics = json.loads((project / "reports/metrics/pseudo_labels.json").read_text())
    manifest = read_manifest(project / "data/manifests/train.parquet")
    seg = seg_of(manifest)
    pairs = [
        (
            np.asarray(Image.open(project / "data/pseudo_labels" / f"{row.image_id}.png")),
            seg.from_truth(np.asarray(Image.open(project / row.mask_path))),
        )
        for row in manifest.itertuples()
    ]
    assert metrics["splits"]["train"]["cam_miou"] == pytest.approx(
        torchmetrics_miou(pairs, seg.n_labels), abs=1e-6
    )
    assert (
        "a0_safe" not in metrics["splits"]["train"]["per_class_iou"]
        and metrics["classes"] == seg.label_names
    )
    assert (
        0 <= metrics["splits"]["train"]["masks_only_cam_miou"] <= 1
    )  # the untrained baseline is scored too


def test_deeplab_miou_is_recomputed_from_its_predictions(served):
    project = served["project"]
    metrics = json.loads((project / "reports/metrics/evaluate.json").read_text())
    model, meta = load_deeplab(project / "checkpoints/deeplab/final.pt", "cpu")
    for split in ("val", "test"):
        manifest = read_manifest(project / "data/manifests" / f"{split}.parquet")
        assert meta["class_names"] == seg_of(manifest).label_names
        pairs = [
            (
                predict_segmentation(
                    model, np.asarray(Image.open(project / row.path).convert("RGB")), "cpu"
                ),
                seg_of(manifest).from_truth(np.asarray(Image.open(project / row.mask_path))),
            )
            for row in manifest.itertuples()
        ]
        expected = torchmetrics_miou(pairs, len(meta["class_names"]))
        assert metrics["segmentation"][split]["miou"] == pytest.approx(expected, abs=1e-6), split


def test_a_second_fresh_copy_writes_identical_outputs(served, tmp_path):
    """Same code, params and data: every output and metrics file byte-identical (timings live in reports/runs/)."""
    first = served["project"]
    second = copy_project(tmp_path / "second")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "repro"], cwd=second, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    compared = [
        "reports/metrics",
        "reports/plots",
        "reports/tables.md",
        "reports/validation.md",
        "data/manifests",
        "data/masks",
        "data/pseudo_labels",
    ]
    first_files = {
        name: data for entry in compared for name, data in files_under(first, entry).items()
    }
    second_files = {
        name: data for entry in compared for name, data in files_under(second, entry).items()
    }
    assert len(first_files) > 100 and "reports/metrics/evaluate.json" in first_files
    assert sorted(first_files) == sorted(second_files)
    differing = [name for name in first_files if first_files[name] != second_files[name]]
    assert differing == []


def test_dvc_has_nothing_left_then_a_profile_switch_reruns_what_changed(served, monkeypatch):
    project = served["project"]
    monkeypatch.chdir(project)
    compared = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.compare_runs",
            f"pipeline:prefect-{served['flow_run_id']}",
            "profile:ci",
            "--stage",
            "evaluate",
        ],
        capture_output=True,
        text=True,
    )
    assert compared.returncode == 0, compared.stderr
    assert "## evaluate" in compared.stdout and "Same params." in compared.stdout
    again = dvc("repro")
    assert "Data and pipelines are up to date" in again.stdout
    subprocess.run(
        [sys.executable, "-m", "tools.use_profile", "default"], check=True, capture_output=True
    )
    diff = dvc("params", "diff", "--md").stdout
    assert "data.splits.train" in diff and "synthpriv.image_size" in diff
    status = dvc("status").stdout
    assert "download" in status and "validate" in status
    assert (
        "weights" in status
    )  # the default profile trains from the ImageNet lite0 weights, ci from scratch


def check_mlflow_store(project: Path, pipeline_id: str) -> None:
    """Every stage made one finished run with its params, metrics and tags; both models are registered."""
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(
        experiment_names=["privobfnet"], filter_string=STAGE_RUNS, output_format="list"
    )
    assert sorted(r.info.run_name for r in runs) == sorted(stage_order(project / "dvc.yaml"))
    cfg = load_params(project / "params.yaml")
    for run in runs:
        stage = run.info.run_name
        assert run.info.status == "FINISHED", stage
        sections = stage_params(stage, project / "dvc.yaml")
        assert run.data.params == {**flatten(cfg.section_dict(*sections)), "seed": str(cfg.seed)}, (
            stage
        )
        assert run.data.metrics, f"{stage} logged no metrics"
        tags = run.data.tags
        assert tags["privobfnet.stage"] == stage and tags["privobfnet.profile"] == "ci"
        assert tags["privobfnet.pipeline_id"] == pipeline_id
        assert tags["privobfnet.params_hash"] == cfg.params_hash(*sections)
    evaluate = next(r for r in runs if r.info.run_name == "evaluate")
    assert (
        "privacy.test.pearson" in evaluate.data.metrics
        and "segmentation.val.miou" in evaluate.data.metrics
    )
    check_dataset_inputs(project, runs)

    client = mlflow.MlflowClient()
    metrics = json.loads((project / "reports/metrics/evaluate.json").read_text())
    registered = json.loads((project / "reports/runs/evaluate.json").read_text())[
        "registered_models"
    ]
    for key, name in {"ensemble": ENSEMBLE_MODEL, "deeplab": DEEPLAB_MODEL}.items():
        (version,) = client.search_model_versions(f"name = '{name}'")
        assert version.run_id == evaluate.info.run_id and version.status == "READY"
        assert (
            version.tags["privobfnet.pipeline_id"] == pipeline_id
            and version.tags["privobfnet.profile"] == "ci"
        )
        assert registered[key]["version"] == str(version.version)
        logged = mlflow.get_logged_model(registered[key]["model_id"])
        assert logged.metrics, f"{name}: no metrics linked to the logged model"
    champion = client.get_model_version_by_alias(ENSEMBLE_MODEL, CHAMPION)
    assert str(champion.version) == registered["ensemble"]["version"]  # the first one takes it
    assert float(champion.tags[SELECTION_TAG]) == pytest.approx(
        metrics["attributes"]["val"]["map"], abs=1e-5
    )
    card = client.get_registered_model(ENSEMBLE_MODEL).description
    assert card.startswith("# Model card") and f"{metrics['attributes']['val']['map']:.3f}" in card
    deeplab = mlflow.pytorch.load_model(f"models:/{DEEPLAB_MODEL}/1")
    with torch.no_grad():
        logits = deeplab(torch.zeros(1, 3, 48, 48))
    assert (
        logits.shape[1] == seg_of(read_manifest(project / "data/manifests/train.parquet")).n_labels
    )  # no a0_safe
    version = client.get_model_version(DEEPLAB_MODEL, "1")
    assert float(version.tags["metric.val.miou"]) == pytest.approx(
        metrics["segmentation"]["val"]["miou"], abs=1e-5
    )


def check_dataset_inputs(project: Path, runs) -> None:
    """Each stage that reads manifests lists them as MLflow dataset inputs, digest = DVC's md5 of the file."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    dir_md5 = next(
        out["md5"] for out in lock["stages"]["validate"]["outs"] if out["path"] == "data/manifests"
    )
    listing = json.loads((project / ".dvc/cache/files/md5" / dir_md5[:2] / dir_md5[2:]).read_text())
    dvc_md5 = {Path(entry["relpath"]).stem: entry["md5"] for entry in listing}
    expected = {
        "masks": {(s, "masks") for s in ("train", "val", "test")},
        "type_text": {("train", "training"), ("val", "threshold")},
        "train_ensemble": {("train", "training"), ("test", "evaluation")},
        "pseudo_labels": {("train", "pseudo_labels")},  # ci: eval_splits [train] -> one input
        "train_deeplab": {("train", "training"), ("val", "evaluation")},
        "evaluate": {("val", "evaluation"), ("test", "evaluation")},
        "redact": {("test", "redaction")},
    }
    for run in runs:
        inputs = run.inputs.dataset_inputs if run.inputs else []
        seen = set()
        for item in inputs:
            tags = {t.key: t.value for t in item.tags}
            assert item.dataset.name == f"synthpriv/{tags['split']}"
            assert item.dataset.digest == dvc_md5[tags["split"]], (run.info.run_name, tags["split"])
            seen.add((tags["split"], tags["mlflow.data.context"]))
        assert seen == expected.get(run.info.run_name, set()), run.info.run_name


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
