"""The stage layer stays thin and DVC sees every file a stage runs: no stage imports another, and each
stage's ``deps`` in dvc.yaml cover every project module it imports (followed transitively with ``ast``)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

from privobfnet.config import MasksConfig
from tests.conftest import REPO

PROJECT_PACKAGES = ("privobfnet", "stages", "ops", "pipelines")
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
# a cmd is `python -m stages.<name>`, or `${<section>.launcher} -m stages.<name>` (the training stages)
STAGES = {name: spec["cmd"].split(" -m stages.", 1)[1].split()[0] for name, spec in DVC.items()}


def module_file(module: str) -> Path | None:
    """The project file of a dotted module name (package -> its __init__.py); None outside the project."""
    if module.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = REPO.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def direct_imports(file: Path) -> set[str]:
    """Dotted names a file imports (``from a.b import c`` gives a.b and a.b.c: c may be a module)."""
    package = ".".join(file.relative_to(REPO).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def imported_files(entry: Path) -> set[Path]:
    """Every project file ``entry`` imports, transitively (packages' __init__ files included)."""
    seen, todo = set(), [entry]
    while todo:
        file = todo.pop()
        if file in seen:
            continue
        seen.add(file)
        for name in direct_imports(file):
            parts = name.split(".")
            for depth in range(
                1, len(parts) + 1
            ):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                found = module_file(".".join(parts[:depth]))
                if found is not None and found not in seen:
                    todo.append(found)
    return seen


def covered(file: Path, deps: list[str]) -> bool:
    relative = file.relative_to(REPO)
    return any(relative == Path(dep) or Path(dep) in relative.parents for dep in deps)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_every_imported_project_file(stage):
    deps = [d for d in DVC[stage].get("deps", []) if "${" not in d]
    files = imported_files(REPO / "stages" / f"{STAGES[stage]}.py")
    missing = sorted(str(f.relative_to(REPO)) for f in files if not covered(f, deps))
    assert not missing, f"dvc.yaml stage {stage}: deps miss {missing}"


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


def test_the_checker_sees_a_missing_dep(tmp_path):
    """The walker follows ``from package import module`` and relative imports (it must not pass vacuously)."""
    files = imported_files(REPO / "stages" / "train_deeplab.py")
    names = {str(f.relative_to(REPO)) for f in files}
    assert {
        "privobfnet/trainer.py",
        "privobfnet/deeplab_data.py",
        "privobfnet/data/images.py",
        "ops/tracking.py",
        "privobfnet/__init__.py",
    } <= names
    assert not covered(
        REPO / "privobfnet/trainer.py", ["privobfnet/models", "stages/train_deeplab.py"]
    )
    assert covered(REPO / "privobfnet/models/norm.py", ["privobfnet/models"])


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
