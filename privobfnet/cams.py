"""The one CAM -> mask procedure: the pseudo-labels, the obfuscation tool and the figures use it.

Model-Image's mask-weighted CAM logits are computed for an image at each of ``scales`` (the image
resized by that factor with PIL's bicubic filter, as L2G's multi-scale loader does), each view also
horizontally flipped. Every view's signed CAM logits are upsampled bicubically to the output size,
flipped back and averaged; then, as L2G's inference, one ReLU of the mean, a per-class
max-normalisation, and the classes absent from the image zeroed: the image-level labels for
pseudo-labels, the attributes below the probability threshold for the tool (``class_maps``).
The masks (human, text) of each view are resized bilinearly. Where the model weights its CAMs by
the prior masks, the ReLU'd mean is weighted by them again at the output size (L2G has no prior
masks; bicubic overshoot would otherwise leak a class outside its mask).

From those maps in [0, 1]:

- ``label_map``: one label per pixel, the argmax class unless every class scores at most the
  background threshold (label 0; background wins ties). Pseudo-labels, DeepLab's targets and the
  tool's ``Prediction.masks`` are this map.
- ``attribute_mask``: one attribute's own region, where its map exceeds the background threshold
  whatever the other attributes score (the tool hides each chosen attribute so: a pixel two
  chosen attributes share is hidden for either; see ``privobfnet.obfuscate.engine``).

Pseudo-labels use only the segmentation classes' channels (``privobfnet.labels``: no ``a0_safe``)
and write labels in the segmentation encoding (0 background, segmentation class j -> j + 1).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from privobfnet.config import PseudoLabelConfig
from privobfnet.crf import dense_crf, scores_to_probs
from privobfnet.labels import SegmentationClasses
from privobfnet.models.inputs import mask_tensor, normalize

# (1, 3, h, w) image tensor, (1, Ch, h, w) human and (1, Ct, h, w) text prior stacks
# (privobfnet.priors) -> (1, C, h', w') CAMs
CamFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
MIN_PEAK = 1e-5  # a class whose maps never exceed this stays (near) zero after normalising


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


def _resize_masks(masks: Sequence[torch.Tensor], size: tuple[int, int]) -> list[torch.Tensor]:
    """(1, ch, h, w) masks at ``size`` (bilinear), each left as it is where it has that size."""
    return [m if tuple(m.shape[-2:]) == size else _resize(m, size, "bilinear") for m in masks]


def views(scales: Sequence[float], size: tuple[int, int]) -> list[tuple[tuple[int, int], bool]]:
    """The (input size, flipped) views of an image of ``size``: each scale, unflipped then flipped."""
    if not scales:
        raise ValueError("at least one scale is needed")
    height, width = size
    sizes = [(max(8, round(height * s)), max(8, round(width * s))) for s in scales]
    return [(view_size, flip) for view_size in sizes for flip in (False, True)]


def _pil_bicubic(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, 3, h, w) float 0..255 image -> (1, 3, *size): the 8-bit image resized by PIL's bicubic filter
    (L2G resizes its PIL images so; PIL antialiases when it shrinks)."""
    array = image[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    resized = Image.fromarray(array).resize((size[1], size[0]), resample=Image.BICUBIC)
    out = torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1)[None]
    return out.to(device=image.device, dtype=image.dtype)


def view_input(
    tensors: Sequence[torch.Tensor], size: tuple[int, int], flip: bool
) -> list[torch.Tensor]:
    """The image (first, float 0..255) and its masks, (1, ch, H, W) each, resized to one view (the image
    with PIL's bicubic filter, the masks bilinearly) and flipped if asked."""
    image, *masks = tensors
    if tuple(image.shape[-2:]) != size:
        image = _pil_bicubic(image, size)
    out = [image, *_resize_masks(masks, size)]
    return [t.flip(-1) for t in out] if flip else out


def sum_views(
    view_cams: Sequence[tuple[torch.Tensor, bool]], size: tuple[int, int]
) -> torch.Tensor:
    """(1, C, h', w') signed CAM logits of each (view, flipped) -> (C, H, W): bicubic to ``size``, flipped
    back, averaged (L2G: the ReLU comes after the mean, in ``normalise_maps``)."""
    total: torch.Tensor | None = None
    for cams, flipped in view_cams:
        cams = _resize(cams.float(), size, "bicubic")[0]  # (C, H, W)
        cams = cams.flip(-1) if flipped else cams
        total = cams if total is None else total + cams
    if total is None:
        raise ValueError("at least one view is needed")
    return total / len(view_cams)


def normalise_maps(
    total: torch.Tensor, present: Sequence[bool] | torch.Tensor | None
) -> torch.Tensor:
    """(C, H, W) mean CAMs -> maps in [0, 1]: ReLU, per-class max-normalised, absent classes zeroed
    (``present``: (C,) bool; None keeps every class)."""
    maps = F.relu(total)
    if present is not None:
        maps = (
            maps
            * torch.as_tensor(np.asarray(present, dtype=bool), device=maps.device)[:, None, None]
        )
    peak = maps.flatten(1).max(dim=1).values.clamp_min(MIN_PEAK)  # (C,)
    return maps / peak[:, None, None]


@torch.no_grad()
def class_maps(
    cam_fn: CamFn,
    image: torch.Tensor,
    human_mask: torch.Tensor,
    text_mask: torch.Tensor,
    *,
    scales: Sequence[float],
    present: Sequence[bool] | torch.Tensor | None,
    out_size: tuple[int, int] | None = None,
    gate_types: torch.Tensor | None = None,
) -> torch.Tensor:
    """(C, H, W) maps in [0, 1] of one image: every view's CAMs averaged, then ``normalise_maps``.

    ``gate_types`` ((C,) index into [ones, *human, *text], the model's priors where it weights its
    CAMs by the prior masks): the ReLU'd mean is weighted by the masks once more, at the output
    size. L2G has no prior masks; without this, the bicubic upsampling's overshoot beside a
    class's negative (gated) logits would give it positive values outside its mask.

    Args:
        cam_fn: Model-Image's signed CAM logits (``PrivObfNet.cams``; it normalises its input as it
            was trained).
        gate_types: as above, or None (no prior masks).
        image: (1, 3, h, w) float image as ``cam_fn`` takes it; human_mask, text_mask (1, Ch, h, w)
            and (1, Ct, h, w), the prior stacks (``privobfnet.priors``).
        scales: input scales relative to ``image`` (L2G: 0.5, 1, 1.5, 2), each also run flipped.
        present: (C,) classes to keep (the image-level labels, or the detected attributes).
        out_size: the maps' size (default: the image's).
    """
    size = tuple(image.shape[-2:])
    out_size = size if out_size is None else tuple(out_size)
    view_cams = [
        (cam_fn(*view_input((image, human_mask, text_mask), view_size, flip)), flip)
        for view_size, flip in views(scales, size)
    ]
    total = sum_views(view_cams, out_size)
    if gate_types is not None:
        masks = _resize_masks((human_mask, text_mask), out_size)
        ones = torch.ones_like(masks[0][:, :1])
        priors = torch.cat([ones, *masks], dim=1)[0]  # (1 + Ch + Ct, H, W)
        total = F.relu(total) * priors[gate_types.to(priors.device)]
    return normalise_maps(total, present)


def gate_types_of(model_image) -> torch.Tensor | None:
    """The (C,) mask types ``class_maps`` gates a model's maps by, None where it does not weight."""
    if not getattr(model_image, "use_mask_weighting", False):
        return None
    return model_image.type_index[: model_image.n_classes]


def label_map(maps: torch.Tensor | np.ndarray, bg_threshold: float) -> np.ndarray:
    """(H, W) uint8 labels from (C, H, W) maps: the argmax class + 1, 0 where none exceeds ``bg_threshold``."""
    maps = torch.as_tensor(maps)
    background = torch.full_like(maps[:1], bg_threshold)
    scores = torch.cat([background, maps], dim=0)  # (1 + C, H, W): index 0 is background
    return scores.argmax(dim=0).to(torch.uint8).cpu().numpy()


def label_masks(maps: torch.Tensor | np.ndarray, bg_threshold: float) -> np.ndarray:
    """(C, H, W) bool: the pixels ``label_map`` gives each class (at most one class per pixel)."""
    labels = label_map(maps, bg_threshold)
    return labels[None] == np.arange(1, len(maps) + 1, dtype=np.uint8)[:, None, None]


def attribute_mask(maps: torch.Tensor | np.ndarray, c: int, bg_threshold: float) -> np.ndarray:
    """(H, W) bool: where class ``c``'s map exceeds ``bg_threshold``, whatever the others score."""
    return np.asarray(maps[c] > bg_threshold)


def pseudo_label(image: np.ndarray, maps: torch.Tensor, settings: PseudoLabelConfig) -> np.ndarray:
    """The (H, W) uint8 pseudo-label written for (K, H, W) maps: ``label_map``, or the dense CRF's."""
    if not settings.crf:
        return label_map(maps, settings.bg_threshold)
    probs = scores_to_probs(maps.numpy(), settings.bg_threshold)
    return (
        dense_crf(image, probs, iterations=settings.crf_iterations).argmax(axis=0).astype(np.uint8)
    )


def image_tensors(
    image: np.ndarray, human: np.ndarray | None, text: np.ndarray | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(H, W, 3) uint8 image and (H, W) masks or (K, H, W) prior stacks -> (1, 3, H, W) float
    0..255 and (1, K, H, W) masks."""
    shape = image.shape[:2]
    human_t, text_t = (mask_tensor(m, shape)[None].to(device) for m in (human, text))
    tensor = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float().to(device)
    return tensor, human_t, text_t


@torch.no_grad()
def image_maps(
    model_image,
    image: np.ndarray,
    human: np.ndarray | None,
    text: np.ndarray | None,
    *,
    scales: Sequence[float],
    labels: Sequence[int],
    device: torch.device,
) -> torch.Tensor:
    """Model-Image's (C, H, W) maps of one (H, W, 3) uint8 image at its own size, absent classes zeroed."""

    def cam_fn(images, human_masks, text_masks):
        return model_image.cams(normalize(images), human_masks, text_masks)

    tensors = image_tensors(image, human, text, device)
    return class_maps(
        cam_fn,
        *tensors,
        scales=scales,
        present=np.asarray(labels, bool),
        gate_types=gate_types_of(model_image),
    ).cpu()


def segmentation_maps(
    model_image,
    image: np.ndarray,
    human: np.ndarray | None,
    text: np.ndarray | None,
    *,
    seg: SegmentationClasses,
    scales: Sequence[float],
    labels: Sequence[int],
    device: torch.device,
) -> torch.Tensor:
    """(K, H, W) maps of the K segmentation classes only (``image_maps`` less the classes without a region)."""
    maps = image_maps(model_image, image, human, text, scales=scales, labels=labels, device=device)
    return maps[seg.indices]
