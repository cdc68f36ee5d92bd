"""Command (not a DVC stage): compare the MLflow stage runs of two profiles, experiments or pipelines.

    python -m tools.compare_runs profile:default profile:ci [--stage evaluate] [--grep miou] [--out F]
    make compare A=profile:default B=exp:my-exp

A selector picks, for every stage, the newest finished run whose tag matches:

- ``profile:<name>``   privobfnet.profile (e.g. default, ci, paper_vispr)
- ``exp:<name>``       dvc.exp_name (a ``dvc exp run`` experiment, e.g. from ``make ablation``)
- ``pipeline:<id>``    privobfnet.pipeline_id (one ``make run`` or one Prefect flow run)
- ``run:<run id>``     one MLflow run (compares that stage only)

It prints a Markdown table per stage: the params that differ, then every metric with both values
and the difference B - A. A stage DVC skipped in a pipeline run has no run of that pipeline: use
``profile:`` to get each stage's newest run instead.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from ops.params import load_params
from ops.tracking import KIND_TAG, project_root, tag_is, tracking_uri
from privobfnet.io import atomic_write_text

SELECTOR_TAGS = {
    "profile": "privobfnet.profile",
    "exp": "dvc.exp_name",
    "pipeline": "privobfnet.pipeline_id",
}


class SelectorError(ValueError):
    """A selector that is malformed or matches no run."""


def parse_selector(text: str) -> tuple[str, str]:
    kind, sep, value = text.partition(":")
    if not sep or not value or kind not in (*SELECTOR_TAGS, "run"):
        raise SelectorError(
            f"selector {text!r}: expected one of {', '.join(k + ':<value>' for k in (*SELECTOR_TAGS, 'run'))}"
        )
    return kind, value


def select_runs(client: Any, experiment_id: str, selector: str) -> dict[str, Any]:
    """{stage: newest finished run} for the selector."""
    kind, value = parse_selector(selector)
    if kind == "run":
        run = client.get_run(value)
        return {run.data.tags.get("privobfnet.stage", run.info.run_name): run}
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"{tag_is(SELECTOR_TAGS[kind], value)} and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=5000,
    )
    newest: dict[str, Any] = {}
    for run in runs:
        if run.data.tags.get(KIND_TAG) == "pipeline":
            continue  # the parent run that groups a pipeline's stage runs
        newest.setdefault(run.data.tags.get("privobfnet.stage", run.info.run_name), run)
    if not newest:
        raise SelectorError(
            f"selector {selector!r}: no finished run has {SELECTOR_TAGS[kind]} = {value!r}"
        )
    return newest


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def compare(
    a: dict[str, Any],
    b: dict[str, Any],
    labels: tuple[str, str],
    *,
    stages: list[str] | None = None,
    grep: str | None = None,
    order: list[str] | None = None,
) -> str:
    """The Markdown comparison of two {stage: run} selections."""
    pattern = re.compile(grep) if grep else None
    names = [s for s in (order or []) if s in a or s in b] + sorted(
        (set(a) | set(b)) - set(order or [])
    )
    lines = [f"# MLflow runs: A = `{labels[0]}`, B = `{labels[1]}`", ""]
    for stage in names:
        if stages and stage not in stages:
            continue
        run_a, run_b = a.get(stage), b.get(stage)
        lines += [f"## {stage}", "", f"A: {_run_line(run_a)}  ", f"B: {_run_line(run_b)}", ""]
        if run_a is None or run_b is None:
            continue
        params_a, params_b = run_a.data.params, run_b.data.params
        changed = sorted(
            k for k in set(params_a) | set(params_b) if params_a.get(k) != params_b.get(k)
        )
        if changed:
            lines += ["| param | A | B |", "|---|---|---|"]
            lines += [
                f"| {k} | {_fmt(params_a.get(k))} | {_fmt(params_b.get(k))} |" for k in changed
            ]
        else:
            lines.append("Same params.")
        lines.append("")
        metrics_a, metrics_b = run_a.data.metrics, run_b.data.metrics
        keys = sorted(
            k for k in set(metrics_a) | set(metrics_b) if pattern is None or pattern.search(k)
        )
        if keys:
            lines += ["| metric | A | B | B - A |", "|---|---|---|---|"]
            for key in keys:
                va, vb = metrics_a.get(key), metrics_b.get(key)
                delta = vb - va if va is not None and vb is not None else None
                lines.append(f"| {key} | {_fmt(va)} | {_fmt(vb)} | {_fmt(delta)} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def _run_line(run: Any) -> str:
    if run is None:
        return "no run"
    tags = run.data.tags
    return (
        f"run `{run.info.run_id}`, pipeline `{tags.get('privobfnet.pipeline_id', '-')}`, "
        f"profile `{tags.get('privobfnet.profile', '-')}`, commit `{tags.get('mlflow.source.git.commit', '-')[:8]}`"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("a", help="selector A, e.g. profile:default")
    parser.add_argument("b", help="selector B, e.g. profile:ci or exp:<name>")
    parser.add_argument("--stage", action="append", help="only this stage (repeatable)")
    parser.add_argument("--grep", help="only metrics whose name matches this regular expression")
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    args = parser.parse_args(argv)

    import mlflow
    from mlflow import MlflowClient

    from ops.dvc_stages import stage_order

    cfg = load_params()
    mlflow.set_tracking_uri(tracking_uri(cfg, project_root()))
    client = MlflowClient()
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    if experiment is None:
        print(
            f"no MLflow experiment {cfg.tracking.experiment!r} in {mlflow.get_tracking_uri()}",
            file=sys.stderr,
        )
        return 1
    try:
        a = select_runs(client, experiment.experiment_id, args.a)
        b = select_runs(client, experiment.experiment_id, args.b)
    except SelectorError as error:
        print(error, file=sys.stderr)
        return 2
    order = stage_order() if Path("dvc.yaml").exists() else None
    text = compare(a, b, (args.a, args.b), stages=args.stage, grep=args.grep, order=order)
    print(text, end="")
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
