"""DeepLabV2's training: its data (augmented crops in a resumable order), schedule and loss.

Augmentation and batch order are pure functions of (seed, iteration), so a run resumed from a
checkpoint sees exactly the batches an uninterrupted run would, whatever loaded them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from privobfnet.config import Config
from privobfnet.data.errors import DataError
from privobfnet.data.images import load_mask, load_rgb, load_truth
from privobfnet.labels import IGNORE_LABEL, SegmentationClasses
from privobfnet.models.deeplabv2 import ASPP_BIAS_LR_MULT, ASPP_LR_MULT, DeepLabV2
from privobfnet.training.distributed import SINGLE, World

PAD_RGB = (124, 116, 104)  # ImageNet's mean colour: zero after the model's normalisation


def poly_lr(base_lr: float, iteration: int, total: int, power: float) -> float:
    """DeepLab's poly schedule: base_lr * (1 - iteration / total) ** power, iteration in 0..total-1."""
    return base_lr * (1.0 - iteration / total) ** power


def batch_keys(
    *, n_images: int, batch_size: int, iteration: int, seed: int
) -> list[tuple[int, int, int, int]]:
    """The samples of one iteration as (image index, seed, iteration, slot) keys.

    Images are drawn epoch by epoch from a permutation seeded by (seed, epoch); a key's last three
    numbers seed that sample's augmentation.
    """
    keys, orders = [], {}
    for slot in range(batch_size):
        epoch, offset = divmod(iteration * batch_size + slot, n_images)
        if epoch not in orders:
            orders[epoch] = np.random.default_rng([seed, epoch]).permutation(n_images)
        keys.append((int(orders[epoch][offset]), seed, iteration, slot))
    return keys


def random_scale_crop_flip(
    image: np.ndarray,
    label: np.ndarray,
    *,
    rng: np.random.Generator,
    scale_range: tuple[float, float] | list[float],
    crop_size: int,
    scale_choices: Sequence[float] = (),
    ignore_index: int = IGNORE_LABEL,
) -> tuple[np.ndarray, np.ndarray]:
    """Rescale by a random factor, pad to the crop (label with ``ignore_index``), crop, maybe flip.

    The factor is uniform over ``scale_range``, or one of ``scale_choices`` (equally likely) when
    given, as deeplab-pytorch draws it.

    ``image`` (H, W, 3) uint8 and ``label`` (H, W) uint8 -> (crop, crop, 3) and (crop, crop).
    The image is resized bilinearly, the label by nearest neighbour, so labels stay labels.
    """
    if image.shape[:2] != label.shape:
        raise ValueError(f"image {image.shape[:2]} and label {label.shape} differ in size")
    if scale_choices:
        scale = float(scale_choices[int(rng.integers(len(scale_choices)))])
    else:
        low, high = scale_range
        scale = rng.uniform(low, high)
    height, width = label.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # PIL wants (w, h)
    image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    label = np.asarray(Image.fromarray(label).resize(size, Image.NEAREST))

    pad_h, pad_w = max(0, crop_size - size[1]), max(0, crop_size - size[0])
    if pad_h or pad_w:  # bottom and right, as the reference does
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)))
        image[size[1] :, :] = PAD_RGB
        image[:, size[0] :] = PAD_RGB
        label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=ignore_index)

    top = int(rng.integers(0, label.shape[0] - crop_size + 1))
    left = int(rng.integers(0, label.shape[1] - crop_size + 1))
    image = image[top : top + crop_size, left : left + crop_size]
    label = label[top : top + crop_size, left : left + crop_size]
    if rng.random() < 0.5:
        image, label = image[:, ::-1], label[:, ::-1]
    return np.array(image), np.array(label)  # fresh, writable, contiguous


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (B, K, h, w) scores upsampled bilinearly to the (B, H, W) labels; 255 ignored."""
    logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, labels.long(), ignore_index=IGNORE_LABEL)


def msc_loss(outputs: Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """deeplab-pytorch's multi-scale loss: for each (B, K, h, w) output of ``MSC`` in training, the
    cross-entropy against the (B, H, W) labels resized to (h, w) by nearest neighbour (PIL's
    ``NEAREST``, as its ``resize_labels``), 255 ignored; summed over the outputs, as its training
    loop sums them."""
    total = 0.0
    for logits in outputs:
        height, width = logits.shape[-2:]
        resized = torch.stack(
            [
                torch.from_numpy(
                    np.asarray(
                        Image.fromarray(label.cpu().numpy().astype(np.uint8)).resize(
                            (width, height), Image.NEAREST
                        )
                    ).copy()
                )
                for label in labels
            ]
        ).to(logits.device)
        total = total + F.cross_entropy(logits, resized.long(), ignore_index=IGNORE_LABEL)
    return total


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
            label = load_truth(self.label_paths[index], self.seg, max_pixels=max_pixels)
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
            scale_choices=self.cfg.deeplab.scale_choices,
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


def optimizer_param_groups(
    model: DeepLabV2, *, weight_decay: float, scheme: str = "aspp_10x"
) -> list[dict[str, Any]]:
    """SGD groups (key ``lr_mult``). ``aspp_10x``: the backbone's trainable tensors at 1x, the ASPP
    head at 10x, weight decay on all. ``deeplab_pytorch``: the backbone at 1x, the head's weights at
    10x, its biases at 20x without weight decay (its ``get_params``)."""
    body = [p for p in model.body.parameters() if p.requires_grad]
    if scheme == "aspp_10x":
        head = list(model.aspp.parameters())
        return [
            {"params": body, "lr_mult": 1.0, "weight_decay": weight_decay},
            {"params": head, "lr_mult": ASPP_LR_MULT, "weight_decay": weight_decay},
        ]
    if scheme != "deeplab_pytorch":
        raise ValueError(f"unknown DeepLab optimizer scheme {scheme!r}")
    weights = [b.weight for b in model.aspp.branches]
    biases = [b.bias for b in model.aspp.branches]
    return [
        {"params": body, "lr_mult": 1.0, "weight_decay": weight_decay},
        {"params": weights, "lr_mult": ASPP_LR_MULT, "weight_decay": weight_decay},
        {"params": biases, "lr_mult": ASPP_BIAS_LR_MULT, "weight_decay": 0.0},
    ]
