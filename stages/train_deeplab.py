"""Stage `train_deeplab`: DeepLabV2 trained on the pseudo-labels (or the ground truth), then scored.

Trains on ``<pseudo_labels.out_dir>/<image_id>.png`` for the images of ``deeplab.train_split``
(``deeplab.labels: ground_truth``: on the manifest's masks instead, the fully supervised ceiling),
with poly lr, random scale, crop and flip. Restartable through ``checkpoints/deeplab/last.pt``
(``privobfnet.training.loop``): each iteration's batch and augmentation are a function of (seed,
iteration), so a resumed run ends with the weights of an uninterrupted one (CPU). At the end:
``checkpoints/deeplab/final.pt`` (weights, config, class names), the ground-truth mIoU on
``deeplab.eval_split`` in ``reports/metrics/train_deeplab.json``, and the loss curve in
``reports/plots/train_deeplab_loss.csv``. DeepLab's classes are the segmentation classes
(``privobfnet.labels``: background and the attributes with a region; no ``a0_safe``).

Under ``torchrun`` (``deeplab.launcher``) DeepLab trains in DistributedDataParallel, each rank on
its slice of every global batch of ``deeplab.batch_size``; each rank scores a block of the eval
split and the confusion matrices are summed; rank 0 alone writes files and the MLflow run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ops.outputs import DEEPLAB_CHECKPOINT, DEEPLAB_LAST, loss_plot, write_metrics
from ops.params import load_params
from ops.tracking import stage_run
from privobfnet.config import Config
from privobfnet.data.manifest import read_manifest
from privobfnet.data.mask_types import load_mask_types
from privobfnet.evaluation.segmentation import segmentation_scores, split_confusion
from privobfnet.io import atomic_write_text, json_digest
from privobfnet.labels import segmentation_classes
from privobfnet.logs import configure_logging
from privobfnet.models.checkpoints import deeplab_checkpoint, save_checkpoint
from privobfnet.models.deeplabv2 import MSC, build_deeplab
from privobfnet.models.inputs import images_to_tensor
from privobfnet.runtime import autocast, setup_torch
from privobfnet.training.deeplab import (
    IterationBatches,
    TrainingSamples,
    msc_loss,
    optimizer_param_groups,
    poly_lr,
    segmentation_loss,
    training_label_paths,
)
from privobfnet.training.distributed import (
    joined,
    mean_over_ranks,
    seed_ranks,
    sum_over_ranks,
    wrap,
)
from privobfnet.training.loop import (
    RESUME_TAG,
    Progress,
    apply_lr,
    final_loss,
    loss_csv,
    loss_values,
    resume,
    training_state,
)

STAGE = "train_deeplab"
LAST_CHECKPOINT, FINAL_CHECKPOINT = DEEPLAB_LAST, DEEPLAB_CHECKPOINT
LOSS_CSV = loss_plot(STAGE)
GPU_LOADER_WORKERS = 6  # on CPU the main process loads: 160 px images cost ~1 ms, the step ~1 s


def main(cfg: Config) -> dict:
    """Train, checkpoint, evaluate; returns the metrics written to reports/metrics/train_deeplab.json."""
    deeplab = cfg.deeplab
    with (
        joined(deeplab.device) as (world, device),
        stage_run(STAGE, cfg, record=world.is_main, system_metrics=True) as run,
    ):
        # ---- setup ---------------------------------------------------------------------------
        run.log_manifests(
            cfg.data.manifest_dir,
            cfg.data.dataset,
            {deeplab.eval_split: "evaluation", deeplab.train_split: "training"},
        )
        device = setup_torch(
            device=device,
            num_threads=deeplab.num_threads,
            seed=cfg.seed,
            cudnn_benchmark=deeplab.cudnn_benchmark,
        )
        if deeplab.batch_size % world.size:
            raise ValueError(
                f"deeplab.batch_size ({deeplab.batch_size}) is the global batch: it must split evenly "
                f"over the {world.size} processes torchrun started"
            )
        train_manifest = read_manifest(
            Path(cfg.data.manifest_dir) / f"{deeplab.train_split}.parquet"
        )
        eval_manifest = read_manifest(Path(cfg.data.manifest_dir) / f"{deeplab.eval_split}.parquet")
        attributes = list(train_manifest.attrs["class_names"])
        seg = segmentation_classes(attributes, load_mask_types(cfg.data.dataset, attributes))
        class_names = seg.label_names  # background + the attributes with a region
        samples = TrainingSamples(
            train_manifest["path"].astype(str).tolist(),
            training_label_paths(cfg, train_manifest),
            cfg=cfg,
            seg=seg,
            ground_truth=deeplab.labels == "ground_truth",
        )
        memory_format = torch.channels_last if deeplab.channels_last else torch.contiguous_format
        model = build_deeplab(deeplab, n_classes=len(class_names)).to(
            device, memory_format=memory_format
        )
        optimizer = torch.optim.SGD(
            optimizer_param_groups(
                model, weight_decay=deeplab.weight_decay, scheme=deeplab.optimizer
            ),
            lr=deeplab.lr,
            momentum=deeplab.momentum,
        )
        seed_ranks(cfg.seed, world)
        # ---- resume --------------------------------------------------------------------------
        run_fingerprint = json_digest(cfg.section_dict("seed", "data", "deeplab", "pseudo_labels"))
        start, history = resume(
            LAST_CHECKPOINT,
            run_fingerprint=run_fingerprint,
            models={"model": model},
            optimizer=optimizer,
            device=device,
            world=world,
        )
        run.set_tags({RESUME_TAG: start})
        progress = Progress(
            STAGE, total=deeplab.iterations, start=start, log_step=run.log_step, show=world.is_main
        )
        progress.replay(history)
        # multi-scale training wraps the model before DDP does, so one forward serves every scale
        net = wrap(MSC(model, deeplab.msc_scales) if deeplab.msc_scales else model, world, device)
        loss_fn = msc_loss if deeplab.msc_scales else segmentation_loss
        # ---- loop ----------------------------------------------------------------------------
        batches = IterationBatches(
            n_images=len(samples),
            batch_size=deeplab.batch_size,
            seed=cfg.seed,
            start=start,
            total=deeplab.iterations,
            world=world,
        )
        loader = DataLoader(
            samples,
            batch_sampler=batches,
            pin_memory=device.type == "cuda",
            num_workers=0 if device.type == "cpu" else GPU_LOADER_WORKERS,
            generator=torch.Generator().manual_seed(cfg.seed),
        )  # the global RNG stays untouched
        net.train()
        for iteration, (images, labels) in enumerate(loader, start=start):
            lr = poly_lr(deeplab.lr, iteration, deeplab.iterations, deeplab.poly_power)
            apply_lr(optimizer, lr)
            with autocast(device, deeplab.precision):
                loss = loss_fn(
                    net(images_to_tensor(images, device).contiguous(memory_format=memory_format)),
                    labels.to(device),
                )
            values = loss_values(
                mean_over_ranks({"total": loss}, world),
                iteration=iteration + 1,
                last_good=LAST_CHECKPOINT,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.append({"step": iteration + 1, "lr": lr, **values})
            progress.update(history[-1])
            if (
                iteration + 1
            ) % deeplab.checkpoint_every == 0 and iteration + 1 < deeplab.iterations:
                state = training_state(
                    run_fingerprint=run_fingerprint,
                    iteration=iteration + 1,
                    history=history,
                    models={"model": model},
                    optimizer=optimizer,
                    device=device,
                    world=world,
                )
                if world.is_main:
                    save_checkpoint(LAST_CHECKPOINT, state)
        train_seconds = progress.close()
        if world.is_main:
            save_checkpoint(
                FINAL_CHECKPOINT,
                deeplab_checkpoint(
                    model, deeplab, class_names=class_names, iteration=deeplab.iterations
                ),
            )
            LAST_CHECKPOINT.unlink(
                missing_ok=True
            )  # finished: a re-run (say after a code change) starts afresh
        # ---- evaluate (each rank scores a block of the split; the confusion matrices add up) ----
        block = world.block(len(eval_manifest))
        cm, n_eval = split_confusion(
            model,
            eval_manifest.iloc[block.start : block.stop],
            max_pixels=cfg.data.max_image_pixels,
            seg=seg,
            device=device,
            msc_scales=deeplab.msc_scales,
        )
        cm, n_eval = (
            sum_over_ranks(cm, world, device),
            int(sum_over_ranks(np.array([n_eval]), world, device)[0]),
        )
        metrics = {
            **segmentation_scores(cm, class_names),
            "labels": deeplab.labels,
            "eval_split": deeplab.eval_split,
            "eval_images": n_eval,
            "train_images": len(samples),
            "iterations": deeplab.iterations,
            "final_loss": final_loss(history, deeplab.iterations),
        }
        run_facts = {
            "resumed_from": start,
            "train_seconds": round(train_seconds, 2),
            "images_per_second": round(
                progress.steps * deeplab.batch_size / max(train_seconds, 1e-9), 2
            ),
        }
        if world.distributed:
            run_facts["world_size"] = world.size
        if not world.is_main:
            return metrics
        # ---- write ---------------------------------------------------------------------------
        atomic_write_text(LOSS_CSV, loss_csv(history))
        write_metrics(STAGE, metrics, run_facts)
        run.log_metrics({**{k: v for k, v in metrics.items() if k != "per_class_iou"}, **run_facts})
        run.log_metrics({"iou": metrics["per_class_iou"]})
        run.log_artifact(LOSS_CSV, "plots")
    return metrics


if __name__ == "__main__":
    configure_logging()
    main(load_params())
