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
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from privobfnet.config import Config
from privobfnet.data.images import load_rgb
from privobfnet.data.manifest import labels_matrix, read_manifest
from privobfnet.data.mask_types import load_prior_types
from privobfnet.data.priors import Priors, layout_lines, read_index, stored_priors
from privobfnet.data.saliency import read_saliency
from privobfnet.models.inputs import mask_tensor, normalize, resize_sample
from privobfnet.priors import PriorLayout, TypedLine

# a cached sample holds 3 bytes per pixel for the RGB image and 1 per prior channel (2 coarse; the
# refined priors add the face boxes and one per typed class), 1 more with a saliency map
CACHED_BYTES_PER_PIXEL = 3
FLIP_PROBABILITY = 0.5
# augment "l2g" (L2G's VOC loader): the short side resized to input_size * 8 / 7 (512 for 448),
# then ColorJitter(brightness, contrast, saturation, hue) in a random order
L2G_SHORT_SIDE_RATIO = 512 / 448
L2G_JITTER = (0.3, 0.3, 0.3, 0.1)


@dataclass(frozen=True)
class Batch:
    """A training batch on the training device."""

    images: torch.Tensor  # (B, 3, S, S) normalised, channels_last
    human_masks: torch.Tensor  # (B, Ch, S, S) in [0, 1]: the human prior stack (privobfnet.priors)
    text_masks: torch.Tensor  # (B, Ct, S, S) in [0, 1]: the text prior stack
    labels: torch.Tensor  # (B, C) multi-hot float
    privacy_scores: torch.Tensor  # (B,) in [0, 1], NaN where unknown
    saliency: torch.Tensor | None = None  # (B, 1, S, S) in [0, 1] with masks.saliency, else None


class SplitData:
    """One split's images with their prior masks at the training size; labels and scores as tensors.

    Samples are decoded and resized on first use and kept in memory when the whole split fits in
    ``CACHE_BYTES`` (the default profile: 40 MB); larger splits are re-read from disk every time.
    """

    CACHE_BYTES = 2 << 30

    def __init__(
        self,
        cfg: Config,
        manifest: pd.DataFrame,
        priors: dict[str, Priors],
        *,
        layout: PriorLayout | None = None,
        lines: dict[str, list[TypedLine]] | None = None,
    ):
        """``layout``: the priors the model is weighted by (None: the coarse human and text
        masks); ``lines``: image_id -> its read lines with their typer scores (refined priors)."""
        self.image_ids = manifest["image_id"].tolist()
        self.class_names = list(manifest.attrs["class_names"])
        self.labels = torch.from_numpy(labels_matrix(manifest).astype(np.float32))  # (N, C)
        self.scores = torch.tensor(
            manifest["privacy_score"].astype("float64").fillna(np.nan).to_numpy(),
            dtype=torch.float32,
        )  # (N,), NaN where the data set has none
        self._paths = manifest["path"].tolist()
        self._priors = [priors[i] for i in self.image_ids]
        self.layout, self._lines = layout, lines or {}
        n_channels = 2 if layout is None else len(layout.human_channels) + len(layout.text_channels)
        # L2G's saliency maps where the masks stage recorded them (masks.saliency)
        self.has_saliency = bool(self._priors) and all(
            p.saliency_path is not None for p in self._priors
        )
        self._size, self._max_pixels = cfg.train.input_size, cfg.data.max_image_pixels
        self._augment = cfg.train.augment
        self._short_side = round(self._size * L2G_SHORT_SIDE_RATIO)
        self._grayscale = cfg.data.allow_grayscale
        self._memory_format = (
            torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        )
        per_pixel = CACHED_BYTES_PER_PIXEL + n_channels + self.has_saliency
        fits = len(self) * per_pixel * self._size**2 <= self.CACHE_BYTES
        self._cache: dict[int, tuple] | None = {} if fits else None

    def __len__(self) -> int:
        return len(self.image_ids)

    def _saliency(self, index: int, shape: tuple[int, int]) -> torch.Tensor | None:
        """(1, H, W) float saliency map of an image, None without ``has_saliency``."""
        if not self.has_saliency:
            return None
        return torch.from_numpy(read_saliency(self._priors[index].saliency_path, shape))[None]

    def _prior_masks(self, index: int, shape: tuple[int, int]):
        """The image's priors (``stored_priors``: coarse masks, or the layout's stacks)."""
        image_lines = self._lines.get(self.image_ids[index], ())
        return stored_priors(self._priors[index], shape, self.layout, image_lines)

    def _sample(self, index: int) -> tuple[torch.Tensor, ...]:
        """(3, S, S) image, (Ch, S, S) human and (Ct, S, S) text priors, uint8 each, and the
        saliency map alike (None without ``has_saliency``)."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        image = load_rgb(
            self._paths[index], max_pixels=self._max_pixels, allow_grayscale=self._grayscale
        )
        human, text = self._prior_masks(index, image.shape[:2])
        rgb, human_t, text_t = resize_sample(image, human, text, self._size)
        saliency = self._saliency(index, image.shape[:2])
        if saliency is not None and tuple(saliency.shape[-2:]) != (self._size, self._size):
            saliency = F.interpolate(
                saliency[None], (self._size, self._size), mode="bilinear", antialias=True
            )[0].clamp(0, 1)
        sample = (
            rgb,
            (human_t * 255).round().to(torch.uint8),
            (text_t * 255).round().to(torch.uint8),
            None if saliency is None else (saliency * 255).round().to(torch.uint8),
        )
        if self._cache is not None:
            self._cache[index] = sample
        return sample

    def _short_sample(self, index: int) -> tuple[torch.Tensor, ...]:
        """The image with its short side at ``input_size * 8 / 7`` (PIL bicubic, aspect kept) and its
        masks (bilinear): (3, h, w) uint8, (1, h, w) float x2, and the saliency map alike or None.
        Not cached (sizes vary)."""
        image = load_rgb(
            self._paths[index], max_pixels=self._max_pixels, allow_grayscale=self._grayscale
        )
        human, text = self._prior_masks(index, image.shape[:2])
        height, width = image.shape[:2]
        scale = self._short_side / min(height, width)
        size = (max(self._size, round(height * scale)), max(self._size, round(width * scale)))
        rgb = np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BICUBIC))
        saliency = self._saliency(index, (height, width))
        masks = [mask_tensor(m, (height, width)) for m in (human, text)]
        n_human, n_priors = len(masks[0]), len(masks[0]) + len(masks[1])
        masks = torch.cat(masks + ([] if saliency is None else [saliency]))[None]
        masks = F.interpolate(masks, size, mode="bilinear", align_corners=False, antialias=True)
        return (
            torch.from_numpy(rgb.copy()).permute(2, 0, 1),
            masks[0, :n_human],
            masks[0, n_human:n_priors],
            None if saliency is None else masks[0, n_priors:].clamp(0, 1),
        )

    def stack(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (B, 3, S, S) uint8 images, (B, Ch, S, S) human and (B, Ct, S, S) text priors as float
        in [0, 1]."""
        return self._stack(indices)[:3]

    def _stack(self, indices: list[int]) -> tuple[torch.Tensor | None, ...]:
        """``stack`` and the (B, 1, S, S) saliency maps in [0, 1] (None without ``has_saliency``),
        each sample read once."""
        rgb, human, text, saliency = zip(*(self._sample(i) for i in indices))
        return (
            torch.stack(rgb),
            torch.stack(human).float() / 255,
            torch.stack(text).float() / 255,
            torch.stack(saliency).float() / 255 if self.has_saliency else None,
        )

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
        if self._augment == "l2g":
            rgb, human, text, saliency = self._l2g_batch(indices, generator, rows)
            indices = indices[rows]
        else:
            flip = torch.rand(len(indices), generator=generator) < FLIP_PROBABILITY
            indices, flip = indices[rows], flip[rows]
            # (B, 3, S, S) uint8, (B, 1, S, S) float x2, the saliency maps alike or None
            rgb, human, text, saliency = self._stack(indices)
            rgb[flip], human[flip], text[flip] = (
                rgb[flip].flip(-1),
                human[flip].flip(-1),
                text[flip].flip(-1),
            )
            if saliency is not None:
                saliency[flip] = saliency[flip].flip(-1)
        images = normalize(rgb.to(device)).contiguous(memory_format=self._memory_format)
        return Batch(
            images,
            human.to(device),
            text.to(device),
            self.labels[indices].to(device),
            self.scores[indices].to(device),
            None if saliency is None else saliency.to(device),
        )

    def _l2g_batch(self, indices, generator: torch.Generator, rows: slice):
        """L2G's training input for each image: short side to ``input_size * 8 / 7``, a random
        ``input_size`` crop (the masks cropped alike), ColorJitter on the image; no flip. The
        draws are made for the whole global batch, as the flips are."""
        n = len(indices)
        offsets = torch.rand(n, 2, generator=generator)
        factors = torch.rand(n, 4, generator=generator) * 2 - 1  # in [-1, 1)
        orders = torch.argsort(torch.rand(n, 4, generator=generator), dim=1)
        images, humans, texts, saliencies = [], [], [], []
        for i in range(n)[rows]:
            rgb, human, text, saliency = self._short_sample(int(indices[i]))
            top = int(offsets[i, 0] * (rgb.shape[1] - self._size + 1))
            left = int(offsets[i, 1] * (rgb.shape[2] - self._size + 1))
            window = (slice(None), slice(top, top + self._size), slice(left, left + self._size))
            images.append(color_jitter(rgb[window], factors[i], orders[i]))
            humans.append(human[window])
            texts.append(text[window])
            if saliency is not None:
                saliencies.append(saliency[window])
        return (
            torch.stack(images),
            torch.stack(humans),
            torch.stack(texts),
            torch.stack(saliencies) if saliencies else None,
        )


def color_jitter(image: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """torchvision's ColorJitter(*L2G_JITTER) on a (3, H, W) uint8 image with its draws given:
    ``factors`` (4,) in [-1, 1] scale each strength (brightness, contrast, saturation factors
    1 + s * f, hue s * f), applied in ``order``."""
    adjust = (
        lambda x, f: TF.adjust_brightness(x, 1 + L2G_JITTER[0] * f),
        lambda x, f: TF.adjust_contrast(x, 1 + L2G_JITTER[1] * f),
        lambda x, f: TF.adjust_saturation(x, 1 + L2G_JITTER[2] * f),
        lambda x, f: TF.adjust_hue(x, L2G_JITTER[3] * f),
    )
    for k in order.tolist():
        image = adjust[k](image, float(factors[k]))
    return image


def load_split(cfg: Config, split: str, priors: str | PriorLayout | None = None) -> SplitData:
    """A split's manifest joined with the masks stage's index (every image must have its masks).

    ``priors``: the model's prior layout, or a mode ("coarse" | "refined", ``train.priors``) read
    from the data set's mask-type table; None: the coarse masks, unstacked. A layout with typed
    classes reads the typed lines too (``read_typed_lines``).
    """
    manifest = read_manifest(Path(cfg.data.manifest_dir) / f"{split}.parquet")
    layout = priors
    if isinstance(priors, str):
        class_names = manifest.attrs["class_names"]
        layout = PriorLayout(tuple(load_prior_types(cfg.data.dataset, class_names, priors)))
    index = read_index(cfg.masks.out_dir, manifest["image_id"].tolist())
    lines = layout_lines(cfg, layout, manifest.attrs["class_names"])
    return SplitData(cfg, manifest, index, layout=layout, lines=lines)
