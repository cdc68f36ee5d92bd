"""The pipeline's stages in order: dvc.yaml lists them upstream first (a test checks that it does).

Read by the Prefect flow (which runs them one by one), ``compare_runs`` and ``bench/pipeline.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml


def stage_order(dvc_yaml: str | os.PathLike = "dvc.yaml") -> list[str]:
    """The stages in dvc.yaml's order (written upstream first)."""
    return list(yaml.safe_load(Path(dvc_yaml).read_text())["stages"])
