"""One split's images with their prior masks, as the ensemble trains and is scored on them.

Shared by the stages that run Model-Image: ``train_ensemble``, ``pseudo_labels``, ``evaluate``.
The prior masks come from the masks stage's ``index.parquet`` (human and text mask PNGs).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from privobfnet.config import Config
from privobfnet.data.images import load_rgb
from privobfnet.data.manifest import labels_matrix, read_manifest
from privobfnet.eval_metrics import attribute_accuracy, mean_average_precision, privacy_metrics
from privobfnet.inference import attention_at, attention_figure
from privobfnet.models.inputs import normalize, resize_sample
from privobfnet.models.training import Batch

ENSEMBLE_CHECKPOINT = Path("checkpoints/ensemble/final.pt")
# a cached sample holds 5 bytes per pixel: 3 for the RGB image, 1 each for the human and text masks
CACHED_BYTES_PER_PIXEL = 5
FLIP_PROBABILITY = 0.5


def mask_paths(masks_dir: str | Path) -> dict[str, tuple[Path | None, Path | None]]:
    """image_id -> (human mask PNG, text mask PNG) from the masks stage's index; None where not computed."""
    masks_dir = Path(masks_dir)
    index = pd.read_parquet(masks_dir / "index.parquet")

    def resolve(
        path: object,
    ) -> Path | None:  # index paths are relative to the project or to the masks folder
        if not isinstance(path, str):
            return None
        return Path(path) if Path(path).is_absolute() or Path(path).exists() else masks_dir / path

    return {
        row.image_id: (resolve(row.human_path), resolve(row.text_path))
        for row in index.itertuples()
    }


def read_gray(path: Path | None) -> np.ndarray | None:
    """An 8-bit mask PNG as (H, W) uint8 (None stays None)."""
    if path is None:
        return None
    with Image.open(path) as img:
        return np.asarray(img.convert("L"))


class SplitData:
    """One split's images with their prior masks at the training size; labels and scores as tensors.

    Samples are decoded and resized on first use and kept in memory when the whole split fits in
    ``CACHE_BYTES`` (the default profile: 40 MB); larger splits are re-read from disk every time.
    """

    CACHE_BYTES = 2 << 30

    def __init__(
        self, cfg: Config, manifest: pd.DataFrame, masks: dict[str, tuple[Path | None, Path | None]]
    ):
        self.image_ids = manifest["image_id"].tolist()
        self.class_names = list(manifest.attrs["class_names"])
        self.labels = torch.from_numpy(labels_matrix(manifest).astype(np.float32))  # (N, C)
        self.scores = torch.tensor(
            manifest["privacy_score"].astype("float64").fillna(np.nan).to_numpy(),
            dtype=torch.float32,
        )  # (N,), NaN where the data set has none
        self._paths = manifest["path"].tolist()
        self._masks = [masks[i] for i in self.image_ids]
        self._size, self._max_pixels = cfg.train.input_size, cfg.data.max_image_pixels
        self._grayscale = cfg.data.allow_grayscale
        self._memory_format = (
            torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        )
        fits = len(self) * CACHED_BYTES_PER_PIXEL * self._size**2 <= self.CACHE_BYTES
        self._cache: dict[int, tuple] | None = {} if fits else None

    def __len__(self) -> int:
        return len(self.image_ids)

    def _sample(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        image = load_rgb(
            self._paths[index], max_pixels=self._max_pixels, allow_grayscale=self._grayscale
        )
        human, text = (read_gray(path) for path in self._masks[index])
        rgb, human_t, text_t = resize_sample(image, human, text, self._size)
        sample = (
            rgb,
            (human_t * 255).round().to(torch.uint8),
            (text_t * 255).round().to(torch.uint8),
        )
        if self._cache is not None:
            self._cache[index] = sample
        return sample

    def stack(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (B, 3, S, S) uint8 images, (B, 1, S, S) human and text masks as float in [0, 1]."""
        rgb, human, text = zip(*(self._sample(i) for i in indices))
        return torch.stack(rgb), torch.stack(human).float() / 255, torch.stack(text).float() / 255

    def batch(
        self,
        indices: list[int],
        device: torch.device,
        generator: torch.Generator,
        *,
        rows: slice = slice(None),
    ) -> Batch:
        """A training batch: samples stacked, each flipped horizontally with probability 1/2, normalised.

        ``rows``: the part of the global batch ``indices`` this process trains on (torchrun); the
        flips are drawn for the whole global batch, so each sample's flip does not depend on the world size.
        """
        flip = torch.rand(len(indices), generator=generator) < FLIP_PROBABILITY
        indices, flip = indices[rows], flip[rows]
        rgb, human, text = self.stack(indices)  # (B, 3, S, S) uint8, (B, 1, S, S) float x2
        rgb[flip], human[flip], text[flip] = (
            rgb[flip].flip(-1),
            human[flip].flip(-1),
            text[flip].flip(-1),
        )
        images = normalize(rgb.to(device)).contiguous(memory_format=self._memory_format)
        return Batch(
            images,
            human.to(device),
            text.to(device),
            self.labels[indices].to(device),
            self.scores[indices].to(device),
        )


def load_split(cfg: Config, split: str) -> SplitData:
    """A split's manifest joined with the masks stage's index (every image must have its masks)."""
    manifest = read_manifest(Path(cfg.data.manifest_dir) / f"{split}.parquet")
    masks = mask_paths(cfg.masks.out_dir)
    missing = [i for i in manifest["image_id"] if i not in masks]
    if missing:
        raise ValueError(
            f"{Path(cfg.masks.out_dir) / 'index.parquet'}: no masks for {len(missing)} {split} images, "
            f"e.g. {missing[:3]} (re-run the masks stage)"
        )
    return SplitData(cfg, manifest, masks)


@torch.no_grad()
def predict_split(
    model, data: SplitData, device: torch.device, batch_size: int, *, rows: range | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Model-Image on every image of a split (or on ``rows`` of it) -> (N, C) attribute probabilities, (N,) scores."""
    model.eval()
    rows = range(len(data)) if rows is None else rows
    probs, scores = [], []
    for start in range(rows.start, rows.stop, batch_size):
        rgb, human, text = data.stack(list(range(start, min(start + batch_size, rows.stop))))
        out = model(normalize(rgb.to(device)), human.to(device), text.to(device))
        probs.append(torch.sigmoid(out.attribute_logits).float().cpu())
        scores.append(out.privacy.float().cpu())
    if not probs:  # an empty block (more ranks than images)
        return np.zeros((0, len(data.class_names)), np.float32), np.zeros(0, np.float32)
    return torch.cat(probs).numpy(), torch.cat(scores).numpy()


def finite(value):
    """NaN -> None, recursively (JSON has no NaN; undefined metrics are null)."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value


def ensemble_metrics(probs: np.ndarray, scores: np.ndarray, data: SplitData) -> dict:
    """Table 3 (attribute accuracy, mAP) and Table 2 (privacy L1 / Pearson / Spearman) numbers, NaN as None."""
    labels = data.labels.numpy()
    accuracy = attribute_accuracy(probs, labels)
    m_ap, ap = mean_average_precision(probs, labels)
    names = data.class_names
    return finite(
        {
            "attribute_mean_accuracy": float(accuracy.mean()),
            "attribute_map": m_ap,
            "privacy": privacy_metrics(scores, data.scores.numpy()),
            "attribute_accuracy": {n: float(a) for n, a in zip(names, accuracy)},
            "attribute_ap": {n: float(a) for n, a in zip(names, ap)},
            "eval_images": len(data),
        }
    )


@torch.no_grad()
def attention_overlays(model, data: SplitData, device: torch.device, n_images: int = 4):
    """CAM overlays of the first ``n_images`` images of a split (a matplotlib Figure); leaves the model in eval."""
    model.eval()
    indices = list(range(min(n_images, len(data))))
    rgb, human, text = data.stack(indices)
    out = model(normalize(rgb.to(device)), human.to(device), text.to(device))
    attention = attention_at(out.cam_logits, model.n_classes, tuple(rgb.shape[-2:])).cpu().numpy()
    probs = torch.sigmoid(out.attribute_logits).cpu().numpy()
    images = rgb.permute(0, 2, 3, 1).numpy()
    return attention_figure(
        images, attention, probs, data.labels[indices].numpy(), data.class_names
    )
