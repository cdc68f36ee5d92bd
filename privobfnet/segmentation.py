"""Training and inference helpers for the segmentation model (DeepLabV2).

Augmentation and batch order are pure functions of (seed, iteration), so a run resumed from a
checkpoint sees exactly the batches an uninterrupted run would, whatever loaded them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

IGNORE_INDEX = 255
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
    ignore_index: int = IGNORE_INDEX,
) -> tuple[np.ndarray, np.ndarray]:
    """Rescale by a random factor, pad to the crop (label with ``ignore_index``), crop, maybe flip.

    ``image`` (H, W, 3) uint8 and ``label`` (H, W) uint8 -> (crop, crop, 3) and (crop, crop).
    The image is resized bilinearly, the label by nearest neighbour, so labels stay labels.
    """
    if image.shape[:2] != label.shape:
        raise ValueError(f"image {image.shape[:2]} and label {label.shape} differ in size")
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


def images_to_tensor(images: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1], channels-last on ``device``."""
    x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (B, K, h, w) scores upsampled bilinearly to the (B, H, W) labels; 255 ignored."""
    logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, labels.long(), ignore_index=IGNORE_INDEX)


@torch.inference_mode()
def predict_segmentation(
    model: nn.Module, image: np.ndarray, device: str | torch.device
) -> np.ndarray:
    """Full-image inference: (H, W, 3) uint8 -> (H, W) uint8 label map (argmax of upsampled scores)."""
    was_training = model.training
    model.eval()
    x = images_to_tensor(torch.from_numpy(np.array(image))[None], device)  # (1, 3, H, W)
    logits = model(x)  # (1, K, H/8, W/8)
    logits = F.interpolate(logits, size=image.shape[:2], mode="bilinear", align_corners=False)
    model.train(was_training)
    return logits.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()
