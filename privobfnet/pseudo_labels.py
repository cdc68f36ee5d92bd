"""CAM pseudo-labels (L2G's inference protocol): multi-scale + flip CAMs -> per-pixel class labels.

The CAMs of Model-Image only, at each scale with and without a horizontal flip, upsampled to the
image size and summed; then ReLU, max-normalised per class, and zeroed for the classes absent from
the image-level label. A pixel takes the argmax class unless every class scores below the
background threshold. Labels follow the ground-truth encoding: 0 background, class i -> i + 1.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

# (1, 3, h, w) image tensor, (1, 1, h, w) human mask, (1, 1, h, w) text mask -> (1, C, h', w') CAMs
CamFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    return F.interpolate(x, size=size, mode=mode, **kwargs)


@torch.no_grad()
def multiscale_cams(
    cam_fn: CamFn,
    image: torch.Tensor,
    human_mask: torch.Tensor,
    text_mask: torch.Tensor,
    *,
    scales: Sequence[float],
    labels: Sequence[int],
) -> torch.Tensor:
    """(C, H, W) CAMs in [0, 1] for one image: multi-scale + flip, summed, normalised per class.

    Args:
        cam_fn: Model-Image's CAM function (already normalising its input as it was trained).
        image: (1, 3, H, W) float image as ``cam_fn`` takes it.
        human_mask, text_mask: (1, 1, H, W) float masks in [0, 1].
        scales: input scales (L2G: 0.5, 1, 1.5, 2), each also run flipped.
        labels: multi-hot image-level label (length C); absent classes are zeroed.
    """
    height, width = image.shape[-2:]
    total: torch.Tensor | None = None
    for scale in scales:
        size = (max(8, round(height * scale)), max(8, round(width * scale)))
        img = _resize(image, size, "bilinear")
        human, text = _resize(human_mask, size, "bilinear"), _resize(text_mask, size, "bilinear")
        for flip in (False, True):
            args = [t.flip(-1) if flip else t for t in (img, human, text)]
            cams = cam_fn(*args)  # (1, C, h', w')
            cams = cams.flip(-1) if flip else cams
            cams = _resize(cams, (height, width), "bicubic")[0]  # (C, H, W)
            total = cams if total is None else total + cams
    assert total is not None, "at least one scale is needed"
    cams = F.relu(total)
    present = torch.as_tensor(np.asarray(labels, dtype=bool))
    cams[~present] = 0.0
    peak = cams.flatten(1).max(dim=1).values.clamp_min(1e-5)  # (C,)
    return cams / peak[:, None, None]


def cams_to_label(cams: torch.Tensor | np.ndarray, bg_threshold: float) -> np.ndarray:
    """(H, W) uint8 labels from (C, H, W) normalised CAMs: 0 where all classes < bg_threshold."""
    cams = torch.as_tensor(cams)
    background = torch.full_like(cams[:1], bg_threshold)
    scores = torch.cat([background, cams], dim=0)  # (1 + C, H, W): index 0 is background
    return scores.argmax(dim=0).to(torch.uint8).numpy()
