"""Log the final models as MLflow models and register them, with their metrics and the model card.

The evaluate stage calls :func:`register_final_models` inside its MLflow run:

- **privobfnet-ensemble** is a pyfunc model (``ops/served_model.py``, logged from code: nothing
  is pickled): image file bytes in, privacy score and attribute probabilities out, computed as
  ``privobfnet score`` computes them. Its artifacts are the ensemble checkpoint (``final.pt``,
  loaded with ``torch.load(weights_only=True)``) and, where the model takes the person mask,
  MediaPipe's model files, so ``mlflow models serve`` needs no download. It is logged with a
  signature inferred from an input example (a small image) and the model's answer to it, the
  ``privobfnet`` package as its code path and the package's dependencies pinned to the installed
  versions.
- **privobfnet-deeplabv2** is logged with ``mlflow.pytorch.log_model`` (pickle format, the package as
  its code path, torch and torchvision pinned), so ``mlflow.pytorch.load_model`` gives the network.
- each version gets the run's profile, pipeline id, params hash and commit and the model's headline
  metrics as tags (``metric.<split>.<name>``), so the registry list alone tells versions apart;
- the ensemble's **champion** alias (``models:/privobfnet-ensemble@champion``) moves to the new
  version unless it is worse than the current champion on :data:`SELECTION_TAG` (val attribute
  mAP); the registered model's description is the model card (``ops/model_card.py``) with the
  numbers of the run that registered the version the alias points to.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torchvision

from ops.model_card import fit_description, model_card

ENSEMBLE_MODEL = "privobfnet-ensemble"
DEEPLAB_MODEL = "privobfnet-deeplabv2"
CHAMPION = "champion"
# the ensemble versions are compared on this version tag: attribute mAP on val (VISPR's metric);
# higher is better and a tie moves the alias (the newer model is not worse)
SELECTION = ("attributes", "val", "map")
SELECTION_TAG = f"metric.{SELECTION[1]}.{SELECTION[2]}"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / "privobfnet"
SERVED_MODEL_FILE = Path(__file__).resolve().parent / "served_model.py"
COPIED_TAGS = (
    "privobfnet.profile",
    "privobfnet.pipeline_id",
    "privobfnet.params_hash",
    "dvc.exp_name",
    "mlflow.source.git.commit",
)
ENSEMBLE_HEADLINE = (
    ("privacy", "l1"),
    ("privacy", "pearson"),
    ("privacy", "spearman"),
    ("attributes", "map"),
    ("attributes", "mean_accuracy"),
)


def requirements() -> list[str]:
    """torch and torchvision pinned to what trained the model (local-version suffixes such as +cpu dropped)."""
    return [
        f"torch=={torch.__version__.split('+')[0]}",
        f"torchvision=={torchvision.__version__.split('+')[0]}",
    ]


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name).split("+")[0]
    except importlib.metadata.PackageNotFoundError:
        return None


def serving_requirements() -> list[str]:
    """What the pyfunc model imports, pinned to the installed versions: the privobfnet package's own
    dependencies (its code rides along as the code path), MLflow and pandas; nothing is inferred."""
    from packaging.requirements import Requirement

    try:
        declared = importlib.metadata.requires("privobfnet") or []
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that is not installed
        declared = []
    parsed = [Requirement(line) for line in declared]
    names = [r.name for r in parsed if r.marker is None or "extra" not in str(r.marker)]
    pinned = {r.split("==")[0]: r for r in requirements()}
    for name in [*names, "mlflow", "pandas"]:
        version = _installed(name)
        if version and name not in pinned:
            pinned[name] = f"{name}=={version}"
    return list(pinned.values())


def version_tags(run: Any, headline: Mapping[str, float]) -> dict[str, str]:
    """The run's identifying tags and the headline metrics (``metric.<split>.<name>``)."""
    from mlflow import MlflowClient

    run_tags = MlflowClient().get_run(run.run_id).data.tags
    tags = {key: str(run_tags[key]) for key in COPIED_TAGS if key in run_tags}
    tags.update({f"metric.{key}": f"{value:.6g}" for key, value in headline.items()})
    return tags


def _tag_version(name: str, version: str, tags: Mapping[str, str], description: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.update_model_version(name, version, description=description)


def register_model(
    run: Any,
    model: torch.nn.Module,
    *,
    name: str,
    checkpoint: str | os.PathLike,
    headline: Mapping[str, float],
    description: str,
) -> dict[str, Any]:
    """A torch network logged with ``mlflow.pytorch`` in the active run and registered as ``name``;
    returns {name, version, model_id, uri}."""
    import mlflow

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
    _tag_version(name, version, version_tags(run, headline), description)
    return {
        "name": name,
        "version": version,
        "model_id": info.model_id,
        "uri": f"models:/{name}/{version}",
    }


def example_image(height: int = 96, width: int = 128) -> bytes:
    """A small PNG (a gradient with a light block, no person or text): the pyfunc's input example."""
    import io

    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], axis=-1).astype(np.uint8)
    image[height // 4 : height // 2, width // 4 : width // 2] = 230
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def log_served_ensemble(
    checkpoint: str | os.PathLike, *, name: str, cache_dir: str | os.PathLike
) -> tuple[Any, Any]:
    """Log the ensemble as the pyfunc model of ``ops/served_model.py`` in the active run and register
    it as ``name``; returns (ModelInfo, the Scorer that made the example output)."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from ops.served_model import CHECKPOINT_ARTIFACT, INPUT_COLUMN, predictions
    from privobfnet.serving import Scorer

    scorer = Scorer(checkpoint, cache_dir=cache_dir)
    example = pd.DataFrame({INPUT_COLUMN: [example_image()]})
    signature = infer_signature(example, predictions(scorer, example))
    # MediaPipe's files are the package's own data (privobfnet/masks/models/, in code_paths)
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=str(SERVED_MODEL_FILE),
        artifacts={CHECKPOINT_ARTIFACT: str(checkpoint)},
        code_paths=[str(PACKAGE_DIR)],
        pip_requirements=serving_requirements(),
        signature=signature,
        input_example=example,
        registered_model_name=name,
        await_registration_for=60,
    )
    return info, scorer


def _selection_value(tags: Mapping[str, str]) -> float | None:
    try:
        value = float(tags[SELECTION_TAG])
    except (KeyError, ValueError):
        return None
    return None if math.isnan(value) else value


def champion_version(name: str) -> Any | None:
    """The model version the ``champion`` alias points to, or None."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def promote_if_not_worse(name: str, version: str) -> dict[str, Any]:
    """Move the ``champion`` alias to ``version`` unless the current champion scores higher on
    :data:`SELECTION_TAG`. A version without that metric takes the alias only from no champion or
    from one without it. Returns {promoted, champion (the version it points to), metric, value,
    previous (the champion's value, or None)}."""
    from mlflow import MlflowClient

    client = MlflowClient()
    new = _selection_value(client.get_model_version(name, version).tags)
    current = champion_version(name)
    previous = _selection_value(current.tags) if current is not None else None
    if current is None:
        promoted = True
    elif new is None:
        promoted = previous is None
    else:
        promoted = previous is None or new >= previous
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    return {
        "promoted": promoted,
        "champion": version if promoted else str(current.version),  # MLflow gives an int
        "metric": SELECTION_TAG,
        "value": new,
        "previous": previous,
    }


def register_ensemble(
    run: Any,
    *,
    checkpoint: str | os.PathLike,
    metrics: Mapping,
    profile: str,
    headline_split: str,
    cache_dir: str | os.PathLike,
) -> dict[str, Any]:
    """Log and register the ensemble's pyfunc model, tag it, move ``champion`` if it is not worse and
    set the model card as the registered model's description when it did.

    Returns {name, version, model_id, uri, champion: promote_if_not_worse's answer}."""
    from mlflow import MlflowClient

    info, scorer = log_served_ensemble(checkpoint, name=ENSEMBLE_MODEL, cache_dir=cache_dir)
    version = str(info.registered_model_version)
    paths = [(section, headline_split, metric) for section, metric in ENSEMBLE_HEADLINE]
    values = headline(metrics, [*paths, SELECTION])
    meta = scorer.model.meta
    _tag_version(
        ENSEMBLE_MODEL,
        version,
        version_tags(run, values),
        f"PrivObfNet Model-Image as a pyfunc model (profile {profile}): image file bytes in "
        "(column image), privacy_score and one probability per attribute out; the checkpoint "
        f"{Path(checkpoint).name} (Model-Image and Model-Cropped) is its artifact.",
    )
    champion = promote_if_not_worse(ENSEMBLE_MODEL, version)
    if champion["promoted"]:
        card = model_card(
            metrics,
            profile=profile,
            dataset=str(meta.get("dataset", "unknown")),
            input_size=int(meta["input_size"]),
            backbone=str(meta["backbone"]),
            source=f"version {version}, registered by the evaluate run {run.run_id}",
        )
        MlflowClient().update_registered_model(ENSEMBLE_MODEL, description=fit_description(card))
    return {
        "name": ENSEMBLE_MODEL,
        "version": version,
        "model_id": info.model_id,
        "uri": f"models:/{ENSEMBLE_MODEL}/{version}",
        "champion": champion,
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
    ensemble_checkpoint: Path,
    ensemble_split: str,
    deeplab: torch.nn.Module,
    deeplab_checkpoint: Path,
    deeplab_description: str,
    cache_dir: str | os.PathLike,
) -> dict[str, dict]:
    """Log and register both final models of the evaluate stage with their headline metrics."""
    ensemble = register_ensemble(
        run,
        checkpoint=ensemble_checkpoint,
        metrics=metrics,
        profile=profile,
        headline_split=ensemble_split,
        cache_dir=cache_dir,
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
