"""DeepLabV2's data: augmented training crops in a resumable iteration order, and split scoring."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from privobfnet.config import Config
from privobfnet.data.errors import DataError
from privobfnet.data.images import load_mask, load_rgb
from privobfnet.metrics import confusion_matrix
from privobfnet.segmentation import batch_keys, predict_segmentation, random_scale_crop_flip

BACKGROUND = "background"  # label 0; class i of the manifest is label i + 1


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


def split_confusion(model, manifest: pd.DataFrame, *, max_pixels: int, n_labels: int, device) -> tuple[np.ndarray, int]:
    """Confusion matrix of full-image predictions against the ground-truth masks, and the image count."""
    cm = np.zeros((n_labels, n_labels), dtype=np.int64)
    rows = manifest[manifest["mask_path"].notna()]
    for row in rows.itertuples(index=False):
        image = load_rgb(row.path, max_pixels=max_pixels)
        mask = load_mask(row.mask_path, n_classes=n_labels - 1, max_pixels=max_pixels)
        cm += confusion_matrix(predict_segmentation(model, image, device), mask, n_labels)
    return cm, len(rows)
