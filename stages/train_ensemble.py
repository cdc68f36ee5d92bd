"""Stage `train_ensemble`: train Model-Image and Model-Cropped together (paper eq. 1-5).

Reads the manifests, the prior masks of the `masks` stage and the mask-type table; writes
``checkpoints/ensemble/final.pt`` (both networks, their config embedded), the attribute and
privacy-score metrics of ``train.eval_split`` to ``reports/metrics/train_ensemble.json`` and the
loss curve to ``reports/plots/train_ensemble_loss.csv``; MLflow gets per-step losses, the metrics
and CAM overlay figures.

Restartable: every ``train.checkpoint_every`` iterations ``checkpoints/ensemble/last.pt`` holds
both networks, the optimizer, the RNG state, the iteration (which fixes the data order position:
each epoch's order is a function of seed and epoch) and the loss history. A killed run restarted
with the same params continues from it and ends with the same weights as an uninterrupted run.
"""
from __future__ import annotations

import os

# Read when OpenMP starts (first torch op): threads waiting at a barrier sleep instead of spinning.
# On 2 cores that another process also uses, spinning made 2-thread steps 3-6x slower (measured).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import csv
import hashlib
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from privobfnet.config import Config
from privobfnet.data.images import load_rgb
from privobfnet.data.manifest import labels_matrix, read_manifest
from privobfnet.data.mask_types import load_mask_types
from privobfnet.eval_metrics import attribute_accuracy, mean_average_precision, privacy_metrics
from privobfnet.inference import attention_at, attention_figure
from privobfnet.models.ensemble import build_model, ensemble_checkpoint, model_meta
from privobfnet.models.inputs import normalize, resize_sample
from privobfnet.models.training import LOSS_NAMES, Batch, ensemble_losses, epoch_batches
from ops.common import atomic_path, load_params, write_metrics
from stages.ensemble_data import mask_paths
from ops.tracking import stage_run

STAGE = "train_ensemble"
PARAM_SECTIONS = ["data", "masks", "train"]
CHECKPOINT_DIR = Path("checkpoints/ensemble")
LOSS_CSV = Path("reports/plots/train_ensemble_loss.csv")
NEW_LAYER_LR_MULT = 10.0
N_FIGURE_IMAGES = 4


def _gray(path: Path) -> np.ndarray:
    """An 8-bit mask PNG as (H, W) uint8."""
    with Image.open(path) as img:
        return np.asarray(img.convert("L"))


class SplitData:
    """One split's images with their prior masks at the training size; labels and scores as tensors.

    Samples are decoded and resized on first use and kept in memory when the whole split fits in
    ``CACHE_BYTES`` (the default profile: 40 MB); larger splits are re-read from disk every time.
    """

    CACHE_BYTES = 2 << 30

    def __init__(self, cfg: Config, manifest: pd.DataFrame, masks: dict[str, tuple[Path | None, Path | None]]):
        self.image_ids = manifest["image_id"].tolist()
        self.class_names = list(manifest.attrs["class_names"])
        self.labels = torch.from_numpy(labels_matrix(manifest).astype(np.float32))  # (N, C)
        self.scores = torch.tensor(manifest["privacy_score"].astype("float64").fillna(np.nan).to_numpy(),
                                   dtype=torch.float32)  # (N,), NaN where the data set has none
        self._paths = manifest["path"].tolist()
        self._masks = [masks[i] for i in self.image_ids]
        self._size, self._max_pixels = cfg.train.input_size, cfg.data.max_image_pixels
        self._grayscale = cfg.data.allow_grayscale
        self._cache: dict[int, tuple] | None = {} if len(self) * 5 * self._size ** 2 <= self.CACHE_BYTES else None

    def __len__(self) -> int:
        return len(self.image_ids)

    def _sample(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        image = load_rgb(self._paths[index], max_pixels=self._max_pixels, allow_grayscale=self._grayscale)
        human, text = (_gray(path) for path in self._masks[index])
        rgb, human_t, text_t = resize_sample(image, human, text, self._size)
        sample = (rgb, (human_t * 255).round().to(torch.uint8), (text_t * 255).round().to(torch.uint8))
        if self._cache is not None:
            self._cache[index] = sample
        return sample

    def stack(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (B, 3, S, S) uint8 images, (B, 1, S, S) human and text masks as float in [0, 1]."""
        rgb, human, text = zip(*(self._sample(i) for i in indices))
        return torch.stack(rgb), torch.stack(human).float() / 255, torch.stack(text).float() / 255


def load_split(cfg: Config, split: str) -> SplitData:
    """A split's manifest joined with the masks stage's index (every image must have its masks)."""
    manifest = read_manifest(Path(cfg.data.manifest_dir) / f"{split}.parquet")
    masks = mask_paths(cfg)
    missing = [i for i in manifest["image_id"] if i not in masks]
    if missing:
        raise ValueError(f"{Path(cfg.masks.out_dir) / 'index.parquet'}: no masks for {len(missing)} {split} images, "
                         f"e.g. {missing[:3]} (re-run the masks stage)")
    return SplitData(cfg, manifest, masks)


def lr_at(cfg: Config, epoch: int) -> float:
    """Step decay: ``train.lr`` until ``lr_decay_epoch``, then times ``lr_decay_factor``."""
    t = cfg.train
    return t.lr * (t.lr_decay_factor if epoch >= t.lr_decay_epoch else 1.0)


def fingerprint(cfg: Config, data: SplitData) -> str:
    """What a checkpoint must match to be resumed: seed, data set, train params, training images."""
    payload = json.dumps({"seed": cfg.seed, "dataset": cfg.data.dataset, "train": cfg.section_dict("train"),
                          "images": data.image_ids}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save through a temp file, so a kill mid-write leaves the previous checkpoint intact."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def setup_torch(cfg: Config) -> torch.device:
    """Threads, determinism and the seed; returns the training device."""
    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    device = torch.device(cfg.train.device)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(cfg.seed)
    return device


def build_training(cfg: Config, mask_types: list[str], device: torch.device):
    """Model-Image, Model-Cropped (train mode, channels_last) and their SGD (lr x10 on new layers)."""
    t = cfg.train
    build = dict(backbone=t.backbone, tiny_width=t.tiny_width, pretrained=t.pretrained, mask_types=mask_types,
                 background_channel=t.crop_target == "l2g", use_mask_weighting=t.use_mask_weighting)
    model_image = build_model(**build).to(device, memory_format=torch.channels_last).train()
    model_cropped = build_model(**build).to(device, memory_format=torch.channels_last).train()
    groups = [*model_image.param_groups(), *model_cropped.param_groups()]
    lr_mults = [1.0, NEW_LAYER_LR_MULT, 1.0, NEW_LAYER_LR_MULT]
    optimizer = torch.optim.SGD([{"params": g, "lr_mult": m} for g, m in zip(groups, lr_mults)],
                                lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    return model_image, model_cropped, optimizer


def make_batch(data: SplitData, indices: list[int], device: torch.device, generator: torch.Generator) -> Batch:
    """Stack samples, flip each horizontally with probability 1/2, normalise."""
    rgb, human, text = data.stack(indices)  # (B, 3, S, S) uint8, (B, 1, S, S) float x2
    flip = torch.rand(len(indices), generator=generator) < 0.5
    rgb[flip], human[flip], text[flip] = rgb[flip].flip(-1), human[flip].flip(-1), text[flip].flip(-1)
    return Batch(normalize(rgb.to(device)), human.to(device), text.to(device),
                 data.labels[indices].to(device), data.scores[indices].to(device))


@torch.no_grad()
def predict_split(model, data: SplitData, device: torch.device, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Model-Image on every image of a split -> (N, C) attribute probabilities, (N,) privacy scores."""
    model.eval()
    probs, scores = [], []
    for start in range(0, len(data), batch_size):
        rgb, human, text = data.stack(list(range(start, min(start + batch_size, len(data)))))
        out = model(normalize(rgb.to(device)), human.to(device), text.to(device))
        probs.append(torch.sigmoid(out.attribute_logits).cpu())
        scores.append(out.privacy.cpu())
    return torch.cat(probs).numpy(), torch.cat(scores).numpy()


def evaluation_metrics(probs: np.ndarray, scores: np.ndarray, data: SplitData) -> dict:
    """Table 3 (attribute accuracy, mAP) and Table 2 (privacy L1 / Pearson / Spearman) numbers."""
    labels = data.labels.numpy()
    accuracy = attribute_accuracy(probs, labels)
    m_ap, ap = mean_average_precision(probs, labels)
    names = data.class_names
    return {
        "attribute_mean_accuracy": float(accuracy.mean()),
        "attribute_map": m_ap,
        "privacy": privacy_metrics(scores, data.scores.numpy()),
        "attribute_accuracy": {n: float(a) for n, a in zip(names, accuracy)},
        "attribute_ap": {n: (None if math.isnan(a) else float(a)) for n, a in zip(names, ap)},
        "eval_images": len(data),
    }


@torch.no_grad()
def log_overlays(run, model, data: SplitData, device: torch.device, name: str) -> None:
    """CAM overlays of the first eval images as an MLflow artifact."""
    model.eval()
    indices = list(range(min(N_FIGURE_IMAGES, len(data))))
    rgb, human, text = data.stack(indices)
    out = model(normalize(rgb.to(device)), human.to(device), text.to(device))
    attention = attention_at(out.cam_logits, model.n_classes, tuple(rgb.shape[-2:])).cpu().numpy()
    probs = torch.sigmoid(out.attribute_logits).cpu().numpy()
    images = rgb.permute(0, 2, 3, 1).numpy()
    figure = attention_figure(images, attention, probs, data.labels[indices].numpy(), data.class_names)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.png"
        figure.savefig(path, dpi=90)
        run.log_artifact(path, "cam_overlays")
    model.train()


def finite(value):
    """NaN -> None, recursively (JSON has no NaN; undefined metrics are null)."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value


def write_loss_csv(history: list[dict]) -> None:
    """The loss curve (one row per iteration) for ``dvc plots``."""
    columns = ["step", "epoch", "lr", "total", *LOSS_NAMES]
    with atomic_path(LOSS_CSV) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(history)


def main(cfg: Config) -> dict:
    """Train (or resume), evaluate on ``train.eval_split``, write checkpoint, metrics and loss curve."""
    t = cfg.train
    with stage_run(STAGE, cfg, PARAM_SECTIONS) as run:
        # ---- data and models ------------------------------------------------------------
        device = setup_torch(cfg)
        train_data = load_split(cfg, t.train_split)
        eval_data = load_split(cfg, t.eval_split)
        mask_types = load_mask_types(cfg.data.dataset, train_data.class_names)
        model_image, model_cropped, optimizer = build_training(cfg, mask_types, device)
        iters_per_epoch = len(train_data) // t.batch_size
        if iters_per_epoch == 0:
            raise ValueError(f"train.batch_size {t.batch_size} exceeds the {len(train_data)} training images")
        total_iters = iters_per_epoch * t.epochs
        # ---- resume ---------------------------------------------------------------------
        last_path, start, history = CHECKPOINT_DIR / "last.pt", 0, []
        run_fingerprint = fingerprint(cfg, train_data)
        if last_path.exists():
            state = torch.load(last_path, map_location="cpu", weights_only=True)
            if state["fingerprint"] == run_fingerprint:
                model_image.load_state_dict(state["model_image"])
                model_cropped.load_state_dict(state["model_cropped"])
                optimizer.load_state_dict(state["optimizer"])
                torch.set_rng_state(state["rng"]["torch"])
                if device.type == "cuda" and state["rng"]["cuda"] is not None:
                    torch.cuda.set_rng_state_all(state["rng"]["cuda"])
                start, history = state["iteration"], state["history"]
                tqdm.write(f"{STAGE}: resuming at iteration {start} of {total_iters}")
            else:
                tqdm.write(f"{STAGE}: {last_path} is from other params or data; starting over")
        run.set_tags({"privobfnet.resumed_from": start})
        # ---- loop -----------------------------------------------------------------------
        started = time.perf_counter()
        bar = tqdm(total=total_iters, initial=start, desc=STAGE, unit="it", mininterval=1.0)
        for epoch in range(start // iters_per_epoch, t.epochs):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(cfg, epoch) * group["lr_mult"]
            order = epoch_batches(len(train_data), t.batch_size, seed=cfg.seed, epoch=epoch)
            for position, indices in enumerate(order):
                iteration = epoch * iters_per_epoch + position
                if iteration < start:
                    continue
                generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + iteration)  # flips and crops
                losses = ensemble_losses(model_image, model_cropped,
                                         make_batch(train_data, indices, device, generator), t, generator=generator)
                optimizer.zero_grad(set_to_none=True)
                losses["total"].backward()
                optimizer.step()
                values = {k: v.item() for k, v in losses.items()}
                history.append({"step": iteration + 1, "epoch": epoch, "lr": lr_at(cfg, epoch), **values})
                run.log_metrics({f"loss.{k}": v for k, v in values.items()}, step=iteration + 1)
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{values['total']:.3f}", refresh=False)
                if (iteration + 1) % t.checkpoint_every == 0 and iteration + 1 < total_iters:
                    save_checkpoint(last_path, {
                        "fingerprint": run_fingerprint, "iteration": iteration + 1, "history": history,
                        "model_image": model_image.state_dict(), "model_cropped": model_cropped.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "rng": {"torch": torch.get_rng_state(),
                                "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None}})
            if epoch in (0, t.lr_decay_epoch - 1, t.epochs - 1):
                log_overlays(run, model_image, eval_data, device, f"epoch_{epoch + 1:03d}")
        bar.close()
        train_seconds = time.perf_counter() - started
        # ---- evaluate and write -----------------------------------------------------------
        probs, scores = predict_split(model_image, eval_data, device, t.batch_size)
        metrics = finite(evaluation_metrics(probs, scores, eval_data))
        trained = total_iters - start
        metrics.update(iterations=total_iters, resumed_from=start, train_seconds=round(train_seconds, 2),
                       train_images_per_second=round(trained * t.batch_size / max(train_seconds, 1e-9), 2),
                       final_loss=history[-1]["total"] if history else None, eval_split=t.eval_split)
        meta = model_meta(backbone=t.backbone, tiny_width=t.tiny_width, mask_types=mask_types,
                          class_names=train_data.class_names, background_channel=t.crop_target == "l2g",
                          use_mask_weighting=t.use_mask_weighting, input_size=t.input_size, seed=cfg.seed,
                          dataset=cfg.data.dataset, config={"train": cfg.section_dict("train")["train"]},
                          metrics={k: v for k, v in metrics.items() if not isinstance(v, dict)})
        save_checkpoint(CHECKPOINT_DIR / "final.pt", ensemble_checkpoint(model_image, model_cropped, meta))
        last_path.unlink(missing_ok=True)  # a finished run never resumes
        write_loss_csv(history)
        write_metrics(STAGE, metrics)
        run.log_metrics(metrics)
        run.log_artifact(LOSS_CSV, "plots")
    return metrics


if __name__ == "__main__":
    main(load_params())
