"""An experiment grid (``privobfnet.report.rows``) as ``dvc exp run`` overrides, or run one after another.

    python -m tools.experiments ablation                 # -S train.use_cropped=false -S ... (one line a run)
    python -m tools.experiments ablation --run           # dvc exp run --temp of each row DVC does not list yet
    python -m tools.experiments ablation --run --all     # of every row, listed or not
    python -m tools.experiments ablation --run --dry-run # print those commands, run nothing
    python -m tools.experiments ablation --run --keep-unlisted  # rows reports/ablation.json holds are done too

The Makefile's ``ablation``, ``seeds`` and ``hypotheses`` targets call ``--run``, so the rows are
defined once, beside the report that reads them back. Each row is one ``dvc exp run --temp`` (a
whole pipeline in a temporary copy, in the foreground): no queue, no worker. A row counts as done
when DVC lists a finished experiment of it (``tools.collect_ablation.read_experiments``) whose
params.yaml is the workspace's with the row's overrides, and evaluate's metrics; so running a
target again after an interruption (or a failed row) runs only what is missing.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shlex
import subprocess
import sys
from typing import Any, Callable

import yaml

from ops.outputs import PARAMS_FILE
from privobfnet.io import json_digest
from privobfnet.report.rows import grid


def override(key: str, value) -> str:
    """One ``key=value`` in the YAML spelling DVC's ``--set-param`` reads (plain words unquoted, so
    that a printed line splits into shell words as it is)."""
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z_][\w.-]*", value):
        return f"{key}={value}"
    return f"{key}={json.dumps(value)}"


def run_command(row: dict[str, Any]) -> list[str]:
    """``dvc exp run --temp -S key=value ...`` of one row."""
    sets = [arg for key, value in row.items() for arg in ("-S", override(key, value))]
    return ["dvc", "exp", "run", "--temp", *sets]


def expected_params(reference: dict, row: dict[str, Any]) -> dict:
    """params.yaml as the row's experiment runs it: the reference with the row's dotted overrides set."""
    params = copy.deepcopy(reference)
    for dotted, value in row.items():
        *sections, key = dotted.split(".")
        node = params
        for section in sections:
            node = node.setdefault(section, {})
        node[key] = value
    return params


def missing_rows(
    rows: list[dict], reference: dict, experiments: list[dict], collected: list[dict] = ()
) -> list[dict]:
    """The rows no finished experiment (with evaluate's metrics) ran: ``experiments`` as
    ``read_experiments`` gives them; an experiment is a row's when its params.yaml is the row's whole.
    ``collected``: rows of reports/ablation.json also taken as done (``--keep-unlisted``), matched by
    what a row records of its params (``run_key``)."""
    from tools.collect_ablation import EVALUATE_METRICS, run_fields, run_key

    done = {
        json_digest(e["params"])
        for e in experiments
        if (e.get("metrics") or {}).get(EVALUATE_METRICS) and e.get("params")
    }
    kept = {run_key(row) for row in collected}
    return [
        row
        for row in rows
        if json_digest(params := expected_params(reference, row)) not in done
        and run_key(run_fields(params)) not in kept
    ]


def workspace_clean() -> bool:
    """Whether `dvc status` finds every stage of the workspace up to date (its outputs are its params' and code's)."""
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"], capture_output=True, text=True
    )
    return done.returncode == 0 and json.loads(done.stdout or "{}") == {}


def workspace_row(rows: list[dict], reference: dict, clean: Callable[[], bool]) -> dict | None:
    """The row whose params are the workspace's, when the workspace's pipeline is up to date: `make run` already
    computed it, so ``dvc exp save`` records it as that row's experiment instead of a second run of the same
    pipeline. None when no row is the workspace's, or the workspace is not up to date."""
    own = json_digest(reference)
    for row in rows:
        if json_digest(expected_params(reference, row)) == own:
            return row if clean() else None
    return None


def run_grid(
    name: str,
    *,
    run_all: bool = False,
    dry_run: bool = False,
    read_experiments: Callable[[], list[dict]] | None = None,
    execute: Callable[[list[str]], int] | None = None,
    is_clean: Callable[[], bool] = workspace_clean,
    keep_unlisted: bool = False,
) -> int:
    """Run the grid's rows one after another (the missing ones unless ``run_all``); a failed row
    does not stop the others; the row the workspace already ran (``workspace_row``) is saved, not run
    again. -> 0, or 1 when a row failed."""
    rows = grid(name)
    todo, saved = rows, None
    if not run_all:
        if read_experiments is None:
            from tools.collect_ablation import read_experiments
        reference = yaml.safe_load(PARAMS_FILE.read_text())
        from tools.collect_ablation import collected_rows

        todo = missing_rows(
            rows, reference, read_experiments(), collected_rows() if keep_unlisted else []
        )
        saved = workspace_row(todo, reference, is_clean)
    print(f"{name}: {len(todo)} of {len(rows)} experiments to run", flush=True)
    execute = execute or (lambda command: subprocess.run(command).returncode)
    failed = []
    for row in todo:
        command = run_command(row)
        if row is saved:  # the workspace already ran this row: keep its results, run nothing
            command = ["dvc", "exp", "save", "-n", f"{name}-workspace-seed{row.get('seed', 0)}"]
        print(("" if dry_run else "+ ") + shlex.join(command), flush=True)
        if not dry_run and execute([sys.executable, "-m", *command]) != 0:
            failed.append(command)
    for command in failed:
        print(f"failed: {shlex.join(command)}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.experiments", description=__doc__.split("\n")[0]
    )
    parser.add_argument("grid", help="ablation, seeds or hypotheses")
    parser.add_argument("--run", action="store_true", help="run the rows (dvc exp run --temp each)")
    parser.add_argument(
        "--all", action="store_true", help="with --run: every row, also those DVC lists"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="with --run: print the commands only"
    )
    parser.add_argument(
        "--keep-unlisted",
        action="store_true",
        help="with --run: rows reports/ablation.json holds count as done, listed by DVC or not",
    )
    args = parser.parse_args(argv)
    try:
        rows = grid(args.grid)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.run:
        try:
            return run_grid(
                args.grid, run_all=args.all, dry_run=args.dry_run, keep_unlisted=args.keep_unlisted
            )
        except ValueError as exc:  # reports/ablation.json is no ablation file
            print(f"error: {exc}", file=sys.stderr)
            return 2
    for row in rows:
        print(" ".join(f"-S {override(key, value)}" for key, value in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
