"""Stage `train_deeplab`: DeepLabV2 trained on the pseudo-labels (or the ground truth), then scored.

Trains on ``<pseudo_labels.out_dir>/<image_id>.png`` for the images of ``deeplab.train_split``
(``deeplab.labels: ground_truth``: on the manifest's masks instead, the fully supervised ceiling),
with poly lr, random scale, crop and flip. Restartable through ``checkpoints/deeplab/last.pt``
(``privobfnet.trainer``): each iteration's batch and augmentation are a function of (seed,
iteration), so a resumed run ends with the weights of an uninterrupted one (CPU). At the end:
``checkpoints/deeplab/final.pt`` (weights, config, class names), the ground-truth mIoU on
``deeplab.eval_split`` in ``reports/metrics/train_deeplab.json``, and the loss curve in
``reports/plots/train_deeplab_loss.csv``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ops.common import atomic_write_text, load_params, write_metrics
from ops.tracking import stage_run
from privobfnet.config import Config
from privobfnet.data.manifest import read_manifest
from privobfnet.deeplab_data import BACKGROUND, IterationBatches, TrainingSamples, split_confusion, training_label_paths
from privobfnet.metrics import segmentation_scores
from privobfnet.models.deeplabv2 import build_deeplab, checkpoint_payload, optimizer_param_groups
from privobfnet.segmentation import images_to_tensor, poly_lr, segmentation_loss
from privobfnet.trainer import (
    RESUME_TAG, Progress, apply_lr, final_loss, fingerprint, loss_csv, loss_values, resume, save_checkpoint,
    setup_torch, training_state,
)

STAGE = "train_deeplab"
PARAM_SECTIONS = ["data", "deeplab", "pseudo_labels"]
LAST_CHECKPOINT, FINAL_CHECKPOINT = Path("checkpoints/deeplab/last.pt"), Path("checkpoints/deeplab/final.pt")
LOSS_CSV = Path("reports/plots/train_deeplab_loss.csv")
GPU_LOADER_WORKERS = 6  # on CPU the main process loads: 160 px images cost ~1 ms, the step ~1 s


def main(cfg: Config) -> dict:
    """Train, checkpoint, evaluate; returns the metrics written to reports/metrics/train_deeplab.json."""
    deeplab = cfg.deeplab
    with stage_run(STAGE, cfg, PARAM_SECTIONS) as run:
        # ---- setup ---------------------------------------------------------------------------
        run.log_manifests(cfg.data.manifest_dir, cfg.data.dataset,
                          {deeplab.eval_split: "evaluation", deeplab.train_split: "training"})
        device = setup_torch(device=deeplab.device, num_threads=deeplab.num_threads, seed=cfg.seed)
        train_manifest = read_manifest(Path(cfg.data.manifest_dir) / f"{deeplab.train_split}.parquet")
        eval_manifest = read_manifest(Path(cfg.data.manifest_dir) / f"{deeplab.eval_split}.parquet")
        class_names = [BACKGROUND, *train_manifest.attrs["class_names"]]
        samples = TrainingSamples(train_manifest["path"].astype(str).tolist(),
                                  training_label_paths(cfg, train_manifest), cfg=cfg, n_labels=len(class_names) - 1)
        model = build_deeplab(deeplab, n_classes=len(class_names)).to(device, memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(optimizer_param_groups(model, weight_decay=deeplab.weight_decay), lr=deeplab.lr,
                                    momentum=deeplab.momentum)
        # ---- resume --------------------------------------------------------------------------
        run_fingerprint = fingerprint(cfg.section_dict("seed", "data", "deeplab", "pseudo_labels"))
        start, history = resume(LAST_CHECKPOINT, run_fingerprint=run_fingerprint, models={"model": model},
                                optimizer=optimizer, device=device)
        run.set_tags({RESUME_TAG: start})
        progress = Progress(STAGE, total=deeplab.iterations, start=start, log_step=run.log_step)
        progress.replay(history)
        # ---- loop ----------------------------------------------------------------------------
        batches = IterationBatches(n_images=len(samples), batch_size=deeplab.batch_size, seed=cfg.seed, start=start,
                                   total=deeplab.iterations)
        loader = DataLoader(samples, batch_sampler=batches, pin_memory=device.type == "cuda",
                            num_workers=0 if device.type == "cpu" else GPU_LOADER_WORKERS,
                            generator=torch.Generator().manual_seed(cfg.seed))  # the global RNG stays untouched
        model.train()
        for iteration, (images, labels) in enumerate(loader, start=start):
            lr = poly_lr(deeplab.lr, iteration, deeplab.iterations, deeplab.poly_power)
            apply_lr(optimizer, lr)
            loss = segmentation_loss(model(images_to_tensor(images, device)), labels.to(device))
            values = loss_values({"total": loss}, iteration=iteration + 1, last_good=LAST_CHECKPOINT)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.append({"step": iteration + 1, "lr": lr, **values})
            progress.update(history[-1])
            if (iteration + 1) % deeplab.checkpoint_every == 0 and iteration + 1 < deeplab.iterations:
                save_checkpoint(LAST_CHECKPOINT, training_state(
                    run_fingerprint=run_fingerprint, iteration=iteration + 1, history=history,
                    models={"model": model}, optimizer=optimizer, device=device))
        train_seconds = progress.close()
        save_checkpoint(FINAL_CHECKPOINT, checkpoint_payload(model, deeplab, class_names=class_names,
                                                             iteration=deeplab.iterations))
        LAST_CHECKPOINT.unlink(missing_ok=True)  # finished: a re-run (say after a code change) starts afresh
        # ---- evaluate ------------------------------------------------------------------------
        cm, n_eval = split_confusion(model, eval_manifest, max_pixels=cfg.data.max_image_pixels,
                                     n_labels=len(class_names), device=device)
        metrics = {**segmentation_scores(cm, class_names), "labels": deeplab.labels, "eval_split": deeplab.eval_split,
                   "eval_images": n_eval, "train_images": len(samples), "iterations": deeplab.iterations,
                   "final_loss": final_loss(history, deeplab.iterations)}
        run_facts = {"resumed_from": start, "train_seconds": round(train_seconds, 2),
                   "images_per_second": round(progress.steps * deeplab.batch_size / max(train_seconds, 1e-9), 2)}
        # ---- write ---------------------------------------------------------------------------
        atomic_write_text(LOSS_CSV, loss_csv(history))
        write_metrics(STAGE, metrics, run_facts)
        run.log_metrics({**{k: v for k, v in metrics.items() if k != "per_class_iou"}, **run_facts})
        run.log_metrics({"iou": metrics["per_class_iou"]})
        run.log_artifact(LOSS_CSV, "plots")
    return metrics


if __name__ == "__main__":
    main(load_params())
