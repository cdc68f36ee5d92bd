"""Stage `pseudo_labels`: Model-Image's CAMs -> VOC-palette pseudo-label PNGs, scored against ground truth.

For every image of ``deeplab.train_split`` and of ``pseudo_labels.eval_splits``: multi-scale + flip
CAMs at the image's own resolution (``privobfnet.pseudo_labels``), background by
``pseudo_labels.bg_threshold``. On the eval splits the CAM mIoU against the ground-truth masks is
reported for every threshold of ``pseudo_labels.bg_sweep`` (a DVC plot) and per class at the chosen
threshold. An image in several splits (VOC's train is inside train_aug) is computed once.
"""
from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from tqdm import tqdm

from privobfnet.config import Config
from privobfnet.crf import dense_crf, scores_to_probs
from privobfnet.data.images import load_mask, load_rgb, mask_to_image
from privobfnet.data.manifest import read_manifest
from privobfnet.metrics import confusion_matrix, segmentation_scores
from privobfnet.inference import overlay_attention
from privobfnet.models.ensemble import load_ensemble
from privobfnet.models.inputs import mask_tensor, normalize
from privobfnet.pseudo_labels import cams_to_label, multiscale_cams
from privobfnet.viz import overlay
from ops.common import atomic_path, atomic_write_text, load_params, write_metrics
from stages.ensemble_data import ENSEMBLE_CHECKPOINT, mask_paths
from ops.tracking import stage_run

PARAM_SECTIONS = ["pseudo_labels"]
SWEEP_PLOT = Path("reports/plots/pseudo_labels_sweep.csv")
FIGURE_PATH = Path("reports/figures/pseudo_labels.png")
N_FIGURE = 6


def _read_prior(path: Path | None) -> np.ndarray | None:
    return None if path is None else np.asarray(Image.open(path).convert("L"))


def _figure(rows: list[tuple[np.ndarray, np.ndarray | None, np.ndarray, str, np.ndarray]]) -> Figure:
    """Per image: the image, its CAM (max over classes), ground truth and pseudo-label overlays."""
    fig = Figure(figsize=(8.8, 2.2 * len(rows)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), 4, squeeze=False)
    for (image, truth, label, image_id, cam), ax in zip(rows, axes):
        ax[0].imshow(image)
        ax[0].set_title(image_id, fontsize=7)
        if truth is not None:
            ax[1].imshow(overlay(image, np.where(truth == 255, 0, truth).astype(np.uint8)))
        ax[1].set_title("ground truth", fontsize=7)
        ax[2].imshow(overlay(image, label))
        ax[2].set_title("pseudo-label", fontsize=7)
        ax[3].imshow(overlay_attention(image, cam))
        ax[3].set_title("CAM (max over classes)", fontsize=7)
        for a in ax:
            a.set_axis_off()
    return fig


def _best(swept: dict[str, float | None]) -> float | None:
    """The swept threshold with the highest mIoU (None when the split has no ground truth)."""
    scored = {t: m for t, m in swept.items() if m is not None}
    return float(max(scored, key=scored.get)) if scored else None


def main(cfg: Config) -> dict:
    """Write ``<out_dir>/<image_id>.png`` for the needed splits; returns the metrics written."""
    p = cfg.pseudo_labels
    device = torch.device(cfg.train.device)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    with stage_run("pseudo_labels", cfg, PARAM_SECTIONS) as run:
        start = time.perf_counter()
        model_image, _, meta = load_ensemble(ENSEMBLE_CHECKPOINT, device)
        class_names = meta["class_names"]
        n_labels = len(class_names) + 1  # background + classes
        needed = list(dict.fromkeys([cfg.deeplab.train_split, *p.eval_splits]))
        manifests = {s: read_manifest(Path(cfg.data.manifest_dir) / f"{s}.parquet") for s in needed}
        priors = mask_paths(cfg)
        sweep = {s: {t: np.zeros((n_labels, n_labels), np.int64) for t in p.bg_sweep} for s in p.eval_splits}
        chosen = {s: np.zeros((n_labels, n_labels), np.int64) for s in p.eval_splits}
        out_dir = Path(p.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        splits_of: dict[str, list[str]] = {}
        rows = {}
        for split, manifest in manifests.items():
            for row in manifest.itertuples(index=False):
                splits_of.setdefault(row.image_id, []).append(split)
                rows[row.image_id] = row
        figure_rows = []

        def cam_fn(image, human, text):
            return model_image.cams(normalize(image), human, text)

        for image_id in tqdm(rows, desc="pseudo_labels", mininterval=2.0):
            row = rows[image_id]
            image = load_rgb(row.path, max_pixels=cfg.data.max_image_pixels)
            shape = image.shape[:2]
            human_path, text_path = priors[image_id]
            human = mask_tensor(_read_prior(human_path), shape)[None].to(device)
            text = mask_tensor(_read_prior(text_path), shape)[None].to(device)
            tensor = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float().to(device)
            cams = multiscale_cams(cam_fn, tensor, human, text, scales=p.scales, labels=row.labels).cpu()
            label = cams_to_label(cams, p.bg_threshold)
            if p.crf:  # refine what is written; the threshold sweep below stays on the raw CAMs
                refined = dense_crf(image, scores_to_probs(cams.numpy(), p.bg_threshold), iterations=p.crf_iterations)
                label = refined.argmax(axis=0).astype(np.uint8)
            with atomic_path(out_dir / f"{image_id}.png") as tmp:
                mask_to_image(label).save(tmp, format="PNG")
            truth = None
            if isinstance(row.mask_path, str):
                truth = load_mask(row.mask_path, n_classes=len(class_names), max_pixels=cfg.data.max_image_pixels)
                for split in (s for s in splits_of[image_id] if s in sweep):
                    chosen[split] += confusion_matrix(label, truth, n_labels)
                    for t in p.bg_sweep:
                        sweep[split][t] += confusion_matrix(cams_to_label(cams, t), truth, n_labels)
            if len(figure_rows) < N_FIGURE:
                figure_rows.append((image, truth, label, image_id, cams.max(dim=0).values.numpy()))

        names = ["background", *class_names]
        metrics: dict = {"bg_threshold": p.bg_threshold, "crf": p.crf, "images": len(rows),
                         "seconds": round(time.perf_counter() - start, 1), "splits": {}}
        plot = io.StringIO()
        writer = csv.writer(plot)
        writer.writerow(["split", "bg_threshold", "miou"])
        for split in p.eval_splits:
            scores = segmentation_scores(chosen[split], names)
            swept = {f"{t:.2f}": segmentation_scores(sweep[split][t], names)["miou"] for t in p.bg_sweep}
            for t, miou in swept.items():
                writer.writerow([split, t, round(miou, 6)])
            metrics["splits"][split] = {"cam_miou": scores["miou"], "pixel_accuracy": scores["pixel_accuracy"],
                                        "per_class_iou": scores["per_class_iou"], "sweep_miou": swept,
                                        "best_bg_threshold": _best(swept)}
        atomic_write_text(SWEEP_PLOT, plot.getvalue())
        with atomic_path(FIGURE_PATH) as tmp:
            _figure(figure_rows).savefig(tmp, format="png", dpi=100)
        write_metrics("pseudo_labels", metrics)
        run.log_metrics(metrics)
        run.log_artifact(FIGURE_PATH, "figures")
    return metrics


if __name__ == "__main__":
    main(load_params())
