"""DeepLabV2's data: augmented training crops in a resumable iteration order, and split scoring.

Labels are in the segmentation encoding of ``privobfnet.seg_classes`` (0 background, segmentation
class j -> j + 1); ground-truth masks are converted to it as they are read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from privobfnet.config import Config
from privobfnet.data.errors import DataError
from privobfnet.data.images import load_mask, load_rgb
from privobfnet.distributed import SINGLE, World
from privobfnet.metrics import confusion_matrix
from privobfnet.seg_classes import BACKGROUND, SegmentationClasses  # noqa: F401  (BACKGROUND re-exported)
from privobfnet.segmentation import batch_keys, predict_segmentation, random_scale_crop_flip


def read_truth(path: str, seg: SegmentationClasses, *, max_pixels: int) -> np.ndarray:
    """A ground-truth mask (attribute i -> i + 1) as (H, W) uint8 segmentation labels (class j -> j + 1)."""
    return seg.from_truth(load_mask(path, n_classes=len(seg.attributes), max_pixels=max_pixels))


class TrainingSamples(Dataset):
    """Augmented (image, label) crops, uint8 (S, S, 3) and (S, S); keys come from ``batch_keys``."""

    def __init__(
        self,
        image_paths: list[str],
        label_paths: list[str],
        *,
        cfg: Config,
        seg: SegmentationClasses,
        ground_truth: bool,
    ):
        """``ground_truth``: the label files are the data set's masks (converted), else written pseudo-labels."""
        self.image_paths, self.label_paths = image_paths, label_paths
        self.cfg, self.seg, self.ground_truth = cfg, seg, ground_truth

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, key: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, *sample_seed = key
        max_pixels = self.cfg.data.max_image_pixels
        image = load_rgb(self.image_paths[index], max_pixels=max_pixels)
        if self.ground_truth:
            label = read_truth(self.label_paths[index], self.seg, max_pixels=max_pixels)
        else:
            label = load_mask(
                self.label_paths[index], n_classes=self.seg.n_labels - 1, max_pixels=max_pixels
            )
        if image.shape[:2] != label.shape:
            raise DataError(
                self.label_paths[index], "label size differs from its image", f"{label.shape}"
            )
        image, label = random_scale_crop_flip(
            image,
            label,
            rng=np.random.default_rng(sample_seed),
            scale_range=self.cfg.deeplab.scale_range,
            crop_size=self.cfg.deeplab.crop_size,
        )
        return torch.from_numpy(image), torch.from_numpy(label)


class IterationBatches:
    """Batch sampler over iterations ``start``..``total``-1 (one batch of keys each).

    ``batch_size`` is the global batch; under torchrun each rank yields its slice of it
    (``World.share``), so every rank's order is a function of (seed, iteration, rank, world size)
    and each sample's augmentation (seeded by its key) does not depend on the world size.
    """

    def __init__(
        self,
        *,
        n_images: int,
        batch_size: int,
        seed: int,
        start: int,
        total: int,
        world: World = SINGLE,
    ):
        self.n_images, self.batch_size, self.seed = n_images, batch_size, seed
        self.start, self.total, self.world = start, total, world

    def __iter__(self):
        for iteration in range(self.start, self.total):
            keys = batch_keys(
                n_images=self.n_images,
                batch_size=self.batch_size,
                iteration=iteration,
                seed=self.seed,
            )
            yield self.world.share(keys)

    def __len__(self) -> int:
        return self.total - self.start


def training_label_paths(cfg: Config, manifest: pd.DataFrame) -> list[str]:
    """The label file of each training image: its pseudo-label, or its ground-truth mask."""
    if cfg.deeplab.labels == "ground_truth":
        missing = manifest.loc[manifest["mask_path"].isna(), "image_id"].tolist()
        if missing:
            raise DataError(
                cfg.data.manifest_dir,
                "deeplab.labels is ground_truth but images lack masks",
                f"{len(missing)} images, e.g. {missing[:3]}",
            )
        return manifest["mask_path"].astype(str).tolist()
    paths = [
        str(Path(cfg.pseudo_labels.out_dir) / f"{image_id}.png")
        for image_id in manifest["image_id"]
    ]
    absent = [p for p in paths if not Path(p).is_file()]
    if absent:
        raise DataError(
            absent[0],
            "pseudo-label missing (run the pseudo_labels stage)",
            f"{len(absent)} missing",
        )
    return paths


def split_confusion(
    model, manifest: pd.DataFrame, *, max_pixels: int, seg: SegmentationClasses, device
) -> tuple[np.ndarray, int]:
    """Confusion matrix (segmentation labels) of full-image predictions against ground truth, and the image count."""
    cm = np.zeros((seg.n_labels, seg.n_labels), dtype=np.int64)
    rows = manifest[manifest["mask_path"].notna()]
    for row in rows.itertuples(index=False):
        image = load_rgb(row.path, max_pixels=max_pixels)
        mask = read_truth(row.mask_path, seg, max_pixels=max_pixels)
        cm += confusion_matrix(predict_segmentation(model, image, device), mask, seg.n_labels)
    return cm, len(rows)
