"""The stage layer stays thin and DVC sees every file a stage runs: no stage imports another, and each
stage's code ``deps`` in dvc.yaml are the generated import closure (``tools/dvc_deps.py``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from privobfnet.config import MasksConfig
from tests.conftest import REPO
from tools.dvc_deps import direct_imports, generated, imported_files, stage_module

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
STAGES = {name: stage_module(spec) for name, spec in DVC.items()}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_are_the_generated_import_closure(stage):
    """dvc.yaml's code deps are what `python -m tools.dvc_deps` writes: every project file the
    stage imports (and the package data they read), nothing more, then its data deps."""
    expected = generated({stage: DVC[stage]})[stage]
    assert DVC[stage]["deps"] == expected, "dvc.yaml is stale: run python -m tools.dvc_deps"
    closure = imported_files(REPO / "stages" / f"{STAGES[stage]}.py")
    assert {str(f.relative_to(REPO)) for f in closure} <= set(DVC[stage]["deps"])


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_no_stage_imports_another_stage(stage):
    module = STAGES[stage]
    stage_modules = {f"stages.{m}" for m in STAGES.values()} - {f"stages.{module}"}
    files = imported_files(REPO / "stages" / f"{module}.py")
    imported = {name for file in files for name in direct_imports(file)}
    assert not imported & stage_modules, (
        f"stages/{module}.py reaches {sorted(imported & stage_modules)}"
    )


def test_stages_folder_holds_only_stage_entries():
    entries = {f"{m}.py" for m in STAGES.values()} | {"__init__.py"}
    assert {p.name for p in (REPO / "stages").glob("*.py")} == entries


def test_the_closure_follows_package_lazy_and_relative_imports(tmp_path):
    """The walker follows ``from package import module``, imports inside functions and relative
    imports, so a generated list cannot miss a module (and the check cannot pass vacuously)."""
    names = {str(f.relative_to(REPO)) for f in imported_files(REPO / "stages" / "train_deeplab.py")}
    assert {
        "privobfnet/training/loop.py",
        "privobfnet/training/deeplab.py",
        "privobfnet/__init__.py",
        "privobfnet/data/images.py",
        "ops/tracking.py",
    } <= names
    masks = {str(f.relative_to(REPO)) for f in imported_files(REPO / "stages" / "masks.py")}
    assert "privobfnet/masks/text.py" in masks  # imported inside build_backend only
    (tmp_path / "stages").mkdir()
    (tmp_path / "privobfnet" / "sub").mkdir(parents=True)
    (tmp_path / "stages" / "one.py").write_text("def f():\n    from privobfnet.sub import leaf\n")
    for name in ("privobfnet/__init__.py", "privobfnet/sub/__init__.py"):
        (tmp_path / name).write_text("")
    (tmp_path / "privobfnet" / "sub" / "leaf.py").write_text("from . import other\n")
    (tmp_path / "privobfnet" / "sub" / "other.py").write_text("")
    found = {
        str(f.relative_to(tmp_path)) for f in imported_files(tmp_path / "stages/one.py", tmp_path)
    }
    assert found == {
        "stages/one.py",
        "privobfnet/__init__.py",
        "privobfnet/sub/__init__.py",
        "privobfnet/sub/leaf.py",
        "privobfnet/sub/other.py",
    }
    stale = {"cmd": "python -m stages.one", "deps": ["stages/one.py", "data/raw"]}
    assert generated({"one": stale}, tmp_path)["one"] == [*sorted(found), "data/raw"]


def test_the_masks_stage_lists_every_masks_param_but_the_scheduler():
    """Listed one by one (not `masks`) so that the Dask address is no reason to re-run: a new field
    must still be added here."""
    listed = {p for p in DVC["masks"]["params"] if isinstance(p, str) and p.startswith("masks.")}
    fields = {f"masks.{f.name}" for f in dataclasses.fields(MasksConfig)}
    assert listed == fields - {"masks.scheduler"}


def test_training_stages_start_through_their_launcher_param(tmp_path, monkeypatch):
    """dvc.yaml runs `<launcher> -m stages.<name>`: plain python by default, torchrun when the param says so."""
    import shutil
    import subprocess
    import sys

    from dvc.repo import Repo

    def commands(folder: Path, params: dict) -> dict[str, str]:
        folder.mkdir()
        shutil.copy(REPO / "dvc.yaml", folder / "dvc.yaml")
        (folder / "params.yaml").write_text(yaml.safe_dump(params))
        subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
        subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=folder, check=True)
        monkeypatch.chdir(
            folder
        )  # DVC reads the params of ${...} relative to the working directory
        return {
            name: Repo(str(folder)).stage.collect(name)[0].cmd
            for name in ("train_ensemble", "train_deeplab")
        }

    params = {
        **yaml.safe_load((REPO / "profiles" / "default.yaml").read_text()),
        "profile": "default",
    }
    assert commands(tmp_path / "default", params) == {  # dvc.lock's cmd as before the param existed
        "train_ensemble": "python -m stages.train_ensemble",
        "train_deeplab": "python -m stages.train_deeplab",
    }
    params["deeplab"]["launcher"] = "torchrun --standalone --nproc_per_node 2"
    assert (
        commands(tmp_path / "torchrun", params)["train_deeplab"]
        == "torchrun --standalone --nproc_per_node 2 -m stages.train_deeplab"
    )
