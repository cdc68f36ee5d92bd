"""Random crops for Model-Cropped and the global CAM cut at the same boxes (paper eq. 2).

Boxes are integer pixel boxes ``[x0, y0, x1, y1]`` (x1, y1 exclusive) in the input image, so a
crop is a plain slice; the global CAM is cut at the same boxes with ``torchvision.ops.roi_align``
(``aligned=True``: a box edge at pixel x lies at continuous coordinate x).
"""

from __future__ import annotations

import torch
from torchvision.ops import roi_align


def sample_crop_boxes(
    n_images: int,
    n_crops: int,
    image_size: tuple[int, int],
    crop_size: int,
    *,
    generator: torch.Generator,
    corners: bool = False,
) -> torch.Tensor:
    """(n_images, n_crops, 4) long boxes of side ``crop_size`` inside an (H, W) image.

    Paper: N uniformly random crops, offsets 0..H - crop and 0..W - crop. ``corners=True`` is L2G's
    placement (its ``box_generation``): the corners top-left, bottom-left, top-right, bottom-right
    first, then random offsets from [0, H - crop) and [0, W - crop) (``np.random.randint``'s
    exclusive end: the far edges are the corners').
    """
    height, width = image_size
    if crop_size > min(height, width):
        raise ValueError(f"crop size {crop_size} exceeds the image size {image_size}")
    span_x, span_y = width - crop_size, height - crop_size
    end_x, end_y = (max(1, span_x), max(1, span_y)) if corners else (span_x + 1, span_y + 1)
    x0 = torch.randint(0, end_x, (n_images, n_crops), generator=generator)
    y0 = torch.randint(0, end_y, (n_images, n_crops), generator=generator)
    if corners:
        k = min(4, n_crops)
        x0[:, :k] = torch.tensor([0, 0, span_x, span_x])[:k]
        y0[:, :k] = torch.tensor([0, span_y, 0, span_y])[:k]
    return torch.stack([x0, y0, x0 + crop_size, y0 + crop_size], dim=-1)


def cut_crops(
    tensor: torch.Tensor,
    boxes: torch.Tensor,
    *,
    memory_format: torch.memory_format = torch.channels_last,
) -> torch.Tensor:
    """(B, ch, H, W) and (B, N, 4) equal-size boxes -> (B * N, ch, crop, crop), image-major order."""
    crops = [
        tensor[b, :, y0:y1, x0:x1]
        for b in range(boxes.shape[0])
        for x0, y0, x1, y1 in boxes[b].tolist()
    ]
    return torch.stack(crops).contiguous(memory_format=memory_format)


def align_to_crops(
    global_map: torch.Tensor,
    boxes: torch.Tensor,
    image_size: tuple[int, int],
    output_size: tuple[int, int],
) -> torch.Tensor:
    """Cut a (B, K, h, w) map at the (B, N, 4) image boxes -> (B * N, K, *output_size) (``roi_align``)."""
    n_images, n_crops = boxes.shape[:2]
    scale = global_map.shape[-1] / image_size[1]  # features per input pixel (1/8 at OS8)
    index = torch.arange(
        n_images, dtype=global_map.dtype, device=global_map.device
    ).repeat_interleave(n_crops)
    rois = torch.cat([index[:, None], boxes.reshape(-1, 4).to(global_map)], dim=1)  # (B*N, 5)
    return roi_align(
        global_map, rois, output_size, spatial_scale=scale, sampling_ratio=-1, aligned=True
    )
