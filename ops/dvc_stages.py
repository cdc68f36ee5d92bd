"""dvc.yaml read as data: the stages in order (written upstream first; a test checks that), and
the params each stage lists, the one list of what a stage reads.

The Prefect flow runs the stages in this order; ``ops.tracking`` logs exactly a stage's listed
params to its MLflow run and hashes them; ``tools/compare_runs.py`` and ``bench/pipeline.py``
order their tables by it.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import yaml

from ops.outputs import DVC_FILE

# this checkout's dvc.yaml (a `dvc exp run --temp` copy has its own): stages read their own entry
# wherever they run, tests included
CHECKOUT_DVC_FILE = Path(__file__).resolve().parents[1] / DVC_FILE


@lru_cache(maxsize=8)
def _stages(path: str) -> dict:
    return yaml.safe_load(Path(path).read_text())["stages"]


def stages(dvc_yaml: str | os.PathLike = CHECKOUT_DVC_FILE) -> dict:
    """dvc.yaml's ``stages`` mapping, as written (``${...}`` not interpolated)."""
    return _stages(str(Path(dvc_yaml).resolve()))


def stage_order(dvc_yaml: str | os.PathLike = CHECKOUT_DVC_FILE) -> list[str]:
    """The stages in dvc.yaml's order (written upstream first)."""
    return list(stages(dvc_yaml))


def stage_params(stage: str, dvc_yaml: str | os.PathLike = CHECKOUT_DVC_FILE) -> list[str]:
    """The params.yaml keys (``section`` or ``section.key``) dvc.yaml lists for ``stage``."""
    spec = stages(dvc_yaml).get(stage)
    if spec is None:
        raise KeyError(f"{dvc_yaml}: no stage {stage!r}")
    keys = []
    for entry in spec.get("params", []):
        if not isinstance(entry, str):
            raise ValueError(
                f"{dvc_yaml}: stage {stage}: params from other files are not used here"
            )
        keys.append(entry)
    return keys
