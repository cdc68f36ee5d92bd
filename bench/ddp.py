"""Benchmark (not a test): both trainings on the ci profile under torchrun with 2 CPU processes against 1.

Builds a throw-away ci project (SynthPriv, manifests, the tests' stand-in masks; DeepLab on the
ground-truth masks), then runs each training stage as it would run from dvc.yaml in three forms
on the same work (the same global batch, steps and data): 1 process x 1 thread, 1 process x 2
threads, and ``torchrun --standalone --nproc_per_node 2`` with 1 thread each. Prints, per stage
and form, the command's wall time and the training loop's own seconds (``reports/runs``), each
the least of ``--repeats`` runs (the least disturbed on a shared machine) and each as a ratio to
the 1 process x 1 thread run measured in the same invocation.

    .venv/bin/python bench/ddp.py                 # ci sizes
    .venv/bin/python bench/ddp.py --epochs 6 --iterations 300 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ops.params import resolve_profile
from ops.project_copy import copy_sources
from privobfnet.config import parse_config
from tests.fixtures.masks import write_fixture_masks

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
FORMS = {
    "1 process x 1 thread": (1, 1),
    "1 process x 2 threads": (1, 2),
    "2 processes x 1 thread": (2, 1),
}


def prepare(root: Path, *, epochs: int, iterations: int) -> Path:
    """A ci project copy with its data and stand-in masks at ``root``."""
    copy_sources(REPO, root)
    params = resolve_profile("ci", root / "profiles")
    params["train"].update(epochs=epochs, lr_decay_epoch=max(1, epochs // 2), checkpoint_every=1000)
    params["deeplab"].update(labels="ground_truth", iterations=iterations, checkpoint_every=1000)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, PYTHONPATH=str(root))
    for stage in ("download", "validate"):
        subprocess.run(
            [sys.executable, "-m", f"stages.{stage}"],
            cwd=root,
            env=env,
            check=True,
            capture_output=True,
        )
    write_fixture_masks(parse_config(params), root)
    return root


def run(prepared: Path, work: Path, stage: str, ranks: int, threads: int) -> dict:
    """One stage run in a fresh copy of ``prepared`` -> wall and loop seconds."""
    root = work / f"{stage}-{ranks}x{threads}"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(prepared, root, symlinks=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["num_threads"] = params["deeplab"]["num_threads"] = threads
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(
        os.environ,
        PYTHONPATH=str(root),
        OMP_NUM_THREADS=str(threads),
        MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
    )
    command = (
        [sys.executable, "-m", f"stages.{stage}"]
        if ranks == 1
        else [*TORCHRUN, "-m", f"stages.{stage}"]
    )
    started = time.perf_counter()
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    facts = json.loads((root / f"reports/runs/{stage}.json").read_text())
    return {"wall_s": round(wall, 2), "loop_s": facts["train_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs", type=int, default=2, help="train.epochs (ci: 2, 12 steps of 4 images)"
    )
    parser.add_argument(
        "--iterations", type=int, default=20, help="deeplab.iterations (ci: 20 steps of 4 crops)"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of each form; the least time is kept"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as tmp:
        prepared = prepare(Path(tmp) / "prepared", epochs=args.epochs, iterations=args.iterations)
        report = {
            "cpus": os.cpu_count(),
            "epochs": args.epochs,
            "iterations": args.iterations,
            "repeats": args.repeats,
            "load_average_before": [round(x, 2) for x in os.getloadavg()],
        }
        for stage in ("train_ensemble", "train_deeplab"):
            results = {}
            for form, shape in FORMS.items():
                runs = [run(prepared, Path(tmp), stage, *shape) for _ in range(args.repeats)]
                results[form] = {key: min(r[key] for r in runs) for key in ("wall_s", "loop_s")}
            base = results["1 process x 1 thread"]
            for result in results.values():
                result["wall_over_1x1"] = round(result["wall_s"] / base["wall_s"], 3)
                result["loop_over_1x1"] = round(result["loop_s"] / base["loop_s"], 3)
            report[stage] = results
        report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
