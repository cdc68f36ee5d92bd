"""Stage `train_deeplab`: DeepLabV2 trained on the pseudo-labels (or the ground truth), then scored.

Trains on ``<pseudo_labels.out_dir>/<image_id>.png`` for the images of ``deeplab.train_split``
(``deeplab.labels: ground_truth``: on the manifest's masks instead, the fully supervised ceiling),
with poly lr, random scale, crop and flip. Every ``deeplab.checkpoint_every`` iterations
``checkpoints/deeplab/last.pt`` keeps model, optimizer, RNG state and loss history; a restarted
run resumes from it and ends with the weights an uninterrupted run would have (CPU). At the end:
``checkpoints/deeplab/final.pt`` (weights, config, class names), the ground-truth mIoU on
``deeplab.eval_split`` in ``reports/metrics/train_deeplab.json``, and the loss curve in
``reports/plots/train_deeplab_loss.csv``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from privobfnet.config import Config, ConfigError, DeeplabConfig
from privobfnet.data.errors import DataError
from privobfnet.data.images import load_mask, load_rgb
from privobfnet.data.manifest import read_manifest
from privobfnet.metrics import confusion_matrix, segmentation_scores
from privobfnet.models.deeplabv2 import DeepLabV2, build_deeplab, checkpoint_payload, optimizer_param_groups
from privobfnet.segmentation import (
    batch_keys,
    images_to_tensor,
    poly_lr,
    predict_segmentation,
    random_scale_crop_flip,
    segmentation_loss,
)
from ops.common import atomic_path, atomic_write_text, load_params, write_metrics
from ops.tracking import stage_run

STAGE = "train_deeplab"
PARAM_SECTIONS = ["data", "deeplab", "pseudo_labels"]
CHECKPOINT_DIR = Path("checkpoints/deeplab")
LOSS_PLOT = Path("reports/plots/train_deeplab_loss.csv")
BACKGROUND = "background"  # label 0; class i of the manifest is label i + 1
GPU_LOADER_WORKERS = 6  # on CPU the main process loads: 160 px images cost ~1 ms, the step ~1 s


class TrainingSamples(Dataset):
    """Augmented (image, label) crops, uint8 (S, S, 3) and (S, S); keys come from ``batch_keys``."""

    def __init__(self, image_paths: list[str], label_paths: list[str], *, cfg: Config, n_labels: int):
        self.image_paths, self.label_paths = image_paths, label_paths
        self.cfg, self.n_labels = cfg, n_labels

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, key: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, *sample_seed = key
        max_pixels = self.cfg.data.max_image_pixels
        image = load_rgb(self.image_paths[index], max_pixels=max_pixels)
        label = load_mask(self.label_paths[index], n_classes=self.n_labels, max_pixels=max_pixels)
        if image.shape[:2] != label.shape:
            raise DataError(self.label_paths[index], "label size differs from its image", f"{label.shape}")
        image, label = random_scale_crop_flip(
            image, label, rng=np.random.default_rng(sample_seed),
            scale_range=self.cfg.deeplab.scale_range, crop_size=self.cfg.deeplab.crop_size,
        )
        return torch.from_numpy(image), torch.from_numpy(label)


class IterationBatches:
    """Batch sampler over iterations ``start``..``total``-1 (one batch of keys each)."""

    def __init__(self, *, n_images: int, batch_size: int, seed: int, start: int, total: int):
        self.n_images, self.batch_size, self.seed = n_images, batch_size, seed
        self.start, self.total = start, total

    def __iter__(self):
        for iteration in range(self.start, self.total):
            yield batch_keys(n_images=self.n_images, batch_size=self.batch_size, iteration=iteration, seed=self.seed)

    def __len__(self) -> int:
        return self.total - self.start


def training_label_paths(cfg: Config, manifest: pd.DataFrame) -> list[str]:
    """The label file of each training image: its pseudo-label, or its ground-truth mask."""
    if cfg.deeplab.labels == "ground_truth":
        missing = manifest.loc[manifest["mask_path"].isna(), "image_id"].tolist()
        if missing:
            raise DataError(cfg.data.manifest_dir, "deeplab.labels is ground_truth but images lack masks",
                            f"{len(missing)} images, e.g. {missing[:3]}")
        return manifest["mask_path"].astype(str).tolist()
    paths = [str(Path(cfg.pseudo_labels.out_dir) / f"{image_id}.png") for image_id in manifest["image_id"]]
    absent = [p for p in paths if not Path(p).is_file()]
    if absent:
        raise DataError(absent[0], "pseudo-label missing (run the pseudo_labels stage)", f"{len(absent)} missing")
    return paths


def check_settings(d: DeeplabConfig) -> None:
    """Refuse settings the types allow but training cannot use, naming the key."""
    if len(d.scale_range) != 2 or not 0 < d.scale_range[0] <= d.scale_range[1]:
        raise ConfigError(f"deeplab.scale_range: needs [min, max] with 0 < min <= max, got {d.scale_range}")
    for key in ("iterations", "batch_size", "crop_size", "checkpoint_every"):
        if getattr(d, key) < 1:
            raise ConfigError(f"deeplab.{key}: must be >= 1, got {getattr(d, key)}")


def resume_key(cfg: Config) -> str:
    """Identifies what a checkpoint was trained on and how; a checkpoint with another key is not resumed."""
    return cfg.params_hash("seed", "data", "deeplab", "pseudo_labels")


def log_loss_history(run, rows: list[tuple[int, float, float]]) -> None:
    """Per-step loss and lr to the MLflow run, in batches (one call per step costs ~30 ms)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(name, value, now, step) for step, loss, lr in rows for name, value in (("loss", loss), ("lr", lr))]
    client = MlflowClient()
    for i in range(0, len(metrics), 1000):  # MLflow's limit per batch
        client.log_batch(run.run_id, metrics=metrics[i:i + 1000])


def evaluate(model: DeepLabV2, manifest: pd.DataFrame, *, cfg: Config, n_labels: int, device) -> tuple[np.ndarray, int]:
    """Confusion matrix of full-image predictions against the ground-truth masks, and the image count."""
    cm = np.zeros((n_labels, n_labels), dtype=np.int64)
    rows = manifest[manifest["mask_path"].notna()]
    max_pixels = cfg.data.max_image_pixels
    for row in rows.itertuples(index=False):
        image = load_rgb(row.path, max_pixels=max_pixels)
        mask = load_mask(row.mask_path, n_classes=n_labels - 1, max_pixels=max_pixels)
        cm += confusion_matrix(predict_segmentation(model, image, device), mask, n_labels)
    return cm, len(rows)


def main(cfg: Config) -> dict:
    """Train, checkpoint, evaluate; returns the metrics written to reports/metrics/train_deeplab.json."""
    d = cfg.deeplab
    check_settings(d)
    device = torch.device(d.device)
    if d.num_threads:
        torch.set_num_threads(d.num_threads)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    manifest_dir = Path(cfg.data.manifest_dir)
    train_manifest = read_manifest(manifest_dir / f"{d.train_split}.parquet")
    eval_manifest = read_manifest(manifest_dir / f"{d.eval_split}.parquet")
    class_names = [BACKGROUND, *train_manifest.attrs["class_names"]]
    n_labels = len(class_names)
    samples = TrainingSamples(
        train_manifest["path"].astype(str).tolist(), training_label_paths(cfg, train_manifest),
        cfg=cfg, n_labels=n_labels - 1,
    )
    last_path, final_path = CHECKPOINT_DIR / "last.pt", CHECKPOINT_DIR / "final.pt"

    with stage_run(STAGE, cfg, PARAM_SECTIONS) as run:
        # ---- model, optimizer, resume -----------------------------------------------------------
        torch.manual_seed(cfg.seed)
        model = build_deeplab(d, n_classes=n_labels).to(device, memory_format=torch.channels_last)
        groups = optimizer_param_groups(model, weight_decay=d.weight_decay)
        optimizer = torch.optim.SGD(groups, lr=d.lr, momentum=d.momentum)
        start, history, seconds = 0, [], 0.0
        if last_path.exists():
            state = torch.load(last_path, map_location="cpu", weights_only=True)
            if state["resume_key"] == resume_key(cfg):
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                torch.set_rng_state(state["torch_rng"])
                start, history, seconds = state["iteration"], [tuple(r) for r in state["history"]], state["seconds"]
                log_loss_history(run, history)
                print(f"{STAGE}: resuming from {last_path} at iteration {start}")
            else:
                print(f"{STAGE}: {last_path} was trained with other params; starting afresh")
        run.set_tags({"resumed_from_iteration": start})

        def save_last(iteration: int) -> None:
            state = {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "iteration": iteration,
                "history": history, "seconds": seconds, "torch_rng": torch.get_rng_state(),
                "resume_key": resume_key(cfg),
            }
            with atomic_path(last_path) as tmp:
                torch.save(state, tmp)

        def step(images: torch.Tensor, labels: torch.Tensor) -> float:
            loss = segmentation_loss(model(images_to_tensor(images, device)), labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss.item()

        # ---- train ----------------------------------------------------------------------------
        loader = DataLoader(
            samples,
            batch_sampler=IterationBatches(
                n_images=len(samples), batch_size=d.batch_size, seed=cfg.seed, start=start, total=d.iterations
            ),
            num_workers=0 if device.type == "cpu" else GPU_LOADER_WORKERS,
            pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed),  # the global RNG stays untouched
        )
        model.train()
        logged = len(history)
        progress = tqdm(total=d.iterations, initial=start, desc=STAGE, unit="it", dynamic_ncols=True, mininterval=1.0)
        tick = time.perf_counter()
        for iteration, (images, labels) in enumerate(loader, start=start):
            lr = poly_lr(d.lr, iteration, d.iterations, d.poly_power)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_mult"]
            loss = step(images, labels)
            history.append((iteration + 1, loss, lr))
            progress.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", refresh=False)
            progress.update()
            done = iteration + 1
            if done % d.checkpoint_every == 0 and done < d.iterations:
                seconds += time.perf_counter() - tick
                tick = time.perf_counter()
                save_last(done)
                log_loss_history(run, history[logged:])
                logged = len(history)
        seconds += time.perf_counter() - tick
        progress.close()
        log_loss_history(run, history[logged:])

        with atomic_path(final_path) as tmp:
            torch.save(checkpoint_payload(model, d, class_names=class_names, iteration=d.iterations), tmp)
        last_path.unlink(missing_ok=True)  # finished: a re-run (say after a code change) starts afresh

        # ---- evaluate -------------------------------------------------------------------------
        tick = time.perf_counter()
        cm, n_eval = evaluate(model, eval_manifest, cfg=cfg, n_labels=n_labels, device=device)
        tail = [loss for _, loss, _ in history[-max(1, d.iterations // 20):]]
        metrics = {
            **segmentation_scores(cm, class_names),
            "labels": d.labels,
            "eval_split": d.eval_split,
            "eval_images": n_eval,
            "train_images": len(samples),
            "iterations": d.iterations,
            "final_loss": round(float(np.mean(tail)), 4),
            "train_seconds": round(seconds, 2),
            "images_per_second": round(d.iterations * d.batch_size / seconds, 2) if seconds else None,
            "eval_seconds": round(time.perf_counter() - tick, 2),
        }
        write_metrics(STAGE, metrics)
        csv = "step,loss,lr\n" + "".join(f"{s},{loss:.6f},{lr:.6g}\n" for s, loss, lr in history)
        atomic_write_text(LOSS_PLOT, csv)
        run.log_metrics({k: v for k, v in metrics.items() if k != "per_class_iou"})
        run.log_metrics({"iou": metrics["per_class_iou"]})
        run.log_artifact(LOSS_PLOT, "plots")
    return metrics


if __name__ == "__main__":
    main(load_params())
