"""Where ``--model`` points: a checkpoint file, or an MLflow model URI whose checkpoint is fetched.

The evaluate stage registers Model-Image as ``privobfnet-ensemble`` with the ensemble checkpoint
``final.pt`` as an extra file (``ops/registry.py``); ``models:/privobfnet-ensemble/latest`` (or a
version, alias or ``runs:/`` URI) is downloaded from the tracking store and that file is used.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

URI_SCHEMES = ("models:/", "runs:/")
CHECKPOINT_NAME = "final.pt"


def is_model_uri(spec: str) -> bool:
    """True for an MLflow model URI, False for a file path."""
    return spec.startswith(URI_SCHEMES)


def resolve_checkpoint(
    spec: str, *, tracking_uri: str | None = None, dst_dir: str | os.PathLike | None = None
) -> Path:
    """A local ensemble checkpoint for ``spec`` (a path, or an MLflow model URI fetched into ``dst_dir``)."""
    if not is_model_uri(spec):
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(
                f"{spec}: model checkpoint not found (a final.pt path or models:/NAME/VERSION)"
            )
        return path
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    dst = Path(dst_dir or tempfile.mkdtemp(prefix="privobfnet-model-"))
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=spec, dst_path=str(dst)))
    except Exception as exc:  # MlflowException: unknown model, version or store
        raise FileNotFoundError(
            f"{spec}: could not fetch from the MLflow store {mlflow.get_tracking_uri()} "
            f"({type(exc).__name__}: {exc})"
        ) from None
    found = sorted(local.rglob(CHECKPOINT_NAME)) if local.is_dir() else [local]
    if not found:
        raise FileNotFoundError(
            f"{spec}: the registered model carries no {CHECKPOINT_NAME} (extra file)"
        )
    return found[0]
