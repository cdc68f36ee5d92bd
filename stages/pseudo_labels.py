"""Stage `pseudo_labels`: Model-Image's CAMs -> VOC-palette pseudo-label PNGs, scored against ground truth.

For every image of ``deeplab.train_split`` and of ``pseudo_labels.eval_splits``: multi-scale + flip
CAMs at the image's own resolution (``privobfnet.cams``), background by
``pseudo_labels.bg_threshold``. On the eval splits the CAM mIoU against the ground-truth masks is
reported for every threshold of ``pseudo_labels.bg_sweep`` (a DVC plot) and per class at the chosen
threshold. An image in several splits (VOC's train is inside train_aug) is computed once.

Only the segmentation classes (``privobfnet.labels``; no ``a0_safe``) take pixels, in the
segmentation encoding (0 background, segmentation class j -> j + 1); ground truth is converted to it.
The masks-only baseline, an untrained Model-Image (same build, mask weighting and seed) given the
same true image labels and post-processing, is scored beside it: ``splits.<split>.masks_only_cam_miou``.
"""

from __future__ import annotations

import time
from pathlib import Path

from tqdm import tqdm

from ops.outputs import ENSEMBLE_CHECKPOINT, PLOTS_DIR, figure, write_metrics
from ops.params import load_params
from ops.tracking import stage_run
from privobfnet.cams import pseudo_label, segmentation_maps
from privobfnet.config import Config
from privobfnet.data.images import load_rgb, load_truth, mask_to_image
from privobfnet.data.manifest import read_manifest
from privobfnet.data.mask_types import load_mask_types
from privobfnet.data.priors import layout_lines, read_index, stored_priors
from privobfnet.evaluation.baselines import untrained_model_image
from privobfnet.evaluation.segmentation import CamScores
from privobfnet.io import atomic_path, atomic_write_text
from privobfnet.labels import segmentation_classes
from privobfnet.logs import configure_logging
from privobfnet.models.checkpoints import load_ensemble, prior_layout
from privobfnet.runtime import setup_torch
from privobfnet.viz import overlay, overlay_attention, panels_figure, truth_overlay

SWEEP_PLOT = PLOTS_DIR / "pseudo_labels_sweep.csv"
FIGURE_PATH = figure("pseudo_labels")
N_FIGURE = 6


def main(cfg: Config) -> dict:
    """Write ``<out_dir>/<image_id>.png`` for the needed splits; returns the metrics written."""
    settings, max_pixels = cfg.pseudo_labels, cfg.data.max_image_pixels
    with stage_run("pseudo_labels", cfg) as run:
        start = time.perf_counter()
        run.log_manifests(
            cfg.data.manifest_dir,
            cfg.data.dataset,
            {
                **{split: "evaluation" for split in settings.eval_splits},
                cfg.deeplab.train_split: "pseudo_labels",
            },
        )
        device = setup_torch(
            device=cfg.train.device, num_threads=cfg.train.num_threads, seed=cfg.seed
        )
        model_image, _, meta = load_ensemble(ENSEMBLE_CHECKPOINT, device)
        seg = segmentation_classes(
            meta["class_names"], load_mask_types(cfg.data.dataset, meta["class_names"])
        )
        untrained = untrained_model_image(
            meta, seed=cfg.seed, device=device
        )  # the masks-only baseline
        priors = read_index(cfg.masks.out_dir)
        layout = prior_layout(meta)  # the priors the model was trained with (train.priors)
        lines = layout_lines(cfg, layout, meta["class_names"])
        rows, splits_of = {}, {}  # image_id -> manifest row, and the splits it is in
        for split in dict.fromkeys([cfg.deeplab.train_split, *settings.eval_splits]):
            for row in read_manifest(Path(cfg.data.manifest_dir) / f"{split}.parquet").itertuples(
                index=False
            ):
                rows[row.image_id] = row
                splits_of.setdefault(row.image_id, []).append(split)
        scores = {
            split: CamScores(seg.classes, sweep=settings.bg_sweep) for split in settings.eval_splits
        }
        baseline = {split: CamScores(seg.classes, sweep=()) for split in settings.eval_splits}
        figure_rows = []
        for image_id, row in tqdm(rows.items(), desc="pseudo_labels", mininterval=2.0):
            image = load_rgb(row.path, max_pixels=max_pixels)
            human, text = stored_priors(
                priors[image_id], image.shape[:2], layout, lines.get(image_id)
            )
            cams = segmentation_maps(
                model_image,
                image,
                human,
                text,
                seg=seg,
                scales=settings.scales,
                labels=row.labels,
                device=device,
            )  # (K, H, W)
            label = pseudo_label(
                image, cams, settings
            )  # the CRF refines what is written; the sweep stays on raw CAMs
            with atomic_path(Path(settings.out_dir) / f"{image_id}.png") as tmp:
                mask_to_image(label).save(tmp, format="PNG")
            truth = None
            scored = [s for s in splits_of[image_id] if s in scores]
            if isinstance(row.mask_path, str):
                truth = load_truth(row.mask_path, seg, max_pixels=max_pixels)
                for split in scored:
                    scores[split].add(label, cams, truth)
                if scored:
                    free = segmentation_maps(
                        untrained,
                        image,
                        human,
                        text,
                        seg=seg,
                        scales=settings.scales,
                        labels=row.labels,
                        device=device,
                    )
                    free_label = pseudo_label(image, free, settings)
                    for split in scored:
                        baseline[split].add(free_label, free, truth)
            if len(figure_rows) < N_FIGURE:
                figure_rows.append(
                    [
                        (image, image_id),
                        (truth_overlay(image, truth), "ground truth"),
                        (overlay(image, label), "pseudo-label"),
                        (
                            overlay_attention(image, cams.max(dim=0).values.numpy()),
                            "CAM (max over classes)",
                        ),
                    ]
                )
        metrics = {
            "bg_threshold": settings.bg_threshold,
            "crf": settings.crf,
            "images": len(rows),
            "classes": seg.label_names,
            "splits": {},
        }
        for split, split_scores in scores.items():
            free = baseline[split].metrics()
            metrics["splits"][split] = {
                **split_scores.metrics(),
                "masks_only_cam_miou": free["cam_miou"],
                "masks_only_pixel_accuracy": free["pixel_accuracy"],
            }
        sweep_rows = [
            f"{split},{threshold},{'' if miou is None else round(miou, 6)}\n"
            for split, split_metrics in metrics["splits"].items()
            for threshold, miou in split_metrics["sweep_miou"].items()
        ]
        atomic_write_text(SWEEP_PLOT, "split,bg_threshold,miou\n" + "".join(sweep_rows))
        with atomic_path(FIGURE_PATH) as tmp:
            panels_figure(figure_rows).savefig(tmp, format="png", dpi=100)
        write_metrics("pseudo_labels", metrics, {"seconds": round(time.perf_counter() - start, 1)})
        run.log_metrics(metrics)
        run.log_artifact(FIGURE_PATH, "figures")
    return metrics


if __name__ == "__main__":
    configure_logging()
    main(load_params())
