"""Stage `evaluate`: the final models on the held-out splits.

DeepLabV2 mIoU (full-image inference, no CRF) on every evaluated split that has ground-truth masks;
Model-Image's privacy score (L1 / Pearson / Spearman, paper Table 2) and attribute accuracy and mAP
(Table 3; mAP is VISPR's official metric) on every evaluated split. Evaluated splits: the two
configured eval splits (``train.eval_split``, ``deeplab.eval_split``) plus ``val`` and ``test``
where the data set has them. Both final models are logged and registered in MLflow; the ensemble's
``champion`` alias moves to the new version unless it is worse on val attribute mAP
(``ops/registry.py``).
"""

from __future__ import annotations

from pathlib import Path

from ops.outputs import DEEPLAB_CHECKPOINT, ENSEMBLE_CHECKPOINT, figure, write_metrics
from ops.params import load_params
from ops.registry import register_final_models
from ops.tracking import stage_run
from privobfnet.config import Config
from privobfnet.data.images import load_rgb, load_truth
from privobfnet.data.manifest import read_manifest
from privobfnet.data.splits import load_split
from privobfnet.evaluation.attributes import ensemble_metrics, frequent_attributes
from privobfnet.evaluation.baselines import background_everywhere, trivial_baselines
from privobfnet.evaluation.segmentation import segmentation_scores, split_confusion
from privobfnet.inference import predict_segmentation, predict_split
from privobfnet.io import atomic_path
from privobfnet.labels import SegmentationClasses
from privobfnet.logs import configure_logging
from privobfnet.masks.assets import default_cache_dir
from privobfnet.models.checkpoints import load_deeplab, load_ensemble, prior_layout
from privobfnet.runtime import setup_torch
from privobfnet.viz import overlay, panels_figure, truth_overlay

FIGURE_PATH = figure("deeplab_predictions")
N_FIGURE = 6


def evaluated_splits(cfg: Config) -> list[str]:
    """The configured eval splits, then val and test where the data set has them (no duplicates)."""
    named = [cfg.deeplab.eval_split, cfg.train.eval_split, "val", "test"]
    return [s for s in dict.fromkeys(named) if s in cfg.data.splits]


def main(cfg: Config) -> dict:
    """Evaluate both final models; writes reports/metrics/evaluate.json and the predictions figure."""
    max_pixels = cfg.data.max_image_pixels
    with stage_run("evaluate", cfg) as run:
        run.log_manifests(
            cfg.data.manifest_dir,
            cfg.data.dataset,
            {split: "evaluation" for split in evaluated_splits(cfg)},
        )
        device = setup_torch(
            device=cfg.deeplab.device, num_threads=cfg.deeplab.num_threads, seed=cfg.seed
        )
        model_image, _, meta = load_ensemble(ENSEMBLE_CHECKPOINT, device)
        deeplab, deeplab_meta = load_deeplab(DEEPLAB_CHECKPOINT, device)
        class_names = deeplab_meta[
            "class_names"
        ]  # background + the segmentation classes it was trained on
        eval_manifest = read_manifest(
            Path(cfg.data.manifest_dir) / f"{cfg.deeplab.eval_split}.parquet"
        )
        seg = SegmentationClasses.from_label_names(eval_manifest.attrs["class_names"], class_names)
        metrics: dict = {
            "splits": evaluated_splits(cfg),
            "crf": cfg.deeplab.crf,
            "msc_scales": list(cfg.deeplab.msc_scales),
            "segmentation": {},
            "privacy": {},
            "attributes": {},
            "baselines": {},
        }
        layout = prior_layout(meta)  # the priors the model was trained with
        train_data = load_split(cfg, cfg.train.train_split, layout)
        train_scores = train_data.scores.numpy()
        for split in metrics["splits"]:
            manifest = read_manifest(Path(cfg.data.manifest_dir) / f"{split}.parquet")
            cm, n_images = split_confusion(
                deeplab,
                manifest,
                max_pixels=max_pixels,
                seg=seg,
                device=device,
                msc_scales=cfg.deeplab.msc_scales,
                crf=cfg.deeplab.crf,
            )
            data = load_split(cfg, split, layout)
            baselines = trivial_baselines(data.labels.numpy(), data.scores.numpy(), train_scores)
            if n_images:
                metrics["segmentation"][split] = {
                    **segmentation_scores(cm, class_names),
                    "images": n_images,
                }
                baselines["background_everywhere_miou"] = segmentation_scores(
                    background_everywhere(cm), class_names
                )["miou"]
            metrics["baselines"][split] = baselines
            ensemble = ensemble_metrics(
                *predict_split(model_image, data, device, cfg.train.batch_size), data
            )
            metrics["privacy"][split] = ensemble["privacy"]
            metrics["attributes"][split] = {
                "mean_accuracy": ensemble["attribute_mean_accuracy"],
                "map": ensemble["attribute_map"],
                "accuracy": ensemble["attribute_accuracy"],
                "ap": ensemble["attribute_ap"],
                "images": ensemble["eval_images"],
                **frequent_attributes(
                    ensemble["attribute_accuracy"],
                    train_data.labels.numpy(),
                    data.labels.numpy(),
                    list(train_data.class_names),
                ),
            }
        # ---- figure: image, ground truth, prediction for the first images with masks ----------------
        figure_rows = []
        for row in (
            eval_manifest[eval_manifest["mask_path"].notna()].head(N_FIGURE).itertuples(index=False)
        ):
            image = load_rgb(row.path, max_pixels=max_pixels)
            truth = load_truth(row.mask_path, seg, max_pixels=max_pixels)
            figure_rows.append(
                [
                    (image, row.image_id),
                    (truth_overlay(image, truth), "ground truth"),
                    (overlay(image, predict_segmentation(deeplab, image, device)), "DeepLabV2"),
                ]
            )
        with atomic_path(FIGURE_PATH) as tmp:
            panels_figure(figure_rows).savefig(tmp, format="png", dpi=100)
        run.log_metrics(metrics)
        run.log_artifact(FIGURE_PATH, "figures")
        registered = register_final_models(
            run,
            profile=cfg.profile,
            metrics=metrics,
            ensemble_checkpoint=ENSEMBLE_CHECKPOINT,
            ensemble_split=cfg.train.eval_split,
            deeplab=deeplab,
            deeplab_checkpoint=DEEPLAB_CHECKPOINT,
            deeplab_description=f"DeepLabV2 ({cfg.deeplab.backbone}, trained on {cfg.deeplab.labels} labels, "
            f"profile {cfg.profile}); evaluated on {cfg.deeplab.eval_split}.",
            cache_dir=default_cache_dir(),  # the masks stage's detector files, bundled with the model
        )
        write_metrics("evaluate", metrics, {"registered_models": registered})
    return metrics


if __name__ == "__main__":
    configure_logging()
    main(load_params())
