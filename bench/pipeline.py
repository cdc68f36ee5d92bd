"""Benchmark (not a test): the wall time of each stage of one pipeline run, from the MLflow store.

Every stage execution is an MLflow run nested under its pipeline's parent run, so the store already
holds the timings: this prints each stage run's duration, the sum, and the pipeline's span (first
stage start to last stage end), against the default profile's 15-minute budget. Stages DVC skipped
(unchanged) have no run in that pipeline and are listed as skipped.

    .venv/bin/python bench/pipeline.py                        # the newest pipeline run
    .venv/bin/python bench/pipeline.py --pipeline make-20261129T210801Z-1234
    .venv/bin/python bench/pipeline.py --list                 # the newest pipelines and their spans
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BUDGET_S = 15 * 60


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pipeline", help="a privobfnet.pipeline_id (default: the newest)")
    parser.add_argument("--list", action="store_true", help="list the newest pipeline runs instead")
    args = parser.parse_args(argv)

    import mlflow

    from ops.dvc_stages import stage_order
    from ops.params import load_params
    from ops.tracking import KIND_TAG, STAGE_RUNS, project_root, tag_is, tracking_uri

    cfg = load_params(REPO / "params.yaml")
    mlflow.set_tracking_uri(tracking_uri(cfg, project_root(REPO)))
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    if experiment is None:
        print("no MLflow experiment yet: run `make run` first", file=sys.stderr)
        return 1
    parents = client.search_runs(
        [experiment.experiment_id],
        filter_string=tag_is(KIND_TAG, "pipeline"),
        order_by=["attributes.start_time DESC"],
        max_results=50,
    )
    if args.list:
        for parent in parents:
            span = (
                (parent.info.end_time or parent.info.start_time) - parent.info.start_time
            ) / 1000
            print(
                f"{parent.data.tags['privobfnet.pipeline_id']:<60} profile {parent.data.tags.get('privobfnet.profile')}"
                f"  {parent.info.status:<9} span {span / 60:5.1f} min"
            )
        return 0
    pid = args.pipeline or (parents[0].data.tags["privobfnet.pipeline_id"] if parents else None)
    if pid is None:
        print("no pipeline run in the store", file=sys.stderr)
        return 1
    runs = client.search_runs(
        [experiment.experiment_id],
        max_results=1000,
        filter_string=f"{tag_is('privobfnet.pipeline_id', pid)} and {STAGE_RUNS}",
    )
    by_stage = {
        r.data.tags["privobfnet.stage"]: r for r in sorted(runs, key=lambda r: r.info.start_time)
    }
    print(f"pipeline {pid}")
    total = 0.0
    for stage in stage_order(REPO / "dvc.yaml"):
        run = by_stage.get(stage)
        if run is None or run.info.end_time is None:
            print(f"  {stage:<16} {'skipped' if run is None else run.info.status}")
            continue
        seconds = (run.info.end_time - run.info.start_time) / 1000
        total += seconds
        print(f"  {stage:<16} {seconds:8.1f} s  {run.info.status}")
    if by_stage:
        ends = [r.info.end_time for r in by_stage.values() if r.info.end_time]
        span = (max(ends) - min(r.info.start_time for r in by_stage.values())) / 1000
        print(
            f"  {'sum of stages':<16} {total:8.1f} s\n  {'span':<16} {span:8.1f} s  "
            f"({span / BUDGET_S:.0%} of the 15-minute budget)\n  the span runs from the first stage's "
            "MLflow run to the last one's end: it holds each stage process's start-up (imports, DVC's checks) "
            "except the first one's"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
