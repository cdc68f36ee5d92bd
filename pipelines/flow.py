"""The Prefect flow: the DVC stages of dvc.yaml, in order, one `dvc repro --single-item` each.

DVC stays the one owner of caching and lineage: a stage whose deps did not change is skipped by DVC
itself. The stages run one at a time (parallel `dvc repro` calls fight over DVC's lock), and the
served deployment runs one flow run at a time (``pipelines.serve``). Each task streams its stage's
output into Prefect's logs, progress bars collapsed (``pipelines.stage_process``), and fails when
the stage fails; a transient failure (DVC's lock held by another process, the stage killed by a
signal) is retried. A stage past ``stage_timeout_s`` is stopped with its processes and fails the
run. The run ends with artifacts: the metrics table, ``reports/tables.md`` and a link to the
evaluate stage's MLflow run (``pipelines.artifacts``).

The stages themselves are no fan-out for a task runner: each is one `dvc repro` of work that needs
the one before. The fan-out is inside the masks stage (its images over a dask.distributed cluster,
``masks.scheduler``). With ``masks_cluster`` the flow provides that cluster: the masks stage runs
in a subflow whose ``DaskTaskRunner`` (prefect-dask) starts the cluster (a LocalCluster, or any
cluster class: dask_jobqueue, dask_kubernetes, ...) or connects to a running scheduler, and the
stage's process is pointed at it (``PRIVOBFNET_MASKS_SCHEDULER``); the cluster closes with the subflow.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.context import FlowRunContext
from prefect.runtime import flow_run
from prefect_dask import DaskTaskRunner

from ops.dvc_stages import stage_order
from ops.outputs import DVC_FILE, MASKS_SCHEDULER_ENV, PARAMS_FILE, PIPELINE_ID_ENV, metrics_file
from ops.params import load_params, resolve_profile, write_params
from ops.tracking import flatten_numbers, project_root, tracking_uri
from pipelines.artifacts import MLFLOW_UI, publish_evaluate_link, publish_tables
from pipelines.stage_process import run_logged

DEFAULT_STAGE_TIMEOUT_S = 12 * 3600.0  # the masks stage over COCO's 82k images takes hours
TRANSIENT_MARKERS = ("Unable to acquire lock", "lock is held", "database is locked")
TAIL_LINES = 30
LOCAL_CLUSTER = "distributed.LocalCluster"


class StageTimedOut(TimeoutError):
    """A stage ran past the flow's ``stage_timeout_s``; its process tree was stopped."""

    def __init__(self, stage: str, timeout_s: float):
        super().__init__(
            f"stage {stage!r} ran past its timeout of {timeout_s:g} s (the flow's stage_timeout_s);"
            " its dvc repro and the stage's processes were stopped"
        )
        self.stage, self.timeout_s = stage, timeout_s


class StageFailed(RuntimeError):
    """A DVC stage exited non-zero; ``transient`` says whether a retry may help."""

    def __init__(self, stage: str, returncode: int, tail: str, transient: bool):
        super().__init__(f"stage {stage!r} failed (exit {returncode}):\n{tail}")
        self.stage, self.returncode, self.transient = stage, returncode, transient


def _retry_if_transient(task_, task_run, state) -> bool:
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, StageFailed) and exc.transient


def _dvc_command() -> list[str]:
    return [sys.executable, "-m", "dvc"]


@task(
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_retry_if_transient,
    task_run_name="{stage}",
)
def run_stage(stage: str, pipeline_id: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`dvc repro --single-item <stage>` (``env`` added to its environment), its output streamed to
    the run log (progress bars collapsed); returns its metrics. The flow sets the task's timeout;
    when it strikes, the `dvc repro` process and its stage are stopped."""
    logger = get_run_logger()
    env = dict(os.environ, **{PIPELINE_ID_ENV: pipeline_id}, **(env or {}))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    tail: deque[str] = deque(maxlen=TAIL_LINES)

    def emit(line: str) -> None:
        line = line.rstrip()
        logger.info("%s | %s", stage, line)
        tail.append(line)

    returncode = run_logged([*_dvc_command(), "repro", "--single-item", stage], env, emit)
    if returncode != 0:
        text = "\n".join(tail)
        transient = returncode < 0 or any(m in text for m in TRANSIENT_MARKERS)
        raise StageFailed(stage, returncode, text, transient)
    path = metrics_file(stage)
    return json.loads(path.read_text()) if path.exists() else {}


@flow(name="privobfnet-masks-on-dask")
def masks_on_dask(pipeline_id: str, stage_timeout_s: float | None = None) -> dict[str, Any]:
    """The masks stage, its images computed on this subflow's Dask cluster (its DaskTaskRunner's)."""
    address = (
        FlowRunContext.get().task_runner.client.scheduler.address
    )  # starts (or joins) the cluster
    get_run_logger().info("masks on the Dask cluster at %s", address)
    stage_task = run_stage.with_options(timeout_seconds=stage_timeout_s)
    return stage_task("masks", pipeline_id, {MASKS_SCHEDULER_ENV: address})


def dask_task_runner(
    masks_cluster: str, cluster_kwargs: dict[str, Any] | None, workers: int
) -> DaskTaskRunner:
    """A scheduler address (tcp://host:port) to join, or the dotted name of a cluster class to start
    (a LocalCluster gets ``masks.workers`` processes of one thread unless ``cluster_kwargs`` say otherwise)."""
    if masks_cluster.startswith("tcp://"):
        if cluster_kwargs:
            raise ValueError(
                "masks_cluster_kwargs: not with a scheduler address (the cluster is already running)"
            )
        return DaskTaskRunner(address=masks_cluster)
    defaults = {}
    if masks_cluster == LOCAL_CLUSTER:
        defaults = {"n_workers": workers, "threads_per_worker": 1, "processes": True}
    return DaskTaskRunner(
        cluster_class=masks_cluster, cluster_kwargs={**defaults, **(cluster_kwargs or {})}
    )


def _use_profile(profile: str) -> None:
    """Write params.yaml from the profile unless it already holds that profile."""
    if not Path(PARAMS_FILE).exists() or load_params().profile != profile:
        write_params(resolve_profile(profile))


@flow(name="privobfnet-pipeline", log_prints=True)
def pipeline(
    profile: str = "default",
    stages: list[str] | None = None,
    masks_cluster: str | None = None,
    masks_cluster_kwargs: dict[str, Any] | None = None,
    stage_timeout_s: float | None = DEFAULT_STAGE_TIMEOUT_S,
    mlflow_ui: str = MLFLOW_UI,
) -> dict[str, Any]:
    """Run the DVC stages in order on ``profile``; returns {stage: metrics}.

    ``masks_cluster``: None (the masks stage as params.yaml says), a Dask scheduler address, or a
    cluster class such as ``distributed.LocalCluster`` (``masks_cluster_kwargs``: its arguments)
    that the flow starts for the masks stage and closes after it. ``stage_timeout_s``: each
    stage's task timeout (None: none); a stage past it is stopped and fails the run.
    ``mlflow_ui``: the MLflow UI the evaluate run's link artifact points into.
    """
    logger = get_run_logger()
    if stage_timeout_s is not None and stage_timeout_s <= 0:
        raise ValueError(f"stage_timeout_s: {stage_timeout_s} is not a positive number of seconds")
    _use_profile(profile)
    run_id = flow_run.get_id() or uuid.uuid4().hex
    pipeline_id = f"prefect-{run_id}"
    order = stage_order(DVC_FILE)  # the dvc.yaml that `dvc repro` reads: the working directory's
    selected = [s for s in order if stages is None or s in stages]
    unknown = sorted(set(stages or []) - set(order))
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; dvc.yaml has {order}")
    logger.info("pipeline %s: profile %s, stages %s", pipeline_id, profile, selected)
    progress = create_progress_artifact(
        0.0, key="privobfnet-progress", description=f"{pipeline_id}: starting"
    )
    results: dict[str, Any] = {}
    on_dask = None  # built before any stage runs: a mistyped cluster class fails the flow at once
    if masks_cluster and "masks" in selected:
        runner = dask_task_runner(masks_cluster, masks_cluster_kwargs, load_params().masks.workers)
        on_dask = masks_on_dask.with_options(task_runner=runner)
    stage_task = run_stage.with_options(timeout_seconds=stage_timeout_s)
    for n, stage in enumerate(selected, start=1):
        try:
            if stage == "masks" and on_dask is not None:
                results[stage] = on_dask(pipeline_id, stage_timeout_s)
            else:
                results[stage] = stage_task(stage, pipeline_id)
        except TimeoutError as exc:  # Prefect's TaskRunTimeoutError names no stage
            if stage_timeout_s is None:
                raise
            raise StageTimedOut(stage, stage_timeout_s) from exc
        update_progress_artifact(
            progress, 100.0 * n / len(selected), description=f"{pipeline_id}: {stage} done"
        )
    rows = [
        {"stage": stage, "metric": name, "value": round(value, 6)}
        for stage, metrics in results.items()
        for name, value in flatten_numbers(metrics).items()
    ]
    create_table_artifact(
        rows or [{"stage": "-", "metric": "-", "value": 0}],
        key="privobfnet-metrics",
        description=f"Final metrics of {pipeline_id} (profile {profile})",
    )
    if "report" in selected:
        publish_tables(pipeline_id)
    if "evaluate" in selected:
        url = publish_evaluate_link(tracking_uri(load_params(), project_root()), mlflow_ui)
        logger.info("evaluate's MLflow run: %s", url or "none found")
    return results
