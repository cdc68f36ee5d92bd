"""Stage `evaluate`: the final models on the held-out splits.

DeepLabV2 mIoU (full-image inference, no CRF) on every evaluated split that has ground-truth masks;
Model-Image's privacy score (L1 / Pearson / Spearman, paper Table 2) and attribute accuracy and mAP
(Table 3; mAP is VISPR's official metric) on every evaluated split. Evaluated splits: the two
configured eval splits (``train.eval_split``, ``deeplab.eval_split``) plus ``val`` and ``test``
where the data set has them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from privobfnet.config import Config
from privobfnet.data.images import load_mask, load_rgb
from privobfnet.data.manifest import read_manifest
from privobfnet.metrics import segmentation_scores
from privobfnet.models.deeplabv2 import load_deeplab
from privobfnet.models.ensemble import load_ensemble
from privobfnet.segmentation import predict_segmentation
from privobfnet.viz import overlay
from ops.common import atomic_path, load_params, write_metrics
from stages.ensemble_data import ENSEMBLE_CHECKPOINT
from ops.registry import DEEPLAB_MODEL, ENSEMBLE_MODEL, register_model
from stages.train_deeplab import evaluate as deeplab_confusion
from stages.train_ensemble import evaluation_metrics, finite, load_split, predict_split
from ops.tracking import stage_run

DEEPLAB_CHECKPOINT = Path("checkpoints/deeplab/final.pt")
FIGURE_PATH = Path("reports/figures/deeplab_predictions.png")
PARAM_SECTIONS = ["train", "deeplab"]
N_FIGURE = 6


def evaluated_splits(cfg: Config) -> list[str]:
    """The configured eval splits, then val and test where the data set has them (no duplicates)."""
    named = [cfg.deeplab.eval_split, cfg.train.eval_split, "val", "test"]
    return [s for s in dict.fromkeys(named) if s in cfg.data.splits]


def predictions_figure(model, manifest, cfg: Config, device) -> Figure:
    """Image, ground truth and DeepLab prediction for the first images with masks."""
    rows = manifest[manifest["mask_path"].notna()].head(N_FIGURE)
    n_classes = len(manifest.attrs["class_names"])
    fig = Figure(figsize=(6.6, 2.2 * max(1, len(rows))), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(1, len(rows)), 3, squeeze=False)
    for row, ax in zip(rows.itertuples(index=False), axes):
        image = load_rgb(row.path, max_pixels=cfg.data.max_image_pixels)
        truth = load_mask(row.mask_path, n_classes=n_classes, max_pixels=cfg.data.max_image_pixels)
        panels = [(image, row.image_id), (overlay(image, np.where(truth == 255, 0, truth).astype(np.uint8)),
                                         "ground truth"),
                  (overlay(image, predict_segmentation(model, image, device)), "DeepLabV2")]
        for a, (picture, title) in zip(ax, panels):
            a.imshow(picture)
            a.set_title(title, fontsize=7)
            a.set_axis_off()
    return fig


def main(cfg: Config) -> dict:
    """Evaluate both final models; writes reports/metrics/evaluate.json and the predictions figure."""
    device = torch.device(cfg.deeplab.device)
    if cfg.deeplab.num_threads:
        torch.set_num_threads(cfg.deeplab.num_threads)
    with stage_run("evaluate", cfg, PARAM_SECTIONS) as run:
        model_image, _, _ = load_ensemble(ENSEMBLE_CHECKPOINT, device)
        deeplab, deeplab_meta = load_deeplab(DEEPLAB_CHECKPOINT, device)
        n_labels = len(deeplab_meta["class_names"])
        metrics: dict = {"splits": evaluated_splits(cfg), "crf": False,
                         "segmentation": {}, "privacy": {}, "attributes": {}}
        for split in metrics["splits"]:
            manifest = read_manifest(Path(cfg.data.manifest_dir) / f"{split}.parquet")
            cm, n_images = deeplab_confusion(deeplab, manifest, cfg=cfg, n_labels=n_labels, device=device)
            if n_images:
                metrics["segmentation"][split] = {**segmentation_scores(cm, deeplab_meta["class_names"]),
                                                  "images": n_images}
            data = load_split(cfg, split)
            probs, scores = predict_split(model_image, data, device, cfg.train.batch_size)
            ensemble = evaluation_metrics(probs, scores, data)
            metrics["privacy"][split] = ensemble["privacy"]
            metrics["attributes"][split] = {"mean_accuracy": ensemble["attribute_mean_accuracy"],
                                            "map": ensemble["attribute_map"],
                                            "accuracy": ensemble["attribute_accuracy"],
                                            "ap": ensemble["attribute_ap"], "images": ensemble["eval_images"]}
        metrics = finite(metrics)
        figure_split = read_manifest(Path(cfg.data.manifest_dir) / f"{cfg.deeplab.eval_split}.parquet")
        with atomic_path(FIGURE_PATH) as tmp:
            predictions_figure(deeplab, figure_split, cfg, device).savefig(tmp, format="png", dpi=100)
        run.log_metrics(metrics)
        run.log_artifact(FIGURE_PATH, "figures")
        metrics["registered_models"] = register_final_models(run, cfg, metrics, model_image, deeplab)
        write_metrics("evaluate", metrics)
    return metrics


def headline(metrics: dict, *paths: tuple[str, str, str]) -> dict[str, float]:
    """{'<split>.<name>': value} for the (section, split, name) entries that are numbers."""
    out = {}
    for section, split, name in paths:
        value = metrics.get(section, {}).get(split, {}).get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{split}.{name}"] = float(value)
    return out


def register_final_models(run, cfg: Config, metrics: dict, model_image, deeplab) -> dict[str, dict]:
    """Log and register both final models with their metrics (see ops/registry.py)."""
    split = cfg.train.eval_split
    ensemble = register_model(
        run, model_image, name=ENSEMBLE_MODEL, checkpoint=ENSEMBLE_CHECKPOINT,
        headline=headline(metrics, *[("privacy", split, m) for m in ("l1", "pearson", "spearman")],
                          ("attributes", split, "map"), ("attributes", split, "mean_accuracy")),
        description=f"PrivObfNet Model-Image (profile {cfg.profile}); {ENSEMBLE_CHECKPOINT.name} holds "
                    "Model-Image and Model-Cropped. Inputs: image, human mask, text mask.")
    split = cfg.deeplab.eval_split
    deeplab_entry = register_model(
        run, deeplab, name=DEEPLAB_MODEL, checkpoint=DEEPLAB_CHECKPOINT,
        headline=headline(metrics, *[("segmentation", s, "miou") for s in metrics["segmentation"]]),
        description=f"DeepLabV2 ({cfg.deeplab.backbone}, trained on {cfg.deeplab.labels} labels, "
                    f"profile {cfg.profile}); evaluated on {split}.")
    return {"ensemble": ensemble, "deeplab": deeplab_entry}


if __name__ == "__main__":
    main(load_params())
