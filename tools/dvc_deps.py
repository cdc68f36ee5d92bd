"""Write each dvc.yaml stage's code deps from the import closure of its entry module.

    python -m tools.dvc_deps           # rewrite dvc.yaml's code deps (comments and order kept)
    python -m tools.dvc_deps --check   # exit 1, naming the stages, if dvc.yaml is not up to date

A stage's code deps are every project file its ``stages/<name>.py`` imports, followed
transitively with ``ast`` (function-level imports included: ``build_backend`` imports its
backends lazily), plus the package data those modules read (``RESOURCES``). Everything else a
stage lists (data folders, checkpoints, ``${...}`` paths, metrics files) is kept as written,
after the code deps. ``tests/stages/test_layer.py`` checks that dvc.yaml is what this writes.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("privobfnet", "stages", "ops", "pipelines", "tools")
# package data a module reads at run time (importlib.resources): a dep of every stage importing it
RESOURCES = {"privobfnet/data/mask_types.py": ("privobfnet/data/mask_types",)}


def module_file(module: str, root: Path = REPO) -> Path | None:
    """The project file of a dotted module name (a package: its __init__.py); None outside the project."""
    if module.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def direct_imports(file: Path, root: Path = REPO) -> set[str]:
    """Dotted names a file imports (``from a.b import c`` gives a.b and a.b.c: c may be a module)."""
    package = ".".join(file.relative_to(root).with_suffix("").parts[:-1])
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


def imported_files(entry: Path, root: Path = REPO) -> set[Path]:
    """Every project file ``entry`` imports, transitively (packages' __init__ files included)."""
    seen, todo = set(), [entry]
    while todo:
        file = todo.pop()
        if file in seen:
            continue
        seen.add(file)
        for name in direct_imports(file, root):
            parts = name.split(".")
            for depth in range(
                1, len(parts) + 1
            ):  # importing a.b.c runs a/__init__ and a/b/__init__
                found = module_file(".".join(parts[:depth]), root)
                if found is not None and found not in seen:
                    todo.append(found)
    return seen


def stage_module(spec: dict) -> str:
    """The module a stage's cmd runs: ``python -m stages.<name>`` or ``${...launcher} -m stages.<name>``."""
    return spec["cmd"].split(" -m stages.", 1)[1].split()[0]


def code_deps(module: str, root: Path = REPO) -> list[str]:
    """The generated code deps of ``stages/<module>.py``: its import closure and the resources it reads."""
    files = sorted(
        str(f.relative_to(root)) for f in imported_files(root / "stages" / f"{module}.py", root)
    )
    resources = [r for f in files for r in RESOURCES.get(f, ())]
    return files + sorted(set(resources))


def is_code(dep: str, root: Path = REPO) -> bool:
    """A dep this tool owns: a project .py file, a project folder holding .py files, or a resource."""
    if "${" in dep or dep.split("/")[0] not in PROJECT_PACKAGES:
        return False
    path = root / dep
    owned_resource = any(dep in found for found in RESOURCES.values())
    return dep.endswith(".py") or owned_resource or (path.is_dir() and any(path.rglob("*.py")))


def generated(stages: dict, root: Path = REPO) -> dict[str, list[str]]:
    """stage -> the deps list dvc.yaml should hold: code deps, then the stage's other deps as written."""
    out = {}
    for name, spec in stages.items():
        kept = [d for d in spec.get("deps", []) if not is_code(str(d), root)]
        out[name] = code_deps(stage_module(spec), root) + [str(d) for d in kept]
    return out


def _yaml():
    from ruamel.yaml import YAML  # DVC's own YAML library: round-trips comments

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="only say whether dvc.yaml is up to date"
    )
    parser.add_argument("--dvc-yaml", type=Path, default=REPO / "dvc.yaml")
    args = parser.parse_args(argv)
    yaml = _yaml()
    document = yaml.load(args.dvc_yaml.read_text())
    wanted = generated(document["stages"], args.dvc_yaml.parent)
    stale = [
        s
        for s, deps in wanted.items()
        if [str(d) for d in document["stages"][s].get("deps", [])] != deps
    ]
    if args.check:
        if stale:
            print(
                f"{args.dvc_yaml}: code deps out of date for {', '.join(stale)}; run python -m tools.dvc_deps"
            )
        return 1 if stale else 0
    for stage in stale:
        deps = document["stages"][stage]["deps"]
        comments = {
            str(d): getattr(deps, "ca", None) and deps.ca.items.get(i) for i, d in enumerate(deps)
        }
        deps.clear()
        for dep in wanted[stage]:
            deps.append(dep)
        for i, dep in enumerate(deps):  # keep a kept dep's trailing comment
            if comments.get(dep):
                deps.ca.items[i] = comments[dep]
    with open(args.dvc_yaml, "w") as handle:
        yaml.dump(document, handle)
    print(
        f"{args.dvc_yaml}: {len(stale)} stage(s) rewritten"
        + (f" ({', '.join(stale)})" if stale else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
