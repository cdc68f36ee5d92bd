"""Command (not a DVC stage): collect the finished DVC experiments into reports/ablation.json.

    python -m tools.collect_ablation           # write the experiments DVC lists
    python -m tools.collect_ablation --check   # exit 1 if a collection would drop committed rows

`make ablation` runs one `dvc exp run --temp` per row of the paper's Table 4 (the switches
train.use_cropped / use_privacy / use_attribute), `make seeds` three seeds of the ensemble, the
single model and the ground-truth ceiling, `make hypotheses` three seeds of each variant of
Model-Cropped's training (crop target, crop size, loss weight) (``tools.experiments``); then this
reads every finished experiment through DVC's Python API: ``dvc.api.exp_show`` lists the
experiments of every commit that has some, ``dvc.api.params_show`` and ``dvc.api.metrics_show``
read each one's params and metrics, typed (exp_show's table has them as text). The report stage
depends on reports/ablation.json, so `dvc repro` rewrites tables.md when new rows arrive; it groups
runs that differ only in their seed (``privobfnet.report.seeds``).

The file holds the experiments DVC lists, of the workspace's configuration. Experiments are git
refs, shared through the git remote (`make push` / `make pull`: `dvc exp push/pull origin`); a
clone that has not pulled them lists none, so a collection that would drop rows of the file whose
experiments DVC does not list stops, naming them, unless ``--drop-unlisted`` says to drop them or
``--keep-unlisted`` to keep them beside the listed ones (where the refs are gone: the rows were
checked against the workspace's code when they were collected).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

import yaml

from ops.outputs import ABLATION_FILE, PARAMS_FILE, metrics_file
from privobfnet.io import atomic_write_text, file_digest, json_digest
from privobfnet.report.rows import SWITCHES, varied_keys

EVALUATE_METRICS = str(metrics_file("evaluate"))  # reports/metrics/evaluate.json
PSEUDO_LABELS_METRICS = str(metrics_file("pseudo_labels"))
# exp_show's "typ" of an experiment (a commit is a "baseline")
EXPERIMENT_ROWS = ("branch_commit", "branch_base")
FINISHED = (None, "Success")  # exp_show's "State": queued, running and failed runs are no rows


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


def run_fields(params: dict) -> dict:
    """What a row records of its params: the configuration's fingerprint and the values the grids vary. Two runs
    with equal fields ran the same pipeline (``run_key``)."""
    train = params.get("train", {})
    return {
        "configuration": configuration(params),
        "profile": params.get("profile"),
        "seed": params.get("seed"),
        "switches": {key: bool(train[key]) for key in SWITCHES if key in train},
        "deeplab_labels": params.get("deeplab", {}).get("labels"),
        "deeplab_iterations": params.get("deeplab", {}).get("iterations"),
        "crop_target": train.get("crop_target"),
        "crop_size": train.get("crop_size"),
        "loss_weights": train.get("loss_weights"),
        # the CAMs' priors (train.priors); runs from before the setting were coarse
        "priors": train.get("priors", "coarse"),
    }


RUN_FIELDS = tuple(run_fields({"train": {}}))


def run_key(row: dict) -> str:
    """A collected row's ``run_fields`` (or ``run_fields(params)``) as one string: equal keys, the same run."""
    return json.dumps({key: row.get(key) for key in RUN_FIELDS}, sort_keys=True)


def parse_experiments(experiments: list[dict], reference: dict | None = None) -> list[dict]:
    """Finished experiments (``read_experiments``: name, rev, timestamp, params, metrics by file) -> rows
    [{name, seed, switches, profile, metrics, ...}]: evaluate's metrics, pseudo_labels' CAM mIoU and its masks-only
    baseline. With ``reference`` (params.yaml), only experiments of its configuration."""
    rows = []
    wanted = None if reference is None else configuration(reference)
    for experiment in experiments:
        params = experiment.get("params") or {}
        files = experiment.get("metrics") or {}
        metrics = files.get(EVALUATE_METRICS)
        pseudo = files.get(PSEUDO_LABELS_METRICS) or {}
        train = params.get("train", {})
        if not metrics or not all(key in train for key in SWITCHES):
            continue
        run = run_fields(params)
        if wanted is not None and run["configuration"] != wanted:
            continue  # another configuration (an older commit's profile, other sizes): not a row of these tables
        rows.append(
            {
                **run,
                "name": experiment.get("name") or (experiment.get("rev") or "")[:7],
                "rev": experiment.get("rev"),
                "timestamp": experiment.get("timestamp"),
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


def baselines(repo: str = ".") -> list[str]:
    """The commits that have experiments: DVC keeps each experiment as the git ref
    ``refs/exps/<baseline sha[:2]>/<baseline sha[2:]>/<name>`` (its temporary and queue refs lie elsewhere)."""
    done = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/exps/"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    found = set()
    for ref in done.stdout.split():
        parts = ref.split("/")
        if (
            len(parts) == 5
            and re.fullmatch(r"[0-9a-f]{2}", parts[2])
            and re.fullmatch(r"[0-9a-f]{38}", parts[3])
        ):
            found.add(parts[2] + parts[3])
    return sorted(found)


def listed_experiments(repo: str = ".") -> list[dict]:
    """The finished experiments ``dvc.api.exp_show`` lists for the commits that have experiments (``baselines``,
    like `dvc exp show --all-commits` but without reading every other commit): [{name, rev}] (rev abbreviated, as
    exp_show gives it). Neither the workspace nor the commits themselves: a commit's metrics can predate its params
    (a profile edited and committed before the pipeline re-ran). Nor a queued, running or failed experiment: DVC
    lists it with the baseline's metrics, or its temporary copy's before it writes its own."""
    import dvc.api

    revs = baselines(repo)
    if not revs:
        return []
    return [
        {"name": row.get("Experiment"), "rev": row["rev"]}
        for row in dvc.api.exp_show(repo=repo, revs=revs)
        if row.get("typ") in EXPERIMENT_ROWS and row.get("State") in FINISHED
    ]


def read_experiment(listed: dict, repo: str = ".") -> dict:
    """One listed experiment's full rev, commit time, params.yaml and the two metrics files the rows read
    (``dvc.api.params_show`` / ``metrics_show``, one file each, so their keys stay as in the file)."""
    import dvc.api
    from dvc.exceptions import DvcException

    done = subprocess.run(
        [
            "git",
            "log",
            "-1",
            "--date=format-local:%Y-%m-%dT%H:%M:%S",
            "--format=%H %cd",
            listed["rev"],
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    rev, timestamp = done.stdout.split()
    metrics = {}
    for path in (EVALUATE_METRICS, PSEUDO_LABELS_METRICS):
        try:
            metrics[path] = dvc.api.metrics_show(path, repo=repo, rev=rev)
        except (
            DvcException,
            FileNotFoundError,
        ):  # not written by this run: no row, or no CAM numbers
            metrics[path] = None
    params = dvc.api.params_show(str(PARAMS_FILE), repo=repo, rev=rev)
    return {
        "name": listed["name"],
        "rev": rev,
        "timestamp": timestamp,
        "params": params,
        "metrics": metrics,
    }


_ABSENT = object()  # a key params.yaml does not have


def _param(params: dict, dotted: str):
    """``params``' value at a dvc.lock key (``train``, ``masks.out_dir``), or ``_ABSENT``."""
    node = params
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return _ABSENT
        node = node[key]
    return node


def stale_stages(lock: dict, params: dict) -> list[str]:
    """The stages of a dvc.lock whose recorded params.yaml values are not ``params``: stages an experiment did not
    run with its own params (``dvc exp run --temp -S ... <stage>`` stops after that stage and commits the others'
    outputs, metrics included, as the baseline left them)."""
    return [
        name
        for name, stage in (lock.get("stages") or {}).items()
        if any(
            _param(params, key) != value
            for key, value in ((stage.get("params") or {}).get(str(PARAMS_FILE)) or {}).items()
        )
    ]


def folder_md5(repo: str, path: str) -> str:
    """DVC's md5 of the folder ``path`` in ``repo`` now, as dvc.lock records a folder dep (``<md5>.dir``: the
    digest of its files' list), computed by DVC's own hashing with the repo's .dvcignore; nothing is cached."""
    from dvc.repo import Repo
    from dvc_data.hashfile.build import build

    with Repo(repo) as dvc_repo:
        _, _, tree = build(
            dvc_repo.cache.repo,
            os.path.join(dvc_repo.root_dir, path),
            dvc_repo.fs,
            "md5",
            ignore=dvc_repo.dvcignore,
            dry_run=True,
        )
    return tree.hash_info.value


def workspace_md5(repo: str = ".") -> Callable[[str], str | None]:
    """``path`` -> the md5 of that file or folder (``folder_md5``) in ``repo`` now (None when it has neither), each
    read once."""
    digests: dict[str, str | None] = {}

    def md5(path: str) -> str | None:
        if path not in digests:
            target = Path(repo) / path
            if target.is_file():
                digests[path] = file_digest(target, "md5")
            elif target.is_dir():
                digests[path] = folder_md5(repo, path)
            else:
                digests[path] = None
        return digests[path]

    return md5


def outdated_stages(
    lock: dict, repo: str = ".", md5: Callable[[str], str | None] | None = None
) -> list[str]:
    """The stages of a dvc.lock that ran other code than the workspace's: a code file or folder among its deps (a
    project .py file, a folder of them or a resource such as the mask-type tables, ``tools.dvc_deps.is_code``) whose
    locked md5 is not the file's md5 in ``repo`` now (``md5``:
    ``workspace_md5(repo)`` unless given), or which the workspace no longer has. An experiment of older code
    measured something the workspace no longer computes, whatever its params (DVC's md5 of a file is its bytes').
    Data deps (``reports/ablation.json``, DVC outputs) are not compared."""
    from tools.dvc_deps import is_code

    md5 = md5 or workspace_md5(repo)
    return [
        name
        for name, stage in (lock.get("stages") or {}).items()
        if any(
            dep.get("md5") and is_code(dep["path"], Path(repo)) and dep["md5"] != md5(dep["path"])
            for dep in stage.get("deps") or []
        )
    ]


def read_experiments(repo: str = ".") -> list[dict]:
    """Every finished experiment DVC lists, read (``read_experiment``), less those that did not run the whole
    pipeline with their params (``stale_stages``: their metrics would be another run's) or ran older code than
    the workspace's (``outdated_stages``), each named on stderr."""
    from dvc.utils.serialize import parse_yaml

    experiments = []
    md5 = workspace_md5(repo)  # the workspace's code, read once for every experiment
    for listed in listed_experiments(repo):
        experiment = read_experiment(listed, repo)
        lock = subprocess.run(
            ["git", "show", f"{experiment['rev']}:dvc.lock"],
            cwd=repo,
            capture_output=True,
            text=True,
        )
        # DVC's own YAML reader, as for params.yaml (PyYAML reads 1e-05 as a string)
        locked = (parse_yaml(lock.stdout, "dvc.lock") if lock.stdout else None) or {}
        stale = stale_stages(locked, experiment["params"])
        outdated = [] if stale else outdated_stages(locked, repo, md5)
        if lock.returncode or stale or outdated:
            if stale:
                why = f"stages {', '.join(stale)} did not run with its params"
            elif outdated:
                why = f"stages {', '.join(outdated)} ran other code than the workspace's"
            else:
                why = "no dvc.lock"
            print(
                f"skipped experiment {experiment['name']} ({experiment['rev'][:7]}): {why}",
                file=sys.stderr,
            )
            continue
        experiments.append(experiment)
    return experiments


def unlisted(collected: list[dict], rows: list[dict], reference: dict) -> list[dict]:
    """Rows already in reports/ablation.json, of the reference's configuration, whose experiment DVC does not list:
    a collection now would drop them (in a clone that has not pulled the experiments, all of them)."""
    listed, wanted = {row["name"] for row in rows}, configuration(reference)
    return [
        row
        for row in collected
        if row.get("configuration") == wanted and row.get("name") not in listed
    ]


def collected_rows() -> list[dict]:
    """The rows reports/ablation.json holds ([] when there is none); ValueError naming the file when it is no
    ablation file."""
    if not ABLATION_FILE.exists():
        return []
    try:
        rows = json.loads(ABLATION_FILE.read_text())["experiments"]
        if not isinstance(rows, list):
            raise TypeError(f"'experiments' is a {type(rows).__name__}, not a list")
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{ABLATION_FILE}: not an ablation file ({error!r}); fix or remove it"
        ) from error
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.collect_ablation", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if rows would be dropped"
    )
    parser.add_argument(
        "--drop-unlisted",
        action="store_true",
        help="drop the rows whose experiment DVC does not list (they are not in this clone)",
    )
    parser.add_argument(
        "--keep-unlisted",
        action="store_true",
        help="keep the rows whose experiment DVC does not list (collected in another clone) beside what it lists",
    )
    args = parser.parse_args(argv)
    if args.drop_unlisted and args.keep_unlisted:
        parser.error("--drop-unlisted and --keep-unlisted exclude each other")
    reference = yaml.safe_load(PARAMS_FILE.read_text())
    try:
        collected = collected_rows()
    except ValueError as error:
        print(error, file=sys.stderr)
        return 1
    rows = parse_experiments(read_experiments(), reference)
    dropped = unlisted(collected, rows, reference)
    kept = 0
    if dropped and args.keep_unlisted:  # a listed run of the same params supersedes the file's row
        listed = {run_key(row) for row in rows}
        unique = [row for row in dropped if run_key(row) not in listed]
        rows, kept, dropped = rows + unique, len(unique), []
    if dropped and not args.drop_unlisted:
        names = ", ".join(sorted(str(row.get("name")) for row in dropped))
        print(
            f"{ABLATION_FILE}: {len(dropped)} rows of this configuration are experiments DVC does not list "
            f"({names}): `make pull` fetches the experiments from the git remote origin; "
            f"`python -m tools.collect_ablation --keep-unlisted` keeps them beside what DVC lists, "
            f"`--drop-unlisted` writes only what DVC lists",
            file=sys.stderr,
        )
        return 1
    if args.check:
        print(
            f"{ABLATION_FILE}: {len(rows) - kept} finished experiments listed, none of the file's would be dropped"
            + (f" ({kept} kept that DVC does not list)" if kept else "")
        )
        return 0
    atomic_write_text(
        ABLATION_FILE, json.dumps({"experiments": rows}, indent=2, sort_keys=True) + "\n"
    )
    print(
        f"{ABLATION_FILE}: {len(rows) - kept} finished experiments of this configuration listed by DVC"
        + (f" ({len(dropped)} rows DVC does not list dropped)" if dropped else "")
        + (f" and {kept} rows of the file DVC does not list, kept" if kept else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
