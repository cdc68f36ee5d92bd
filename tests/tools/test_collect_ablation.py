"""Tests of collect_ablation (without DVC; tests/e2e/test_share.py reads experiments of a real project)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import dvc.api
import pytest
import yaml

import tools.collect_ablation as collect
from tools.collect_ablation import (
    EVALUATE_METRICS,
    PSEUDO_LABELS_METRICS,
    configuration,
    listed_experiments,
    parse_experiments,
    unlisted,
)


def test_only_finished_experiments_are_listed(monkeypatch):
    """exp_show's rows as dvc.api gives them: the workspace and the commits are no experiments, nor a queued,
    running or failed run (DVC lists those with the baseline's or a half-written copy's metrics)."""

    def row(name, rev, typ, state=None):
        return {"Experiment": name, "rev": rev, "typ": typ, "State": state, "Created": "12:00 AM"}

    rows = [
        row(None, "workspace", "baseline"),
        row(None, "main", "baseline"),
        row("exp-1", "abc1234", "branch_commit"),
        row("queued", "1111111", "branch_commit", "Queued"),
        row("running", "2222222", "branch_commit", "Running"),
        row("killed", "3333333", "branch_commit", "Failed"),
        row("exp-2", "def5678", "branch_base", "Success"),
        row(None, "older", "baseline"),
    ]
    calls = []
    monkeypatch.setattr(dvc.api, "exp_show", lambda **kw: calls.append(kw) or rows)
    monkeypatch.setattr(collect, "baselines", lambda repo: ["a" * 40, "b" * 40])
    assert listed_experiments("somewhere") == [
        {"name": "exp-1", "rev": "abc1234"},
        {"name": "exp-2", "rev": "def5678"},
    ]
    assert calls == [{"repo": "somewhere", "revs": ["a" * 40, "b" * 40]}]
    monkeypatch.setattr(collect, "baselines", lambda repo: [])
    assert listed_experiments("somewhere") == [] and len(calls) == 1  # no experiment: no exp_show


def test_the_baselines_are_the_commits_of_the_experiment_refs(tmp_path):
    def git(*args):
        return subprocess.run(
            ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@e", *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q")
    git("commit", "-q", "--allow-empty", "-m", "one")
    first = git("rev-parse", "HEAD")
    git("commit", "-q", "--allow-empty", "-m", "two")
    second = git("rev-parse", "HEAD")
    assert collect.baselines(str(tmp_path)) == []
    git("update-ref", f"refs/exps/{first[:2]}/{first[2:]}/exp-a", second)
    git("update-ref", f"refs/exps/{first[:2]}/{first[2:]}/exp-b", second)
    git("update-ref", f"refs/exps/{second[:2]}/{second[2:]}/exp-c", second)
    git("update-ref", "refs/exps/celery/stash", second)  # the queue's, no experiment
    git("update-ref", "refs/exps/exec/EXEC_BASELINE", first)
    assert collect.baselines(str(tmp_path)) == sorted([first, second])


def experiment(name, params, pearson=0.5, cam=None):
    metrics = {EVALUATE_METRICS: {"privacy": {"test": {"pearson": pearson}}}}
    if cam is not None:
        metrics[PSEUDO_LABELS_METRICS] = {
            "splits": {"train": {"cam_miou": cam, "masks_only_cam_miou": 0.1}}
        }
    return {
        "name": name,
        "rev": f"{name}-full-sha",
        "timestamp": "2026-12-02T11:45:01",
        "params": params,
        "metrics": metrics,
    }


def params(seed=2, backbone="lite0", labels="pseudo", iterations=800, use_cropped=True, **train):
    return {
        "profile": "default",
        "seed": seed,
        "deeplab": {"labels": labels, "iterations": iterations, "lr": 0.001},
        "train": {
            "backbone": backbone,
            "use_cropped": use_cropped,
            "use_privacy": True,
            "use_attribute": True,
            "use_mask_weighting": True,
            "crop_target": "paper",
            "crop_size": 224,
            "loss_weights": {"image": 10.0, "cropped": 1.0},
            **train,
        },
    }


def test_parse_experiments_reads_params_and_metrics():
    unfinished = {"name": "no-metrics", "rev": "u", "params": params(), "metrics": {}}
    old_layout = {**experiment("no-switches", {"seed": 1}), "name": "no-switches"}
    shown = [
        experiment("exp-1", params(use_cropped=False), pearson=0.7, cam=0.175),
        unfinished,
        old_layout,
        experiment("exp-2", params(), pearson=0.8, cam=0.2),
        experiment("exp-2", params(), pearson=0.8, cam=0.2),  # listed twice: one row
    ]
    rows = parse_experiments(shown)
    assert sorted(
        (r["name"], r["switches"]["use_cropped"], r["privacy"]["test"]["pearson"]) for r in rows
    ) == [("exp-1", False, 0.7), ("exp-2", True, 0.8)]
    assert sorted(r["cam_miou"]["train"] for r in rows) == [0.175, 0.2]
    assert all(r["seed"] == 2 and r["masks_only_cam_miou"] == {"train": 0.1} for r in rows)
    assert {r["rev"] for r in rows} == {"exp-1-full-sha", "exp-2-full-sha"}
    assert {r["timestamp"] for r in rows} == {"2026-12-02T11:45:01"}
    without_cam = parse_experiments([experiment("e", params())])
    assert without_cam[0]["cam_miou"] == {} and without_cam[0]["deeplab_iterations"] == 800


def test_only_experiments_of_the_workspace_configuration_are_collected():
    """Runs of an older profile (other sizes, another backbone) are no rows of today's tables; runs that differ
    only in the seed, the Table 4 switches, the DeepLab labels, its iterations or Model-Cropped's training are."""
    workspace = params(seed=0)
    shown = [
        experiment("a", params(seed=1)),
        experiment("b", params(seed=2, labels="ground_truth")),
        experiment("c", params(seed=0, use_cropped=False)),
        experiment("old", params(seed=3, backbone="tiny")),
        experiment("short", params(seed=1, iterations=300)),
        experiment(
            "h",
            params(
                seed=1,
                crop_target="l2g",
                crop_size=160,
                loss_weights={"image": 1.0, "cropped": 1.0},
            ),
        ),
    ]
    rows = parse_experiments(shown, workspace)
    assert sorted(r["name"] for r in rows) == ["a", "b", "c", "h", "short"]
    assert [
        (r["crop_target"], r["crop_size"], r["loss_weights"]["image"])
        for r in rows
        if r["name"] == "h"
    ] == [("l2g", 160, 1.0)]
    assert {r["configuration"] for r in rows} == {configuration(workspace)}
    assert [r["deeplab_iterations"] for r in rows if r["name"] == "short"] == [300]
    assert len(parse_experiments(shown)) == 6  # without a reference: every finished run


def test_rows_whose_experiment_is_not_listed_are_named_before_they_are_dropped():
    """A clone that has not pulled the experiments lists none of the committed rows: the collector names them
    (it stops unless told to drop them). Rows of another configuration are no loss."""
    reference = params(seed=0)
    committed = parse_experiments(
        [
            experiment("kept", params(seed=1)),
            experiment("gone", params(seed=2)),
            experiment("tiny", params(seed=1, backbone="tiny")),
        ]
    )
    listed = parse_experiments([experiment("kept", params(seed=1)), experiment("new", params())])
    assert [r["name"] for r in unlisted(committed, listed, reference)] == ["gone"]
    assert unlisted(committed, committed, reference) == []
    assert [r["name"] for r in unlisted(committed, [], reference)] == ["kept", "gone"]


def test_main_stops_rather_than_drop_unlisted_rows(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params(seed=0)))
    (tmp_path / "reports").mkdir()
    committed = parse_experiments([experiment("gone", params(seed=1))], params(seed=0))
    ablation = tmp_path / "reports" / "ablation.json"
    ablation.write_text(json.dumps({"experiments": committed}))
    listed = [experiment("new", params(seed=2))]
    monkeypatch.setattr(collect, "read_experiments", lambda repo=".": listed)

    assert collect.main([]) == 1
    assert (
        "gone" in capsys.readouterr().err
        and json.loads(ablation.read_text())["experiments"] == committed
    )
    assert collect.main(["--check", "--drop-unlisted"]) == 0
    assert json.loads(ablation.read_text())["experiments"] == committed  # --check writes nothing
    assert collect.main(["--drop-unlisted"]) == 0
    assert [r["name"] for r in json.loads(ablation.read_text())["experiments"]] == ["new"]
    ablation.write_text("[]")
    assert collect.main([]) == 1
    assert "not an ablation file" in capsys.readouterr().err


def test_keep_unlisted_keeps_the_files_rows_beside_the_listed_ones(tmp_path, monkeypatch, capsys):
    """Where the experiment refs are gone (a fresh clone without a git remote), the committed rows stay beside
    the new ones; a listed run of the same params as a kept row supersedes it rather than counting twice."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params(seed=0)))
    (tmp_path / "reports").mkdir()
    committed = parse_experiments(
        [experiment("gone", params(seed=1)), experiment("rerun", params(seed=2))], params(seed=0)
    )
    ablation = tmp_path / "reports" / "ablation.json"
    ablation.write_text(json.dumps({"experiments": committed}))
    listed = [experiment("new", params(seed=0)), experiment("rerun-again", params(seed=2))]
    monkeypatch.setattr(collect, "read_experiments", lambda repo=".": listed)

    assert collect.main(["--check", "--keep-unlisted"]) == 0
    assert "1 kept" in capsys.readouterr().out
    assert json.loads(ablation.read_text())["experiments"] == committed
    assert collect.main(["--keep-unlisted"]) == 0
    rows = json.loads(ablation.read_text())["experiments"]
    assert sorted(r["name"] for r in rows) == ["gone", "new", "rerun-again"]
    assert [r for r in rows if r["name"] == "gone"] == committed[:1]  # kept as it was
    with pytest.raises(SystemExit):
        collect.main(["--keep-unlisted", "--drop-unlisted"])


def test_an_experiment_that_stopped_at_a_stage_is_stale_from_the_stages_it_did_not_run():
    """`dvc exp run --temp -S train.priors=coarse pseudo_labels` commits the baseline's evaluate metrics: the stages
    whose locked params are not the experiment's are named, so its metrics are not collected as its own."""
    params = {"seed": 1, "train": {"priors": "coarse", "lr": 0.1}, "deeplab": {"iterations": 8}}
    lock = {
        "schema": "2.0",
        "stages": {
            "download": {"params": {"params.yaml": {"seed": 1}}},
            "train_ensemble": {"params": {"params.yaml": {"seed": 1, "train": params["train"]}}},
            "weights": {"deps": []},
            "report": {
                "params": {"params.yaml": {"train": {"priors": "refined", "lr": 0.1}, "seed": 1}}
            },
            "evaluate": {"params": {"params.yaml": {"deeplab.iterations": 8, "gone.key": 1}}},
        },
    }
    assert collect.stale_stages(lock, params) == ["report", "evaluate"]
    lock["stages"]["report"]["params"]["params.yaml"]["train"]["priors"] = "coarse"
    del lock["stages"]["evaluate"]["params"]["params.yaml"]["gone.key"]
    assert collect.stale_stages(lock, params) == []


def test_an_experiment_of_older_code_is_outdated_from_the_stages_whose_code_deps_changed(tmp_path):
    """A stage whose locked md5 of a code dep is not the file's now ran other code; data deps (DVC outputs, or a
    tracked file such as reports/ablation.json) and deps without an md5 are not compared."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    for folder in ("stages", "privobfnet", "reports"):
        (tmp_path / folder).mkdir()
    (tmp_path / "stages" / "train.py").write_text("print('train')\n")
    (tmp_path / "privobfnet" / "lib.py").write_text("X = 1\n")
    (tmp_path / "reports" / "ablation.json").write_text("{}")
    (tmp_path / "data.bin").write_bytes(b"not tracked")
    tracked = ["stages/train.py", "privobfnet/lib.py", "reports/ablation.json"]
    subprocess.run(["git", "add", *tracked], cwd=tmp_path, check=True)

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    lock = {
        "stages": {
            "train": {"deps": [{"path": "stages/train.py", "md5": md5("print('train')\n")}]},
            "report": {
                "deps": [
                    {"path": "privobfnet/lib.py", "md5": md5("X = 0\n")},  # it ran X = 0
                    {"path": "data.bin", "md5": "0" * 32},
                ]
            },
            "download": {
                "deps": [
                    {"path": "data.bin", "md5": "0" * 32},
                    {"path": "reports/ablation.json", "md5": md5("[]")},  # data, collected since
                    {"path": "privobfnet/lib.py"},
                ]
            },
        }
    }
    assert collect.outdated_stages(lock, str(tmp_path)) == ["report"]
    (tmp_path / "privobfnet" / "lib.py").write_text("X = 0\n")
    assert collect.outdated_stages(lock, str(tmp_path)) == []
    (tmp_path / "privobfnet" / "lib.py").unlink()  # a dep the workspace no longer has: other code
    assert collect.outdated_stages(lock, str(tmp_path)) == ["report"]


def test_a_folder_dep_is_compared_by_the_md5_dvc_locked_for_it(tmp_path):
    """A code folder (the mask-type tables) ran other code when a file in it changed since: its workspace md5 is
    DVC's own ``<md5>.dir``, checked against the dvc.lock a real ``dvc repro`` wrote."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "-q"], cwd=tmp_path, check=True)
    tables = tmp_path / "privobfnet" / "data" / "mask_types"
    tables.mkdir(parents=True)
    (tables / "synthpriv.tsv").write_text(
        "attribute\tcoarse\trefined\na9_face_complete\thuman\tface\n"
    )
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  masks:\n    cmd: echo masks\n    deps:\n      - privobfnet/data/mask_types\n"
    )
    subprocess.run([*dvc, "repro", "-q"], cwd=tmp_path, check=True, capture_output=True)
    lock = yaml.safe_load((tmp_path / "dvc.lock").read_text())
    assert lock["stages"]["masks"]["deps"][0]["md5"].endswith(".dir")
    assert collect.outdated_stages(lock, str(tmp_path)) == []
    (tables / "synthpriv.tsv").write_text(
        "attribute\tcoarse\trefined\na9_face_complete\thuman\thuman\n"
    )
    assert collect.outdated_stages(lock, str(tmp_path)) == ["masks"]
