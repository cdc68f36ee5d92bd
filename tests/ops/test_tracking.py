"""The MLflow convention: one run per stage execution with params, metrics and tags."""

from __future__ import annotations

import mlflow
import pytest

from ops.dvc_stages import stage_params
from ops.tracking import STAGE_RUNS, flatten, project_root, stage_run, tracking_uri
from tests.conftest import with_changes


def _runs(cfg):
    mlflow.set_tracking_uri(cfg.tracking.uri)
    exp = mlflow.get_experiment_by_name(cfg.tracking.experiment)
    return mlflow.search_runs([exp.experiment_id], filter_string=STAGE_RUNS, output_format="list")


def test_stage_run_records_params_metrics_and_tags(ci_config, monkeypatch):
    monkeypatch.setenv("PRIVOBFNET_PIPELINE_ID", "pipe-123")
    monkeypatch.setenv("DVC_EXP_NAME", "exp-abc")
    with stage_run("validate", ci_config) as run:
        run.log_metrics({"train": {"rows": 24, "ok": True}, "failed": 0})
    (r,) = _runs(ci_config)
    assert r.info.status == "FINISHED" and r.info.run_name == "validate"
    assert r.data.params["data.splits.train"] == "24"
    assert r.data.params["validate.decode_images"] == "True"
    assert "train.lr" not in r.data.params  # only what dvc.yaml lists for the stage
    assert r.data.metrics == {"train.rows": 24.0, "failed": 0.0}
    tags = r.data.tags
    assert tags["privobfnet.stage"] == "validate"
    assert tags["privobfnet.profile"] == "ci"
    assert tags["privobfnet.pipeline_id"] == "pipe-123"
    assert tags["dvc.exp_name"] == "exp-abc"
    assert tags["privobfnet.params_hash"] == ci_config.params_hash(*stage_params("validate"))
    assert len(tags["mlflow.source.git.commit"]) in (40, len("unknown"))


def test_failed_stage_marks_the_run_failed(ci_config):
    with pytest.raises(RuntimeError):
        with stage_run("download", ci_config):
            raise RuntimeError("boom")
    (r,) = _runs(ci_config)
    assert r.info.status == "FAILED"


def test_params_hash_changes_with_the_stage_params_only(ci_config):
    other = with_changes(ci_config, "train", lr=0.5)
    assert other.params_hash("data") == ci_config.params_hash("data")
    assert other.params_hash("train") != ci_config.params_hash("train")


def test_pipeline_id_without_env_is_shared_by_stages(ci_config):
    for stage in ("download", "validate"):
        with stage_run(stage, ci_config):
            pass
    ids = {r.data.tags["privobfnet.pipeline_id"] for r in _runs(ci_config)}
    assert len(ids) == 1 and ids.pop().startswith("local-")


def test_project_root_seen_from_a_dvc_temp_experiment(ci_config, tmp_path, monkeypatch):
    temp_copy = tmp_path / "proj" / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    temp_copy.mkdir(parents=True)
    assert project_root(temp_copy / "sub") == tmp_path / "proj"
    assert project_root(tmp_path / "proj") == tmp_path / "proj"
    monkeypatch.chdir(temp_copy)
    default_store = with_changes(ci_config, "tracking", uri=None)
    assert tracking_uri(default_store) == f"sqlite:///{tmp_path / 'proj' / 'mlflow.db'}"


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": {}}) == {
        "a.b": "1",
        "a.c.d": "x",
        "e": "{}",
    }


def test_stage_runs_of_one_pipeline_nest_under_one_parent(ci_config, monkeypatch):
    monkeypatch.setenv("PRIVOBFNET_PIPELINE_ID", "pipe-9")
    for stage in ("download", "validate"):
        with stage_run(stage, ci_config):
            pass
    with pytest.raises(RuntimeError):
        with stage_run("masks", ci_config):
            raise RuntimeError("boom")
    stages = _runs(ci_config)
    (parent,) = mlflow.search_runs(
        experiment_names=[ci_config.tracking.experiment],
        output_format="list",
        filter_string="tags.`privobfnet.kind` = 'pipeline'",
    )
    assert (
        parent.info.run_name == "pipeline pipe-9"
        and parent.data.tags["privobfnet.pipeline_id"] == "pipe-9"
    )
    assert {r.data.tags["mlflow.parentRunId"] for r in stages} == {parent.info.run_id}
    assert parent.info.status == "FAILED"  # follows its latest stage
    monkeypatch.setenv("PRIVOBFNET_PIPELINE_ID", "pipe-10")
    with stage_run("download", ci_config):
        pass
    parents = mlflow.search_runs(
        experiment_names=[ci_config.tracking.experiment],
        output_format="list",
        filter_string="tags.`privobfnet.kind` = 'pipeline'",
    )
    assert sorted((p.info.run_name, p.info.status) for p in parents) == [
        ("pipeline pipe-10", "FINISHED"),
        ("pipeline pipe-9", "FAILED"),
    ]


def test_manifests_are_logged_as_dataset_inputs_with_their_dvc_md5(ci_config, tmp_path):
    import hashlib

    manifests = tmp_path / "manifests"
    manifests.mkdir()
    for split in ("train", "test"):
        (manifests / f"{split}.parquet").write_bytes(f"manifest of {split}".encode())
    with stage_run("train_ensemble", ci_config) as run:
        run.log_manifests(manifests, "synthpriv", {"test": "evaluation", "train": "training"})
        run.log_step({"loss.total": 1.5, "lr": 0.1}, step=1)  # queued, flushed before the run ends
    (r,) = _runs(ci_config)
    logged = {
        (
            i.dataset.name,
            i.dataset.digest,
            {t.key: t.value for t in i.tags}["mlflow.data.context"],
            {t.key: t.value for t in i.tags}["split"],
        )
        for i in r.inputs.dataset_inputs
    }
    md5 = {
        split: hashlib.md5(f"manifest of {split}".encode()).hexdigest()
        for split in ("train", "test")
    }
    assert logged == {
        ("synthpriv/train", md5["train"], "training", "train"),
        ("synthpriv/test", md5["test"], "evaluation", "test"),
    }
    history = mlflow.MlflowClient().get_metric_history(r.info.run_id, "loss.total")
    assert [(m.step, m.value) for m in history] == [(1, 1.5)]


def test_system_metrics_are_logged_only_where_asked(ci_config, monkeypatch):
    import time

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    with stage_run("train_ensemble", ci_config, system_metrics=True):
        time.sleep(1.5)
    with stage_run("validate", ci_config):
        time.sleep(0.5)
    runs = {r.info.run_name: r for r in _runs(ci_config)}
    assert "system/cpu_utilization_percentage" in runs["train_ensemble"].data.metrics
    assert not [m for m in runs["validate"].data.metrics if m.startswith("system/")]
    # the parent is named through start_run(parent_run_id=...): the tag MLflow sets from it
    assert (
        runs["train_ensemble"].data.tags["mlflow.parentRunId"]
        == runs["validate"].data.tags["mlflow.parentRunId"]
    )
