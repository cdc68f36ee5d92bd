"""The MLflow convention every stage follows: one run per stage execution.

- Store: ``tracking.uri`` from params, else ``$MLFLOW_TRACKING_URI``, else a sqlite file at the
  project root (``sqlite:////abs/path/mlflow.db``; MLflow 3 refuses a plain ./mlruns store).
  Artifacts go to ``<project root>/mlartifacts``.
- The project root is found even when ``dvc exp run --temp`` runs the stage in a copy under
  ``<root>/.dvc/tmp/exps/<tmp>``, so runs of temporary experiments land in the same store.
- Each run gets the params dvc.yaml lists for its stage (flattened ``section.key``), its metrics and these tags:
  ``privobfnet.stage``, ``privobfnet.profile``, ``privobfnet.params_hash`` (of the stage's params),
  ``privobfnet.pipeline_id``, ``mlflow.source.git.commit``, and ``dvc.exp_name`` when DVC sets
  ``DVC_EXP_NAME``.
- ``pipeline_id`` groups the stage runs of one pipeline run: ``$PRIVOBFNET_PIPELINE_ID`` (set by
  ``make run`` and by the Prefect flow), else ``local-<git sha>-<params hash>`` so the stages of one
  plain ``dvc repro`` on the same code and params still share one id.
- The stage runs of one pipeline id are nested under one parent run, ``pipeline <id>`` (tag
  ``privobfnet.kind = pipeline``; stage runs have ``privobfnet.kind = stage``), created by the
  first stage of that pipeline run and named as each stage run's parent
  (``mlflow.start_run(parent_run_id=...)``, which sets ``mlflow.parentRunId``), so the MLflow UI
  shows each pipeline run as one expandable row. The parent's status and end time follow its
  latest stage.
- The training stages' runs also log system metrics (``system/cpu_utilization_percentage``,
  ``system/system_memory_usage_megabytes``, ...; ``stage_run(..., system_metrics=True)``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from ops.dvc_stages import stage_params
from ops.outputs import MLFLOW_ARTIFACTS, MLFLOW_DB, PIPELINE_ID_ENV, ROOT_ENV
from privobfnet.config import Config

_TEMP_EXP_MARKER = os.sep + os.path.join(".dvc", "tmp", "exps") + os.sep


def project_root(cwd: str | os.PathLike | None = None) -> Path:
    """The project folder, also from inside a ``dvc exp run --temp`` copy."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).resolve()
    here = str(Path(cwd or os.getcwd()).resolve())
    if _TEMP_EXP_MARKER in here + os.sep:
        return Path((here + os.sep).split(_TEMP_EXP_MARKER, 1)[0])
    return Path(here)


def tracking_uri(cfg: Config, root: Path | None = None) -> str:
    """The MLflow store this project writes to (see module docstring)."""
    if cfg.tracking.uri:
        return cfg.tracking.uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    root = root or project_root()
    return f"sqlite:///{root / MLFLOW_DB}"


def git_commit(root: Path) -> str:
    """HEAD's sha, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested params to MLflow's flat string params: {'data': {'seed': 1}} -> {'data.seed': '1'}."""
    flat: dict[str, str] = {}
    for key, value in mapping.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name))
        else:
            flat[name] = str(value)
    return flat


def pipeline_id(cfg: Config, commit: str) -> str:
    """The id shared by every stage run of one pipeline run (see module docstring)."""
    return os.environ.get(PIPELINE_ID_ENV) or f"local-{commit[:8]}-{cfg.params_hash()}"


class StageRun:
    """What a stage logs through: metrics, dict/text/figure artifacts, files."""

    def __init__(self, mlflow_module: Any, run: Any):
        self._mlflow = mlflow_module
        self.run = run
        self.run_id: str = run.info.run_id

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log the numeric leaves of a (nested) metrics dict, names joined with '.'."""
        numeric = flatten_numbers(metrics)
        if numeric:
            self._mlflow.log_metrics(numeric, step=step)

    def log_step(self, metrics: Mapping[str, float], step: int) -> None:
        """Per-step training metrics, queued (asynchronous logging): the loop never waits on the store."""
        self._mlflow.log_metrics(dict(metrics), step=step, synchronous=False)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self._mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_manifests(
        self, manifest_dir: str | os.PathLike, dataset: str, contexts: Mapping[str, str]
    ) -> None:
        """Each split's manifest as an MLflow dataset input of this run (the UI's Dataset column).

        ``contexts``: split -> what the stage uses it for ("training", "evaluation", ...). Name
        ``<dataset>/<split>``; digest: the manifest file's md5, the hash DVC keeps for it.
        """
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset

        for split, context in contexts.items():
            path = Path(manifest_dir, f"{split}.parquet").resolve()
            digest = hashlib.md5(path.read_bytes()).hexdigest()
            with (
                warnings.catch_warnings()
            ):  # MLflow registers its local-file source twice and says so
                warnings.filterwarnings(
                    "ignore", message="The specified dataset source can be interpreted"
                )
                source = resolve_dataset_source(str(path))
            dataset_input = MetaDataset(source, name=f"{dataset}/{split}", digest=digest)
            self._mlflow.log_input(
                dataset_input,
                context=context,
                tags={"dataset": dataset, "split": split, "dvc.md5": digest},
            )

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """A matplotlib figure as a PNG artifact."""
        self._mlflow.log_figure(figure, artifact_file)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._mlflow.set_tags({k: str(v) for k, v in tags.items()})


class NoRun:
    """What ranks other than 0 log through under torchrun: nothing (rank 0 records the one run)."""

    run_id = None

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        pass

    def log_step(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        pass

    def log_manifests(
        self, manifest_dir: str | os.PathLike, dataset: str, contexts: Mapping[str, str]
    ) -> None:
        pass

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass


def flatten_numbers(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict (bools and None are skipped)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten_numbers(value, name))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


KIND_TAG = "privobfnet.kind"
# MLflow 3's UI opens an experiment of this kind on its training runs, not on GenAI traces
EXPERIMENT_KIND, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"


def tag_is(key: str, value: str) -> str:
    """An MLflow search filter clause: tag ``key`` equals ``value`` (quotes in the value escaped)."""
    quoted = value.replace("'", "\\'")
    return f"tags.`{key}` = '{quoted}'"


STAGE_RUNS = tag_is(KIND_TAG, "stage")  # search_runs filter for stage runs only


def pipeline_parent(client: Any, experiment_id: str, pid: str, tags: Mapping[str, str]) -> str:
    """The id of the parent run of pipeline ``pid``, created on first use."""
    found = client.search_runs(
        [experiment_id],
        max_results=1,
        order_by=["attributes.start_time ASC"],
        filter_string=f"{tag_is(KIND_TAG, 'pipeline')} and {tag_is('privobfnet.pipeline_id', pid)}",
    )
    if found:
        return found[0].info.run_id
    return client.create_run(
        experiment_id, run_name=f"pipeline {pid}", tags={**tags, KIND_TAG: "pipeline"}
    ).info.run_id


@contextmanager
def stage_run(
    stage: str, cfg: Config, *, record: bool = True, system_metrics: bool = False
) -> Iterator[StageRun | NoRun]:
    """One MLflow run for one execution of ``stage``; marked FAILED if the block raises.

    ``record=False`` (ranks other than 0 under torchrun): a :class:`NoRun`, MLflow untouched.
    ``system_metrics``: MLflow samples CPU, memory, disk and network use (``system/*`` metrics,
    psutil; GPU too where pynvml is installed) while the run is open: the training stages set it.
    """
    if not record:
        yield NoRun()
        return
    import mlflow  # imported here: the library and params loading must not pay for it

    root = project_root()
    param_keys = stage_params(stage)  # dvc.yaml's list: what the stage reads, logged and hashed
    mlflow.set_tracking_uri(tracking_uri(cfg, root))
    experiment = mlflow.get_experiment_by_name(cfg.tracking.experiment)
    if experiment is None:
        artifacts = (root / MLFLOW_ARTIFACTS).as_uri()
        experiment_id = mlflow.create_experiment(
            cfg.tracking.experiment,
            artifact_location=artifacts,
            tags={EXPERIMENT_KIND: TRAINING_KIND},
        )
    else:
        experiment_id = experiment.experiment_id
    commit = git_commit(root)
    tags = {
        "privobfnet.stage": stage,
        "privobfnet.profile": cfg.profile,
        "privobfnet.params_hash": cfg.params_hash(*param_keys),
        "privobfnet.pipeline_id": pipeline_id(cfg, commit),
        "mlflow.source.git.commit": commit,
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    client = mlflow.MlflowClient()
    parent_tags = {
        k: v for k, v in tags.items() if k != "privobfnet.stage" and k != "privobfnet.params_hash"
    }
    parent_id = pipeline_parent(client, experiment_id, tags["privobfnet.pipeline_id"], parent_tags)
    tags[KIND_TAG] = "stage"
    status = "FAILED"
    try:
        with mlflow.start_run(
            experiment_id=experiment_id,
            run_name=stage,
            tags=tags,
            parent_run_id=parent_id,
            log_system_metrics=system_metrics,
        ) as run:
            params = flatten(cfg.section_dict(*param_keys))
            params["seed"] = str(cfg.seed)
            mlflow.log_params(params)
            yield StageRun(mlflow, run)
            mlflow.flush_async_logging()  # queued step metrics land before the run is closed
        status = "FINISHED"
    finally:
        client.set_terminated(parent_id, status=status)
