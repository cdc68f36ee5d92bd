"""What a flow run leaves on its Prefect page besides its logs: the paper's tables
(``reports/tables.md``) as a markdown artifact and a link to the MLflow run of the evaluate stage.

The evaluate run is the one that registered the current final models: ``reports/runs/evaluate.json``
names their registry versions, and a version knows the run that logged it. A DVC-skipped evaluate
stage so still links to the run whose models and metrics are on disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

from prefect.artifacts import create_link_artifact, create_markdown_artifact

from ops.outputs import TABLES_FILE, run_facts_file

MLFLOW_UI = "http://127.0.0.1:5000"  # `make mlflow`
TABLES_KEY = "privobfnet-tables"
EVALUATE_RUN_KEY = "privobfnet-evaluate-run"


def publish_tables(pipeline_id: str, path: Path = TABLES_FILE) -> UUID | None:
    """``path`` as the markdown artifact ``privobfnet-tables``; None when the report was never written."""
    if not path.is_file():
        return None
    return create_markdown_artifact(
        markdown=path.read_text(),
        key=TABLES_KEY,
        description=f"{path} after {pipeline_id}",
    )


def evaluate_run(tracking_uri: str, facts_file: Path | None = None) -> tuple[str, str] | None:
    """(experiment id, run id) of the MLflow run that registered the current final models, or None
    when evaluate has not run yet (no run facts, or the store no longer has that version)."""
    facts_file = facts_file or run_facts_file("evaluate")
    if not facts_file.is_file():
        return None
    models = json.loads(facts_file.read_text()).get("registered_models") or {}
    if not models:
        return None
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    model = next(iter(models.values()))
    try:
        run_id = client.get_model_version(model["name"], str(model["version"])).run_id
        return client.get_run(run_id).info.experiment_id, run_id
    except MlflowException:
        return None


def mlflow_run_url(base: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI's page of one run."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def publish_evaluate_link(tracking_uri: str, mlflow_ui: str = MLFLOW_UI) -> str | None:
    """The link artifact ``privobfnet-evaluate-run``; returns its URL (None when there is no run)."""
    found = evaluate_run(tracking_uri)
    if found is None:
        return None
    url = mlflow_run_url(mlflow_ui, *found)
    create_link_artifact(
        link=url,
        link_text=f"MLflow run {found[1]} (evaluate)",
        key=EVALUATE_RUN_KEY,
        description="The evaluate stage's MLflow run: the final models' metrics and registered "
        f"versions (the MLflow UI at {mlflow_ui}: `make mlflow`)",
    )
    return url
