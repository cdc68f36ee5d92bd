"""Model inputs: an RGB image and its human/text masks resized to the network's square input.

Each backbone declares the input normalisation its ImageNet weights were trained with
(``input_norm``): torchvision's and ResNet-38's use ImageNet mean/std, EfficientNet-Lite0's
TensorFlow weights ``(x - 127) / 128``. ``normalize`` applies one; the ensemble is fed ImageNet-
normalised images and maps them to its backbone's convention with ``renormalize``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputNorm:
    """Per-channel ``(x - mean) / std`` of an RGB image with values in [0, 1]."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def tensors(
        self, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std), each of shape (1, 3, 1, 1)."""
        return (
            torch.tensor(self.mean, device=device).view(1, 3, 1, 1),
            torch.tensor(self.std, device=device).view(1, 3, 1, 1),
        )


IMAGENET_NORM = InputNorm(IMAGENET_MEAN, IMAGENET_STD)
# TensorFlow's EfficientNet-Lite preprocessing, (x - 127) / 128 on 0..255 values
TF_LITE_NORM = InputNorm((127 / 255,) * 3, (128 / 255,) * 3)


def normalize(images: torch.Tensor, norm: InputNorm = IMAGENET_NORM) -> torch.Tensor:
    """(B, 3, H, W) uint8 -> float, normalised with ``norm`` (ImageNet mean/std by default), channels_last."""
    mean, std = norm.tensors(images.device)
    out = (images.float() / 255.0 - mean) / std
    return out.contiguous(memory_format=torch.channels_last)


def renormalize_affine(source: InputNorm, target: InputNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift), each (1, 3, 1, 1), such that ``x * scale + shift`` turns ``source``-normalised
    images into ``target``-normalised ones: x01 = x * s_src + m_src, then (x01 - m_tgt) / s_tgt."""
    m_src, s_src = source.tensors()
    m_tgt, s_tgt = target.tensors()
    return s_src / s_tgt, (m_src - m_tgt) / s_tgt


def mask_tensor(mask: np.ndarray | None, shape: tuple[int, int]) -> torch.Tensor:
    """(H, W) (or a (K, H, W) stack of) uint8 0..255 (or bool, or float 0..1) mask -> (1, H, W)
    (or (K, H, W)) float in [0, 1]; None -> (1, H, W) zeros."""
    if mask is None:
        return torch.zeros(1, *shape)
    array = np.asarray(mask)
    if array.shape[-2:] != tuple(shape) or array.ndim not in (2, 3):
        raise ValueError(f"mask of shape {array.shape} does not match the image's {shape}")
    scale = 255.0 if array.dtype == np.uint8 else 1.0
    tensor = torch.from_numpy(array.astype(np.float32) / scale)
    return tensor[None] if array.ndim == 2 else tensor


def resize_sample(
    image: np.ndarray, human: np.ndarray | None, text: np.ndarray | None, size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(H, W, 3) uint8 image and (H, W) masks (or (Ch, H, W) and (Ct, H, W) prior stacks,
    ``privobfnet.priors``) -> (3, S, S) uint8, (Ch, S, S) and (Ct, S, S) float masks."""
    shape = image.shape[:2]
    rgb = torch.tensor(image).permute(2, 0, 1)[None].float()  # (1, 3, H, W), a copy
    human_t = mask_tensor(human, shape)
    masks = torch.cat([human_t, mask_tensor(text, shape)])[None]  # (1, Ch + Ct, H, W)
    if shape != (size, size):
        rgb = F.interpolate(rgb, (size, size), mode="bilinear", align_corners=False, antialias=True)
        masks = F.interpolate(
            masks, (size, size), mode="bilinear", align_corners=False, antialias=True
        )
    rgb = rgb.round().clamp(0, 255).to(torch.uint8)[0]
    masks = masks.clamp(0, 1)[0]
    return rgb, masks[: len(human_t)], masks[len(human_t) :]


def images_to_tensor(images: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1], channels-last on ``device``."""
    x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last)
