"""The Prefect flow: the DVC stages of dvc.yaml, in order, one `dvc repro --single-item` each.

DVC stays the one owner of caching and lineage: a stage whose deps did not change is skipped by DVC
itself. The stages run one at a time (parallel `dvc repro` calls fight over DVC's lock). Each
task streams its stage's output into Prefect's logs and fails when the stage fails; a transient
failure (DVC's lock held by another process, the stage killed by a signal) is retried.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.runtime import flow_run

from ops.common import PARAMS_FILE, load_params, resolve_profile, write_params
from ops.stage_order import stage_order
from ops.tracking import PIPELINE_ID_ENV, flatten_numbers

TRANSIENT_MARKERS = ("Unable to acquire lock", "lock is held", "database is locked")
TAIL_LINES = 30


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


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_if_transient, task_run_name="{stage}")
def run_stage(stage: str, pipeline_id: str) -> dict[str, Any]:
    """`dvc repro --single-item <stage>`, its output streamed to the run log; returns its metrics."""
    logger = get_run_logger()
    env = dict(os.environ, **{PIPELINE_ID_ENV: pipeline_id})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.Popen(
        [*_dvc_command(), "repro", "--single-item", stage],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1,
    )
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        logger.info("%s | %s", stage, line)
        tail = (tail + [line])[-TAIL_LINES:]
    returncode = proc.wait()
    if returncode != 0:
        text = "\n".join(tail)
        transient = returncode < 0 or any(m in text for m in TRANSIENT_MARKERS)
        raise StageFailed(stage, returncode, text, transient)
    metrics_file = Path("reports/metrics") / f"{stage}.json"
    return json.loads(metrics_file.read_text()) if metrics_file.exists() else {}


def _use_profile(profile: str) -> None:
    """Write params.yaml from the profile unless it already holds that profile."""
    if not Path(PARAMS_FILE).exists() or load_params().profile != profile:
        write_params(resolve_profile(profile))


@flow(name="privobfnet-pipeline", log_prints=True)
def pipeline(profile: str = "default", stages: list[str] | None = None) -> dict[str, Any]:
    """Run the DVC stages in order on ``profile``; returns {stage: metrics}."""
    logger = get_run_logger()
    _use_profile(profile)
    run_id = flow_run.get_id() or uuid.uuid4().hex
    pipeline_id = f"prefect-{run_id}"
    order = stage_order()
    selected = [s for s in order if stages is None or s in stages]
    unknown = sorted(set(stages or []) - set(order))
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; dvc.yaml has {order}")
    logger.info("pipeline %s: profile %s, stages %s", pipeline_id, profile, selected)
    progress = create_progress_artifact(0.0, key="privobfnet-progress", description=f"{pipeline_id}: starting")
    results: dict[str, Any] = {}
    for n, stage in enumerate(selected, start=1):
        results[stage] = run_stage(stage, pipeline_id)
        update_progress_artifact(progress, 100.0 * n / len(selected), description=f"{pipeline_id}: {stage} done")
    rows = [
        {"stage": stage, "metric": name, "value": round(value, 6)}
        for stage, metrics in results.items()
        for name, value in flatten_numbers(metrics).items()
    ]
    create_table_artifact(rows or [{"stage": "-", "metric": "-", "value": 0}], key="privobfnet-metrics",
                          description=f"Final metrics of {pipeline_id} (profile {profile})")
    return results
