"""One split's images with their prior masks at the model's input size, as the ensemble trains and
is scored on them; and the training batch they make.

Used where Model-Image runs on a split (the ``train_ensemble`` and ``evaluate`` stages). The priors
are the masks stage's (``privobfnet.data.priors``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from privobfnet.config import Config
from privobfnet.data.images import load_rgb
from privobfnet.data.manifest import labels_matrix, read_manifest
from privobfnet.data.priors import Priors, read_index, read_prior_masks
from privobfnet.models.inputs import normalize, resize_sample

# a cached sample holds 5 bytes per pixel: 3 for the RGB image, 1 each for the human and text masks
CACHED_BYTES_PER_PIXEL = 5
FLIP_PROBABILITY = 0.5


@dataclass(frozen=True)
class Batch:
    """A training batch on the training device."""

    images: torch.Tensor  # (B, 3, S, S) normalised, channels_last
    human_masks: torch.Tensor  # (B, 1, S, S) in [0, 1]
    text_masks: torch.Tensor  # (B, 1, S, S) in [0, 1]
    labels: torch.Tensor  # (B, C) multi-hot float
    privacy_scores: torch.Tensor  # (B,) in [0, 1], NaN where unknown


class SplitData:
    """One split's images with their prior masks at the training size; labels and scores as tensors.

    Samples are decoded and resized on first use and kept in memory when the whole split fits in
    ``CACHE_BYTES`` (the default profile: 40 MB); larger splits are re-read from disk every time.
    """

    CACHE_BYTES = 2 << 30

    def __init__(self, cfg: Config, manifest: pd.DataFrame, priors: dict[str, Priors]):
        self.image_ids = manifest["image_id"].tolist()
        self.class_names = list(manifest.attrs["class_names"])
        self.labels = torch.from_numpy(labels_matrix(manifest).astype(np.float32))  # (N, C)
        self.scores = torch.tensor(
            manifest["privacy_score"].astype("float64").fillna(np.nan).to_numpy(),
            dtype=torch.float32,
        )  # (N,), NaN where the data set has none
        self._paths = manifest["path"].tolist()
        self._priors = [priors[i] for i in self.image_ids]
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
        human, text = read_prior_masks(self._priors[index], image.shape[:2])
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
    return SplitData(cfg, manifest, read_index(cfg.masks.out_dir, manifest["image_id"].tolist()))
