"""`make push` / `make pull` (tools.share) and the experiments loop, on a tiny DVC project.

The project has one stage shaped like the pipeline's end (params.yaml with the grids' keys, a
cached output, evaluate's and pseudo_labels' metrics) and the repository's own .dvc/config, so its
default remote is the directory beside the clone. One clone runs the pipeline and one grid row as
`dvc exp run --temp`, pushes data and experiments; a fresh clone of the git remote pulls them, is
up to date without running the stage, lists the experiment and collects it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from privobfnet.report.rows import grid
from tests.conftest import REPO
from tools.collect_ablation import parse_experiments, read_experiments
from tools.experiments import missing_rows, run_command

PARAMS = {
    "profile": "tiny",
    "seed": 0,
    "deeplab": {"labels": "pseudo", "iterations": 10},
    "train": {
        "use_cropped": True,
        "use_privacy": True,
        "use_attribute": True,
        "use_mask_weighting": True,
        "crop_target": "paper",
        "crop_size": 224,
        "loss_weights": {"image": 10.0, "cropped": 1.0},
    },
}
STAGE = """\
import json, os, pathlib, yaml
p = yaml.safe_load(open("params.yaml"))
with open(os.environ["TINY_RUNS_LOG"], "a") as log:
    log.write("ran\\n")
pathlib.Path("out").mkdir(exist_ok=True)
pathlib.Path("out/model.txt").write_text(json.dumps(p["train"], sort_keys=True))
pathlib.Path("reports/metrics").mkdir(parents=True, exist_ok=True)
score = 0.5 + 0.1 * p["train"]["use_cropped"] + 0.01 * p["seed"]
pathlib.Path("reports/metrics/evaluate.json").write_text(json.dumps({"privacy": {"test": {"pearson": score}}}))
pathlib.Path("reports/metrics/pseudo_labels.json").write_text(
    json.dumps({"splits": {"train": {"cam_miou": score / 2, "masks_only_cam_miou": 0.1}}}))
"""


def run(cwd: Path, *args: str, env: dict) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout + done.stderr


def test_push_then_pull_into_a_fresh_clone_needs_no_recomputation(tmp_path, monkeypatch):
    runs = tmp_path / "runs.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TINY_RUNS_LOG": str(runs),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        "DVC_NO_ANALYTICS": "1",
    }
    dvc = (sys.executable, "-m", "dvc")
    share = (sys.executable, "-m", "tools.share")
    origin, first, fresh = tmp_path / "origin.git", tmp_path / "first", tmp_path / "fresh"
    run(tmp_path, "git", "init", "-q", "--bare", "-b", "main", str(origin), env=env)
    run(tmp_path, "git", "init", "-q", "-b", "main", str(first), env=env)
    run(first, *dvc, "init", "-q", env=env)
    (first / ".dvc" / "config").write_text((REPO / ".dvc" / "config").read_text())
    (first / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    (first / "stage.py").write_text(STAGE)
    metrics = ["reports/metrics/evaluate.json", "reports/metrics/pseudo_labels.json"]
    (first / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "evaluate": {
                        "cmd": f"{sys.executable} stage.py",
                        "deps": ["stage.py"],
                        "params": ["seed", "train", "deeplab"],
                        "outs": ["out"],
                        "metrics": [{m: {"cache": False}} for m in metrics],
                    }
                }
            }
        )
    )
    run(first, *dvc, "repro", "-q", env=env)
    run(first, "git", "add", "-A", env=env)
    run(first, "git", "commit", "-qm", "tiny pipeline", env=env)
    run(first, "git", "remote", "add", "origin", str(origin), env=env)
    run(first, "git", "push", "-q", "origin", "main", env=env)

    row = grid("ablation")[0]  # Table 4's first row: all three switches off
    run(first, *dvc[:2], *run_command(row), env=env)  # python -m dvc exp run --temp -S ...
    assert runs.read_text().count("ran") == 2
    out = run(first, *share, "push", env=env)
    assert "+ dvc push" in out and "+ dvc exp push --all-commits origin" in out
    remote = tmp_path / "privobfnet-dvc-remote"  # ../privobfnet-dvc-remote of the clone
    assert remote.is_dir() and any(p.is_file() for p in remote.rglob("*"))

    run(tmp_path, "git", "clone", "-q", str(origin), str(fresh), env=env)
    assert not (fresh / "out").exists()
    run(fresh, *share, "pull", env=env)
    assert "up to date" in run(fresh, *dvc, "status", env=env)
    assert json.loads((fresh / "out" / "model.txt").read_text()) == PARAMS["train"]
    assert runs.read_text().count("ran") == 2  # nothing recomputed in the fresh clone

    monkeypatch.chdir(fresh)  # the pulled experiment, read through dvc.api
    experiments = read_experiments(str(fresh))
    assert [e["params"]["train"]["use_cropped"] for e in experiments] == [False]
    assert missing_rows(grid("ablation"), PARAMS, experiments) == grid("ablation")[1:]
    dry = run(
        fresh, sys.executable, "-m", "tools.experiments", "ablation", "--run", "--dry-run", env=env
    )
    n = len(grid("ablation"))  # the pulled row is done
    assert dry.splitlines()[0] == f"ablation: {n - 1} of {n} experiments to run"
    (row_read,) = parse_experiments(experiments, PARAMS)
    assert row_read["privacy"]["test"]["pearson"] == 0.5 and row_read["cam_miou"] == {"train": 0.25}
    (fresh / "reports").mkdir(exist_ok=True)
    run(fresh, sys.executable, "-m", "tools.collect_ablation", env=env)
    (collected,) = json.loads((fresh / "reports" / "ablation.json").read_text())["experiments"]
    assert collected["name"] == experiments[0]["name"] and collected["switches"] == {
        "use_cropped": False,
        "use_privacy": False,
        "use_attribute": False,
        "use_mask_weighting": True,
    }
