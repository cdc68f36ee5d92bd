"""Command (not a DVC stage): collect the finished experiments into reports/ablation.json.

`make ablation` queues one `dvc exp run` per row of the paper's Table 4 (the switches
train.use_cropped / use_privacy / use_attribute), `make seeds` three seeds of the ensemble, the
single model and the ground-truth ceiling, `make hypotheses` three seeds of each variant of
Model-Cropped's training (crop target, crop size, loss weight); all run the queue, then call this to read every
finished experiment's params (switches, seed) and metrics from `dvc exp show --json`. The report
stage depends on reports/ablation.json, so `dvc repro` rewrites tables.md when new rows arrive;
it groups runs that differ only in their seed (``privobfnet.report.seeds``). DVC keeps experiments as local git refs, so
the rows already in reports/ablation.json that are of today's configuration stay: a fresh clone, which lists no
experiment, keeps the committed results and adds its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Iterator

import yaml

from ops.outputs import ABLATION_FILE, PARAMS_FILE
from privobfnet.io import atomic_write_text, json_digest
from privobfnet.report.rows import SWITCHES, varied_keys


def _walk(node: Any, inside: bool = False) -> Iterator[dict]:
    """Every experiment record (with data.params / data.metrics) under an ``experiments`` key of `dvc exp show
    --json` output. The workspace and the commits themselves are no rows: a commit's metrics can predate its
    params (a profile edited and committed before the pipeline re-ran), which made an old tiny run pass for the
    seed-0 ensemble of the lite0 profile. Nor is an experiment whose executor is queued, running or failed (a
    killed run): DVC lists it with the baseline's metrics, or its temporary copy's before it writes its own."""
    if isinstance(node, dict):
        if (node.get("executor") or {}).get("state") not in (None, "success"):
            return
        if inside and isinstance(node.get("data"), dict) and "params" in node["data"]:
            yield node
        for key, value in node.items():
            yield from _walk(value, inside or key == "experiments")
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value, inside)


VARIED = tuple(varied_keys())  # what the runs of one configuration change
# recorded per row, not part of the configuration: DeepLab's training length changes only the DeepLab numbers, so a
# run at other iterations still gives its CAMs, attributes and privacy scores; the report reads its DeepLab mIoU
# only at the profile's iterations
RECORDED = (("deeplab", "iterations"),)


def _fixed_params(params: dict) -> dict:
    """params.yaml less the keys `make ablation`, `make seeds` and `make hypotheses` vary (and those only recorded):
    equal for runs of one configuration."""
    fixed = json.loads(json.dumps(params))
    for *sections, key in VARIED + RECORDED:
        node = fixed
        for section in sections:
            node = node.get(section, {})
        node.pop(key, None)
    return fixed


def configuration(params: dict) -> str:
    """A short fingerprint of ``_fixed_params``: rows with equal fingerprints are runs of one configuration."""
    return json_digest(_fixed_params(params))


def parse_experiments(exp_show: Any, reference: dict | None = None) -> list[dict]:
    """Finished experiments -> [{name, seed, switches, profile, metrics}]: evaluate's metrics, pseudo_labels' CAM
    mIoU and its masks-only baseline."""
    rows = []
    wanted = None if reference is None else configuration(reference)
    for record in _walk(exp_show):
        data = record["data"]
        params = (data.get("params") or {}).get("params.yaml", {}).get("data", {})
        files = data.get("metrics") or {}
        metrics = files.get("reports/metrics/evaluate.json", {}).get("data")
        pseudo = files.get("reports/metrics/pseudo_labels.json", {}).get("data") or {}
        train = params.get("train", {})
        if not metrics or not all(key in train for key in SWITCHES):
            continue
        fingerprint = configuration(params)
        if wanted is not None and fingerprint != wanted:
            continue  # another configuration (an older commit's profile, other sizes): not a row of these tables
        rows.append(
            {
                "configuration": fingerprint,
                "name": record.get("name") or data.get("rev", "")[:7],
                "rev": data.get("rev"),
                "timestamp": data.get("timestamp"),
                "profile": params.get("profile"),
                "seed": params.get("seed"),
                "switches": {key: bool(train[key]) for key in SWITCHES},
                "deeplab_labels": params.get("deeplab", {}).get("labels"),
                "deeplab_iterations": params.get("deeplab", {}).get("iterations"),
                "crop_target": train.get("crop_target"),
                "crop_size": train.get("crop_size"),
                "loss_weights": train.get("loss_weights"),
                "privacy": metrics.get("privacy", {}),
                "attributes": metrics.get("attributes", {}),
                "segmentation": metrics.get("segmentation", {}),
                "cam_miou": {
                    split: scores.get("cam_miou")
                    for split, scores in (pseudo.get("splits") or {}).items()
                },
                "masks_only_cam_miou": {
                    split: scores.get("masks_only_cam_miou")
                    for split, scores in (pseudo.get("splits") or {}).items()
                },
            }
        )
    return _unique(rows)


def _unique(rows: list[dict]) -> list[dict]:
    """An experiment listed under two commits, re-run from the run cache or collected twice holds the same results:
    keep one (the last listed)."""
    unique = {
        json.dumps(
            {k: v for k, v in row.items() if k not in ("name", "rev", "timestamp")}, sort_keys=True
        ): row
        for row in rows
    }
    return list(unique.values())


def merge(collected: list[dict], rows: list[dict], reference: dict) -> tuple[list[dict], int]:
    """Rows already collected (reports/ablation.json) that are of the reference's configuration and that DVC no
    longer lists (what it lists now replaces its earlier row), then the rows collected now. DVC keeps experiments
    as local git refs: a fresh clone lists none, and without the committed rows a collection there would empty the
    tables. -> (rows, how many earlier rows were kept)"""
    listed, wanted = {row["name"] for row in rows}, configuration(reference)
    kept = [
        row
        for row in collected
        if row.get("configuration") == wanted and row.get("name") not in listed
    ]
    return _unique(kept + rows), len(kept)


def main() -> int:
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "show", "--json", "--all-commits"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        return done.returncode
    reference = yaml.safe_load(PARAMS_FILE.read_text())
    listed = parse_experiments(json.loads(done.stdout or "[]"), reference)
    try:
        collected = (
            json.loads(ABLATION_FILE.read_text())["experiments"] if ABLATION_FILE.exists() else []
        )
    except (ValueError, KeyError, TypeError) as error:
        print(
            f"{ABLATION_FILE}: not an ablation file ({error!r}); fix or remove it", file=sys.stderr
        )
        return 1
    rows, kept = merge(collected, listed, reference)
    atomic_write_text(
        ABLATION_FILE, json.dumps({"experiments": rows}, indent=2, sort_keys=True) + "\n"
    )
    print(
        f"{ABLATION_FILE}: {len(rows)} finished experiments ({len(listed)} listed by `dvc exp show`, {kept} of "
        f"{len(collected)} already collected kept: the others are listed again or of another configuration)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
