"""Stage `report`: reports/tables.md, the paper's Tables 2-5 beside ours (``privobfnet.report``).

Reads reports/metrics/evaluate.json, reports/metrics/pseudo_labels.json and reports/ablation.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from ops.collect_ablation import ABLATION_FILE
from ops.common import METRICS_DIR, atomic_write_text, load_params, write_metrics
from ops.tracking import stage_run
from privobfnet.config import Config
from privobfnet.report import render_tables

TABLES_PATH = Path("reports/tables.md")
PARAM_SECTIONS = ["train", "deeplab", "pseudo_labels"]  # what the protocol lines print


def read_json(path: Path) -> dict:
    """A metrics file's content; {} where it does not exist (its rows then say how to fill them)."""
    return json.loads(path.read_text()) if path.exists() else {}


def main(cfg: Config) -> dict:
    """Write reports/tables.md; returns which rows are filled."""
    with stage_run("report", cfg, PARAM_SECTIONS) as run:
        tables, metrics = render_tables(
            cfg,
            read_json(METRICS_DIR / "evaluate.json"),
            read_json(METRICS_DIR / "pseudo_labels.json"),
            read_json(ABLATION_FILE).get("experiments", []),
        )
        atomic_write_text(TABLES_PATH, tables)
        write_metrics("report", metrics)
        run.log_metrics(metrics)
        run.log_artifact(TABLES_PATH)
    return metrics


if __name__ == "__main__":
    main(load_params())
