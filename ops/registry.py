"""Log the final models as MLflow models and register them, with their metrics.

The evaluate stage calls :func:`register_model` once for the PrivObfNet ensemble (the registered
model is Model-Image, the one used at inference; the ensemble checkpoint with both networks rides
along as an extra file) and once for DeepLabV2. Each call, inside the stage's MLflow run:

- logs the network with ``mlflow.pytorch.log_model`` (pickle format, the ``privobfnet`` package as
  its code path, pinned torch/torchvision requirements: nothing is inferred or downloaded), so
  ``mlflow.pytorch.load_model("models:/<name>/<version>")`` gives the network back;
- registers it as a new version of ``<name>`` in the model registry;
- copies the model's headline metrics onto the model version as tags, beside the profile, pipeline
  id and params hash, so the registry list alone tells versions apart. (MLflow 3 also links every
  metric of the run to the models logged in it: the logged model's page lists all of evaluate's
  metrics, for both models.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torchvision

ENSEMBLE_MODEL = "privobfnet-ensemble"
DEEPLAB_MODEL = "privobfnet-deeplabv2"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / "privobfnet"
COPIED_TAGS = (
    "privobfnet.profile",
    "privobfnet.pipeline_id",
    "privobfnet.params_hash",
    "dvc.exp_name",
    "mlflow.source.git.commit",
)


def requirements() -> list[str]:
    """Pinned to what trained the model (local-version suffixes such as +cpu dropped)."""
    return [
        f"torch=={torch.__version__.split('+')[0]}",
        f"torchvision=={torchvision.__version__.split('+')[0]}",
    ]


def register_model(
    run: Any,
    model: torch.nn.Module,
    *,
    name: str,
    checkpoint: str | os.PathLike,
    headline: Mapping[str, float],
    description: str,
) -> dict[str, Any]:
    """Log ``model`` in the active run, register it as ``name``; returns {name, version, model_id, uri}."""
    import mlflow
    from mlflow import MlflowClient

    info = mlflow.pytorch.log_model(
        model.cpu().eval(),
        name=name,
        registered_model_name=name,
        serialization_format="pickle",
        code_paths=[str(PACKAGE_DIR)],
        pip_requirements=requirements(),
        extra_files=[str(checkpoint)],
        await_registration_for=60,
    )
    version = str(info.registered_model_version)
    client = MlflowClient()
    run_tags = client.get_run(run.run_id).data.tags
    tags = {key: run_tags[key] for key in COPIED_TAGS if key in run_tags}
    tags.update({f"metric.{key}": f"{value:.6g}" for key, value in headline.items()})
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))
    client.update_model_version(name, version, description=description)
    return {
        "name": name,
        "version": version,
        "model_id": info.model_id,
        "uri": f"models:/{name}/{version}",
    }


def headline(metrics: Mapping, paths: Sequence[tuple[str, str, str]]) -> dict[str, float]:
    """{'<split>.<name>': value} for the (section, split, name) entries of ``metrics`` that are numbers."""
    out = {}
    for section, split, name in paths:
        value = metrics.get(section, {}).get(split, {}).get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{split}.{name}"] = float(value)
    return out


def register_final_models(
    run: Any,
    *,
    profile: str,
    metrics: Mapping,
    model_image: torch.nn.Module,
    ensemble_checkpoint: Path,
    ensemble_split: str,
    deeplab: torch.nn.Module,
    deeplab_checkpoint: Path,
    deeplab_description: str,
) -> dict[str, dict]:
    """Log and register both final models of the evaluate stage with their headline metrics."""
    ensemble = register_model(
        run,
        model_image,
        name=ENSEMBLE_MODEL,
        checkpoint=ensemble_checkpoint,
        headline=headline(
            metrics,
            [
                *[("privacy", ensemble_split, m) for m in ("l1", "pearson", "spearman")],
                ("attributes", ensemble_split, "map"),
                ("attributes", ensemble_split, "mean_accuracy"),
            ],
        ),
        description=f"PrivObfNet Model-Image (profile {profile}); {ensemble_checkpoint.name} holds "
        "Model-Image and Model-Cropped. Inputs: image, human mask, text mask.",
    )
    deeplab_entry = register_model(
        run,
        deeplab,
        name=DEEPLAB_MODEL,
        checkpoint=deeplab_checkpoint,
        headline=headline(metrics, [("segmentation", s, "miou") for s in metrics["segmentation"]]),
        description=deeplab_description,
    )
    return {"ensemble": ensemble, "deeplab": deeplab_entry}
