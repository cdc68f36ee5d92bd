"""The checkpoint formats, defined once: the ensemble's ``final.pt``, DeepLabV2's ``final.pt``, and how
any checkpoint is written (``save_checkpoint``: atomic, byte-identical for identical content).

- ensemble: ``{"meta": ..., "model_image": state dict, "model_cropped": state dict}``; ``meta``
  (``model_meta``) holds what rebuilds the networks (backbone, mask types, class names, background
  channel, mask weighting, input size) plus the run's config and metrics;
- DeepLabV2: ``{"model": state dict, "config": the deeplab params, "class_names": background
  first, "iteration": ...}``;
- a training state (``privobfnet.training.loop.training_state``): what a resumed run needs.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Any, Mapping, Sequence

import torch

from privobfnet.config import DeeplabConfig
from privobfnet.io import atomic_path
from privobfnet.models.deeplabv2 import DeepLabV2, build_deeplab
from privobfnet.models.privobfnet import PrivObfNet, build_model
from privobfnet.priors import PriorLayout


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """torch.save through a temp file: a kill mid-write keeps the previous checkpoint.

    Saved through a buffer: torch names the zip's inner folder after the file it writes to, and the
    temp file's random name would make two identical checkpoints differ in their bytes.
    """
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def model_meta(
    *,
    backbone: str,
    tiny_width: int,
    mask_types: Sequence[str],
    class_names: Sequence[str],
    background_channel: bool,
    use_mask_weighting: bool,
    input_size: int,
    **extra: Any,
) -> dict[str, Any]:
    """The description ``load_ensemble`` rebuilds the networks from (plus any extra entries)."""
    return {
        "backbone": backbone,
        "tiny_width": tiny_width,
        "mask_types": list(mask_types),
        "class_names": list(class_names),
        "background_channel": background_channel,
        "use_mask_weighting": use_mask_weighting,
        "input_size": input_size,
        **extra,
    }


def ensemble_checkpoint(
    model_image: PrivObfNet, model_cropped: PrivObfNet, meta: dict[str, Any]
) -> dict[str, Any]:
    """What ``checkpoints/ensemble/final.pt`` holds: both state dicts and the meta (config included)."""
    return {
        "meta": meta,
        "model_image": model_image.state_dict(),
        "model_cropped": model_cropped.state_dict(),
    }


def prior_layout(meta: Mapping[str, Any]) -> PriorLayout:
    """The priors a checkpoint's model is weighted by (``privobfnet.priors``): its ``prior_types``,
    or its mask types (checkpoints from before the refined priors: the coarse layout)."""
    return PriorLayout(tuple(meta.get("prior_types", meta["mask_types"])))


def model_from_meta(meta: Mapping[str, Any]) -> PrivObfNet:
    """An untrained network of the architecture ``meta`` describes (no ImageNet weights read)."""
    return build_model(
        backbone=meta["backbone"],
        tiny_width=meta["tiny_width"],
        pretrained=None,
        mask_types=prior_layout(meta).types,
        background_channel=meta["background_channel"],
        use_mask_weighting=meta["use_mask_weighting"],
    )


def load_ensemble(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[PrivObfNet, PrivObfNet, dict]:
    """Load ``final.pt`` -> (model_image, model_cropped, meta), both in eval mode on ``device``."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    meta = checkpoint["meta"]
    models = []
    for key in ("model_image", "model_cropped"):
        model = model_from_meta(meta)
        model.load_state_dict(checkpoint[key])
        models.append(model.to(device).eval())
    return models[0], models[1], meta


def deeplab_checkpoint(
    model: DeepLabV2, cfg: DeeplabConfig, *, class_names: list[str], iteration: int
) -> dict:
    """What ``final.pt`` holds: the weights, the deeplab config, class names (background first)."""
    return {
        "model": model.state_dict(),
        "config": dataclasses.asdict(cfg),
        "class_names": list(class_names),
        "iteration": iteration,
    }


def load_deeplab(path: str | os.PathLike, device: str | torch.device) -> tuple[DeepLabV2, dict]:
    """A trained model from ``final.pt`` in eval mode, and its metadata (config, class_names ...)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    cfg = DeeplabConfig(**payload["config"])
    model = build_deeplab(cfg, n_classes=len(payload["class_names"]), load_pretrained=False)
    model.load_state_dict(payload["model"])
    meta = {k: v for k, v in payload.items() if k != "model"}
    return model.to(device).eval(), meta
