"""Stage `train_ensemble`: train Model-Image and Model-Cropped together (paper eq. 1-5).

Reads the manifests, the prior masks of the `masks` stage and the mask-type table; writes
``checkpoints/ensemble/final.pt`` (both networks, their config embedded), the attribute and
privacy-score metrics of ``train.eval_split`` to ``reports/metrics/train_ensemble.json`` and the
loss curve to ``reports/plots/train_ensemble_loss.csv``; MLflow gets per-step losses, the metrics
and CAM overlay figures. Restartable through ``checkpoints/ensemble/last.pt`` (``privobfnet.training.loop``):
each epoch's data order is a function of (seed, epoch), each step's flips and crops of
(seed, iteration), so a resumed run ends with the weights of an uninterrupted one.

Under ``torchrun`` (``train.launcher``) both networks train in DistributedDataParallel, each rank
on its slice of every global batch of ``train.batch_size`` (``privobfnet.training.distributed``); rank 0
alone writes checkpoints, metrics, the loss curve and the MLflow run.
"""

from __future__ import annotations

import os

# Read when OpenMP starts (first torch op): threads waiting at a barrier sleep instead of spinning.
# On 2 cores that another process also uses, spinning made 2-thread steps 3-6x slower (measured).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


import numpy as np
import torch

from ops.outputs import ENSEMBLE_CHECKPOINT, ENSEMBLE_LAST, loss_plot, write_metrics
from ops.params import load_params
from ops.tracking import stage_run
from privobfnet.config import Config
from privobfnet.data.mask_types import load_mask_types
from privobfnet.data.splits import load_split
from privobfnet.evaluation.attributes import ensemble_metrics
from privobfnet.inference import predict_split
from privobfnet.io import atomic_write_text, json_digest
from privobfnet.logs import configure_logging
from privobfnet.models.checkpoints import ensemble_checkpoint, model_meta, save_checkpoint
from privobfnet.runtime import autocast, setup_torch
from privobfnet.training.distributed import gather_blocks, joined, mean_over_ranks, seed_ranks, wrap
from privobfnet.training.ensemble import (
    attention_overlays,
    build_training,
    ensemble_losses,
    epoch_batches,
    lr_at,
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

STAGE = "train_ensemble"
LAST_CHECKPOINT = ENSEMBLE_LAST
LOSS_CSV = loss_plot(STAGE)
# each step's random flips and crops come from its own generator, seeded by (seed, iteration)
STEP_SEED_STRIDE = (
    1_000_003  # a prime > any iteration count, so no two (seed, iteration) pairs share a seed
)


def overlay_epochs(cfg: Config) -> set[int]:
    """Epochs after which CAM overlays are logged: the first, the last before the lr decay, the last."""
    return {0, cfg.train.lr_decay_epoch - 1, cfg.train.epochs - 1}


def main(cfg: Config) -> dict:
    """Train (or resume), evaluate on ``train.eval_split``, write checkpoint, metrics and loss curve."""
    train = cfg.train
    with (
        joined(train.device) as (world, device),
        stage_run(STAGE, cfg, record=world.is_main, system_metrics=True) as run,
    ):
        # ---- setup ---------------------------------------------------------------------------
        run.log_manifests(
            cfg.data.manifest_dir,
            cfg.data.dataset,
            {train.eval_split: "evaluation", train.train_split: "training"},
        )
        device = setup_torch(
            device=device,
            num_threads=train.num_threads,
            seed=cfg.seed,
            cudnn_benchmark=train.cudnn_benchmark,
        )
        if train.batch_size % world.size:
            raise ValueError(
                f"train.batch_size ({train.batch_size}) is the global batch: it must split evenly "
                f"over the {world.size} processes torchrun started"
            )
        train_data, eval_data = (
            load_split(cfg, train.train_split, train.priors),
            load_split(cfg, train.eval_split, train.priors),
        )
        mask_types = load_mask_types(cfg.data.dataset, train_data.class_names)
        prior_types = train_data.layout.types  # train.priors: coarse (Table 1's) or refined
        model_image, model_cropped, optimizer = build_training(train, prior_types, device)
        models = {"model_image": model_image, "model_cropped": model_cropped}
        seed_ranks(cfg.seed, world)
        iters_per_epoch = len(train_data) // train.batch_size
        total_iters = iters_per_epoch * train.epochs
        # ---- resume --------------------------------------------------------------------------
        run_fingerprint = json_digest(
            {
                "seed": cfg.seed,
                "dataset": cfg.data.dataset,
                "train": cfg.section_dict("train"),
                "images": train_data.image_ids,
            }
        )
        start, history = resume(
            LAST_CHECKPOINT,
            run_fingerprint=run_fingerprint,
            models=models,
            optimizer=optimizer,
            device=device,
            world=world,
        )
        run.set_tags({RESUME_TAG: start})
        progress = Progress(
            STAGE, total=total_iters, start=start, log_step=run.log_step, show=world.is_main
        )
        progress.replay(history)
        # parts of the heads are idle in some steps (Model-Cropped runs without heads): DDP must look for them
        image_net = wrap(model_image, world, device, find_unused_parameters=True)
        cropped_net = wrap(model_cropped, world, device, find_unused_parameters=True)
        # ---- loop ----------------------------------------------------------------------------
        for epoch in range(start // iters_per_epoch, train.epochs):
            apply_lr(optimizer, lr_at(train, epoch))
            for position, indices in enumerate(
                epoch_batches(len(train_data), train.batch_size, seed=cfg.seed, epoch=epoch)
            ):
                iteration = epoch * iters_per_epoch + position
                if iteration < start:
                    continue
                generator = torch.Generator().manual_seed(cfg.seed * STEP_SEED_STRIDE + iteration)
                batch = train_data.batch(indices, device, generator, rows=world.rows(len(indices)))
                with autocast(device, train.precision):
                    losses = ensemble_losses(
                        image_net, cropped_net, batch, train, generator=generator, world=world
                    )
                values = loss_values(
                    mean_over_ranks(losses, world),
                    iteration=iteration + 1,
                    last_good=LAST_CHECKPOINT,
                )
                optimizer.zero_grad(set_to_none=True)
                losses["total"].backward()
                optimizer.step()
                history.append(
                    {"step": iteration + 1, "epoch": epoch, "lr": lr_at(train, epoch), **values}
                )
                progress.update(history[-1])
                if (iteration + 1) % train.checkpoint_every == 0 and iteration + 1 < total_iters:
                    state = training_state(
                        run_fingerprint=run_fingerprint,
                        iteration=iteration + 1,
                        history=history,
                        models=models,
                        optimizer=optimizer,
                        device=device,
                        world=world,
                    )
                    if world.is_main:
                        save_checkpoint(LAST_CHECKPOINT, state)
            if world.is_main and epoch in overlay_epochs(cfg):
                figure = attention_overlays(model_image, eval_data, device)
                run.log_figure(figure, f"cam_overlays/epoch_{epoch + 1:03d}.png")
                model_image.train()
        train_seconds = progress.close()
        # ---- evaluate (each rank scores a block of the split; rank 0 joins them) ---------------
        parts = gather_blocks(
            predict_split(
                model_image, eval_data, device, train.batch_size, rows=world.block(len(eval_data))
            ),
            world,
        )
        probs, scores = (np.concatenate(column) for column in zip(*parts))
        metrics = {
            **ensemble_metrics(probs, scores, eval_data),
            "iterations": total_iters,
            "final_loss": final_loss(history, total_iters),
            "eval_split": train.eval_split,
        }
        run_facts = {
            "resumed_from": start,
            "train_seconds": round(train_seconds, 2),
            "train_images_per_second": round(
                progress.steps * train.batch_size / max(train_seconds, 1e-9), 2
            ),
        }
        if world.distributed:
            run_facts["world_size"] = world.size
        if not world.is_main:
            return metrics
        # ---- write ---------------------------------------------------------------------------
        meta = model_meta(
            backbone=train.backbone,
            tiny_width=train.tiny_width,
            mask_types=mask_types,
            prior_types=list(prior_types),
            class_names=train_data.class_names,
            background_channel=train.crop_target == "l2g",
            use_mask_weighting=train.use_mask_weighting,
            input_size=train.input_size,
            seed=cfg.seed,
            dataset=cfg.data.dataset,
            config={"train": cfg.section_dict("train")["train"]},
            metrics={k: v for k, v in metrics.items() if not isinstance(v, dict)},
        )
        save_checkpoint(ENSEMBLE_CHECKPOINT, ensemble_checkpoint(model_image, model_cropped, meta))
        LAST_CHECKPOINT.unlink(missing_ok=True)  # a finished run never resumes
        atomic_write_text(LOSS_CSV, loss_csv(history))
        write_metrics(STAGE, metrics, run_facts)
        run.log_metrics({**metrics, **run_facts})
        run.log_artifact(LOSS_CSV, "plots")
    return metrics


if __name__ == "__main__":
    configure_logging()
    main(load_params())
