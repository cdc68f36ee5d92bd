"""One training step's forward pass through both networks and every enabled loss (eq. 1-5)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from privobfnet.config import TrainConfig
from privobfnet.data.splits import Batch, SplitData
from privobfnet.inference import batch_maps
from privobfnet.models.crops import align_to_crops, cut_crops, sample_crop_boxes
from privobfnet.models.heads import prior_masks_at
from privobfnet.models.inputs import normalize
from privobfnet.models.privobfnet import PrivObfNet, build_model
from privobfnet.training.distributed import SINGLE, World, unwrap
from privobfnet.training.losses import (
    attribute_loss,
    cropped_loss,
    image_loss,
    l2g_crop_target,
    paper_crop_target,
    privacy_loss,
    total_loss,
)
from privobfnet.viz import attention_figure

LOSS_NAMES = ("image", "cropped", "privacy", "attribute")


def ensemble_losses(
    model_image: PrivObfNet,
    model_cropped: PrivObfNet,
    batch: Batch,
    cfg: TrainConfig,
    *,
    generator: torch.Generator,
    world: World = SINGLE,
) -> dict[str, torch.Tensor]:
    """The enabled loss terms and their weighted sum under "total" (eq. 1).

    With ``use_cropped`` off (Table 4's "Attention(Image)" rows) Model-Cropped is not run and
    eq. 3's multilabel soft margin is applied to Model-Image's own pooled CAM instead, so its CAM
    still learns from the labels. Under torchrun the models are DDP-wrapped, ``batch`` is this
    rank's part of the global batch and the crops are drawn for the global batch, then sliced.
    """
    out = model_image(batch.images, batch.human_masks, batch.text_masks)
    net_image = unwrap(model_image)
    n_classes = net_image.n_classes
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    losses: dict[str, torch.Tensor] = {}
    if cfg.use_cropped:
        size = tuple(batch.images.shape[-2:])
        global_batch = batch.images.shape[0] * world.size
        boxes = sample_crop_boxes(
            global_batch,
            cfg.n_crops,
            size,
            cfg.crop_size,
            generator=generator,
            corners=cfg.crop_placement == "corners_random",
        )[world.rows(global_batch)]  # (B, N, 4)
        crop_human = cut_crops(batch.human_masks, boxes, memory_format=memory_format)
        crop_text = cut_crops(batch.text_masks, boxes, memory_format=memory_format)
        crop_out = model_cropped(
            cut_crops(batch.images, boxes, memory_format=memory_format),
            crop_human,
            crop_text,
            heads=False,
        )
        crop_labels = batch.labels.repeat_interleave(cfg.n_crops, dim=0)  # (B*N, C)
        losses["cropped"] = cropped_loss(crop_out.class_logits, crop_labels)  # eq. 3
        crop_hw = tuple(crop_out.cam_logits.shape[-2:])
        aligned = align_to_crops(out.cam_logits, boxes, size, crop_hw)  # (B*N, K, h, w): G_i
        if cfg.crop_target == "paper":
            target = paper_crop_target(crop_out.cam_logits, n_classes)
            losses["image"] = image_loss(aligned[:, :n_classes], target)  # eq. 2
        else:
            crop_saliency = (
                None
                if batch.saliency is None
                else F.adaptive_avg_pool2d(
                    cut_crops(batch.saliency, boxes, memory_format=memory_format), crop_hw
                )
            )
            fg_gate, bg_gate = l2g_gates(
                prior_masks_at(crop_human, crop_text, crop_hw)
                if net_image.use_mask_weighting
                else None,
                crop_saliency,
                net_image.type_index[:n_classes],
                like=aligned,
            )
            target = l2g_crop_target(
                crop_out.cam_logits,
                crop_labels,
                fg_gate,
                bg_gate,
                bg_threshold=cfg.l2g_bg_threshold,
            )
            losses["image"] = image_loss(aligned, target)  # eq. 2 over C + 1 channels
    else:
        losses["cropped"] = cropped_loss(out.class_logits, batch.labels)
    if cfg.use_privacy:
        losses["privacy"] = privacy_loss(out.privacy, batch.privacy_scores)  # eq. 4
    if cfg.use_attribute:
        losses["attribute"] = attribute_loss(out.attribute_logits, batch.labels)  # eq. 5
    losses["total"] = total_loss(losses, cfg.loss_weights)  # eq. 1
    return losses


def l2g_gates(
    priors: torch.Tensor | None,
    saliency: torch.Tensor | None,
    type_index: torch.Tensor,
    *,
    like: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The l2g crop target's (B*N, C, h, w) foreground and (B*N, 1, h, w) background gates.

    ``priors`` (B*N, 3, h, w) ``prior_masks_at``'s [ones, human, text], or None without mask
    weighting; ``saliency`` (B*N, 1, h, w), or None without saliency maps. A class is gated by its
    mask type's prior, a class of type ``none`` by the saliency map where there is one (L2G gates
    every class by it); the background by 1 - the union of the gates in use."""
    n_crops, _, height, width = like.shape
    ones = like.new_ones(n_crops, 1, height, width)
    none_gate = ones if saliency is None else saliency  # what a class of type none is gated by
    if priors is None:  # no prior masks: every class is of type none
        fg_gate = none_gate.expand(-1, len(type_index), -1, -1)
        used = saliency
    else:
        fg_gate = torch.cat([none_gate, priors[:, 1:]], dim=1)[:, type_index]
        used = priors[:, 1:] if saliency is None else torch.cat([priors[:, 1:], saliency], dim=1)
    bg_gate = ones if used is None else 1.0 - used.amax(dim=1, keepdim=True)
    return fg_gate, bg_gate


def epoch_batches(n_images: int, batch_size: int, *, seed: int, epoch: int) -> list[list[int]]:
    """The image indices of each batch of one epoch: a permutation fixed by (seed, epoch), last partial batch dropped.

    A function of its arguments alone, so a resumed run finds its data order position from the
    iteration number.
    """
    order = np.random.default_rng([seed, epoch]).permutation(n_images)
    return [
        order[i : i + batch_size].tolist() for i in range(0, n_images - batch_size + 1, batch_size)
    ]


NEW_LAYER_LR_MULT = 10.0  # heads learn 10x faster than the (pretrained) backbone
# L2G's groups (get_parameter_groups + its train script) -> lr multiplier; its SGD's weight decay is
# a default, so every group decays (its frozen batch norms are in no group)
L2G_GROUPS = {
    "backbone_weights": 1.0,
    "backbone_biases": 2.0,
    "new_weights": 10.0,
    "new_biases": 20.0,
}


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """The lr of 0-based ``epoch``: ``lr`` until ``lr_decay_epoch``, then times ``lr_decay_factor``.

    L2G decays "at the sixth epoch" as ``epoch >= 5`` (0-based), which is ``lr_decay_epoch: 5``."""
    return cfg.lr * (cfg.lr_decay_factor if epoch >= cfg.lr_decay_epoch else 1.0)


def optimizer_groups(cfg: TrainConfig, networks: Sequence[PrivObfNet]) -> list[dict[str, object]]:
    """SGD parameter groups of the ensemble's networks (key ``lr_mult`` scales the epoch's lr).

    ``new_layers_10x``: a network's backbone at 1x, its new layers at 10x, weight decay on all.
    ``l2g``: L2G's groups (``L2G_GROUPS``), weight decay on each: a weight is a tensor of 2+
    dimensions (conv, linear), a bias one of 1; the heads' batch-norm affine tensors (L2G's head has
    none; its backbone's are frozen, as a pretrained backbone's are here) count as new biases."""
    groups: list[dict[str, object]] = []
    for net in networks:
        backbone, new = net.param_groups()
        if cfg.optimizer == "new_layers_10x":
            groups += [
                {"params": backbone, "lr_mult": 1.0, "weight_decay": cfg.weight_decay},
                {"params": new, "lr_mult": NEW_LAYER_LR_MULT, "weight_decay": cfg.weight_decay},
            ]
            continue
        parts = {
            "backbone_weights": [p for p in backbone if p.ndim > 1],
            "backbone_biases": [p for p in backbone if p.ndim <= 1],
            "new_weights": [p for p in new if p.ndim > 1],
            "new_biases": [p for p in new if p.ndim <= 1],
        }
        for name, mult in L2G_GROUPS.items():
            groups.append(
                {
                    "params": parts[name],
                    "lr_mult": mult,
                    "weight_decay": cfg.weight_decay,
                    "name": name,
                }
            )
    return groups


def build_training(cfg: TrainConfig, mask_types: Sequence[str], device: torch.device):
    """Model-Image, Model-Cropped (train mode, ``channels_last`` as configured) and their SGD
    (``ensemble_optimizer``)."""
    t = cfg
    build = dict(
        backbone=t.backbone,
        tiny_width=t.tiny_width,
        pretrained=t.pretrained,
        mask_types=mask_types,
        background_channel=t.crop_target == "l2g",
        use_mask_weighting=t.use_mask_weighting,
        lite0_frozen_stages=t.lite0_frozen_stages,
    )
    memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
    model_image = build_model(**build).to(device, memory_format=memory_format).train()
    model_cropped = build_model(**build).to(device, memory_format=memory_format).train()
    return model_image, model_cropped, ensemble_optimizer(t, [model_image, model_cropped])


def ensemble_optimizer(cfg: TrainConfig, networks: Sequence[PrivObfNet]) -> torch.optim.SGD:
    """SGD over ``optimizer_groups`` (momentum ``cfg.momentum``; Nesterov with ``optimizer: l2g``)."""
    return torch.optim.SGD(
        optimizer_groups(cfg, networks),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.optimizer == "l2g",
    )


@torch.no_grad()
def attention_overlays(model, data: SplitData, device: torch.device, n_images: int = 4):
    """CAM overlays of the first ``n_images`` images of a split (a matplotlib Figure); leaves the
    model in eval."""
    model.eval()
    indices = list(range(min(n_images, len(data))))
    rgb, human, text = data.stack(indices)
    out = model(normalize(rgb.to(device)), human.to(device), text.to(device))
    maps = batch_maps(out.cam_logits, model.n_classes, tuple(rgb.shape[-2:])).cpu().numpy()
    probs = torch.sigmoid(out.attribute_logits).cpu().numpy()
    images = rgb.permute(0, 2, 3, 1).numpy()
    return attention_figure(images, maps, probs, data.labels[indices].numpy(), data.class_names)
