"""Stage `report`: reports/tables.md, the paper's Tables 2-5 beside ours (``privobfnet.report.tables``).

Reads reports/metrics/evaluate.json, reports/metrics/pseudo_labels.json and reports/ablation.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from ops.outputs import ABLATION_FILE, TABLES_FILE, metrics_file, write_metrics
from ops.params import load_params
from ops.tracking import stage_run
from privobfnet.config import Config
from privobfnet.io import atomic_write_text
from privobfnet.logs import configure_logging
from privobfnet.report.tables import render_tables


def read_json(path: Path) -> dict:
    """A metrics file's content; {} where it does not exist (its rows then say how to fill them)."""
    return json.loads(path.read_text()) if path.exists() else {}


def main(cfg: Config) -> dict:
    """Write reports/tables.md; returns which rows are filled."""
    with stage_run("report", cfg) as run:
        tables, metrics = render_tables(
            cfg,
            read_json(metrics_file("evaluate")),
            read_json(metrics_file("pseudo_labels")),
            read_json(ABLATION_FILE).get("experiments", []),
        )
        atomic_write_text(TABLES_FILE, tables)
        write_metrics("report", metrics)
        run.log_metrics(metrics)
        run.log_artifact(TABLES_FILE)
    return metrics


if __name__ == "__main__":
    configure_logging()
    main(load_params())
