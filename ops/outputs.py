"""Every fixed path and environment variable of the pipeline, defined once, and the metrics writer.

Stages, the Prefect flow, the tools and the tests name the pipeline's files through these; the
library (``privobfnet``) never does: it is given paths. Paths are relative to the project root,
where DVC runs every stage. The per-data-set folders (raw data, manifests, masks, pseudo-labels)
are params (``data.*``, ``masks.out_dir``, ``pseudo_labels.out_dir``), not constants.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from privobfnet.config import WEIGHTS_DIR as _WEIGHTS_DIR
from privobfnet.io import atomic_write_text

# ---- files ---------------------------------------------------------------------------------------
PARAMS_FILE = Path("params.yaml")
PROFILES_DIR = Path("profiles")
DVC_FILE = Path("dvc.yaml")
WEIGHTS_DIR = Path(_WEIGHTS_DIR)  # the weights stage's output (config checks pretrained lies there)
ENSEMBLE_DIR = Path("checkpoints/ensemble")
ENSEMBLE_CHECKPOINT = ENSEMBLE_DIR / "final.pt"  # both networks and their config
ENSEMBLE_LAST = ENSEMBLE_DIR / "last.pt"  # the training state a killed run resumes from
DEEPLAB_DIR = Path("checkpoints/deeplab")
DEEPLAB_CHECKPOINT = DEEPLAB_DIR / "final.pt"
DEEPLAB_LAST = DEEPLAB_DIR / "last.pt"
REPORTS_DIR = Path("reports")
METRICS_DIR = REPORTS_DIR / "metrics"  # reproducible numbers: DVC metrics, mirrored to MLflow
RUNS_DIR = REPORTS_DIR / "runs"  # what differs run to run (timings, resume point, model versions)
PLOTS_DIR = REPORTS_DIR / "plots"
FIGURES_DIR = REPORTS_DIR / "figures"
TABLES_FILE = REPORTS_DIR / "tables.md"
VALIDATION_REPORT = REPORTS_DIR / "validation.md"
ABLATION_FILE = (
    REPORTS_DIR / "ablation.json"
)  # the collected experiments (tools/collect_ablation.py)
MLFLOW_DB = Path("mlflow.db")
MLFLOW_ARTIFACTS = Path("mlartifacts")

# ---- environment variables -----------------------------------------------------------------------
PIPELINE_ID_ENV = "PRIVOBFNET_PIPELINE_ID"  # groups the stage runs of one pipeline run (MLflow)
ROOT_ENV = (
    "PRIVOBFNET_ROOT"  # the project root, where it cannot be found from the working directory
)
MASKS_SCHEDULER_ENV = (
    "PRIVOBFNET_MASKS_SCHEDULER"  # a Dask scheduler that overrides masks.scheduler
)
# (the detector model cache, $PRIVOBFNET_CACHE_DIR, is the library's: privobfnet.masks.assets)


def metrics_file(stage: str) -> Path:
    """reports/metrics/<stage>.json."""
    return METRICS_DIR / f"{stage}.json"


def run_facts_file(stage: str) -> Path:
    """reports/runs/<stage>.json."""
    return RUNS_DIR / f"{stage}.json"


def loss_plot(stage: str) -> Path:
    """reports/plots/<stage>_loss.csv, a training stage's loss curve."""
    return PLOTS_DIR / f"{stage}_loss.csv"


def figure(name: str) -> Path:
    """reports/figures/<name>.png."""
    return FIGURES_DIR / f"{name}.png"


def write_metrics(
    stage: str, metrics: dict[str, Any], run_facts: dict[str, Any] | None = None
) -> Path:
    """Write reports/metrics/<stage>.json (a DVC metrics file) atomically.

    What differs from run to run (seconds, throughput, where a resumed run started, registered
    model versions) goes to reports/runs/<stage>.json instead, which no stage reads: the metrics
    files of two runs of the same code, params and data are byte-identical.
    """
    path = metrics_file(stage)
    atomic_write_text(path, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    if run_facts is not None:
        atomic_write_text(
            run_facts_file(stage), json.dumps(run_facts, indent=2, sort_keys=True) + "\n"
        )
    return path
