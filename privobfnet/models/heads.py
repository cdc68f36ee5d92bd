"""The heads over a backbone's features (paper sections 3.2, 3.4, 3.5).

- ``CamHead``: the attention map generator, a 1x1 conv without bias, one channel per attribute
  (plus a background channel for L2G's crop target); CAM = ReLU of it (Zhou et al. 2016).
- ``gate_by_prior_masks``: section 3.2's mask weighting. Attribute c's positive evidence is kept
  only inside its prior mask (``privobfnet.priors``: coarse, its type's human or text mask; refined,
  its own: face boxes, person mask, lines typed as it); un-masked attributes stay as they are.
- ``AttentionFeatures``: attention-weighted features V, one feature vector per attribute,
  concatenated on the channel axis.
- ``AttributeHead`` and ``PrivacyHead`` read V (eq. 5 and eq. 4).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from privobfnet.priors import PriorLayout


class CamHead(nn.Module):
    """Features -> CAM logits, one channel per attribute (+ background); ReLU of it is the CAM."""

    def __init__(self, in_channels: int, n_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, n_channels, 1, bias=False)
        nn.init.xavier_uniform_(self.conv.weight)

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # (B, D, h, w) -> (B, K, h, w)
        return self.conv(features)


def mask_type_index(prior_types: Sequence[str], extra: Sequence[str] = ()) -> torch.Tensor:
    """Per-channel index into the stacked priors [ones, *human, *text] (``privobfnet.priors``) for
    each class's prior type ("none" | "no_region" | "human" | "text" | "face" | "typed") and each
    ``extra`` channel (a background channel: "none")."""
    return torch.tensor(PriorLayout(tuple(prior_types)).channel_index(extra), dtype=torch.long)


def prior_masks_at(human: torch.Tensor, text: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, Ch, H, W) human and (B, Ct, H, W) text stacks in [0, 1] -> (B, 1 + Ch + Ct, h, w) =
    [ones, *human, *text] area-averaged (coarse priors: Ch = Ct = 1)."""
    masks = torch.cat([torch.ones_like(human[:, :1]), human, text], dim=1)
    return F.adaptive_avg_pool2d(masks, size)


def gate_by_prior_masks(
    cam_logits: torch.Tensor, priors: torch.Tensor, type_index: torch.Tensor
) -> torch.Tensor:
    """Section 3.2's mask weighting applied to CAM logits; ReLU of the result = ReLU(logits) * mask.

    cam_logits (B, K, h, w), priors (B, P, h, w) from ``prior_masks_at``, type_index (K,).
    Only positive evidence is scaled by the mask: negative logits outside the mask are kept, so an
    attribute absent from an image without people can still be scored below zero (a plain
    ``logits * mask`` would pin it at 0, i.e. probability 0.5).
    """
    gate = priors[:, type_index]  # (B, K, h, w)
    return cam_logits - F.relu(cam_logits) * (1.0 - gate)


class AttentionFeatures(nn.Module):
    """Features and attention maps -> V: per attribute, the features pooled under its attention map."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, dim, 1, bias=False), nn.BatchNorm2d(dim), nn.ReLU()
        )

    def forward(self, features: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """features (B, D, h, w), attention (B, C, h, w) >= 0 -> V (B, C, dim).

        V_c = sum_xy f(x, y) a_c(x, y) / (sum_xy a_c(x, y) + 1): an attention-weighted mean that
        falls to 0 where an attribute has no attention at all (e.g. no person for a face).
        """
        reduced = self.reduce(features)  # (B, dim, h, w)
        pooled = torch.einsum("bdhw,bchw->bcd", reduced, attention)  # (B, C, dim)
        return pooled / (attention.sum(dim=(2, 3)).unsqueeze(-1) + 1.0)


class AttributeHead(nn.Module):
    """V (B, C, dim) -> attribute logits (B, C): one linear classifier per attribute on its own V_c."""

    def __init__(self, n_classes: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, dim))
        self.bias = nn.Parameter(torch.zeros(n_classes))
        nn.init.normal_(self.weight, std=dim**-0.5)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bcd,cd->bc", v, self.weight) + self.bias


class PrivacyHead(nn.Module):
    """V (B, C, dim) -> privacy score (B,) in [0, 1]: a two-layer MLP on the concatenated V."""

    def __init__(self, n_classes: int, dim: int, hidden: int = 64):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Flatten(), nn.Linear(n_classes * dim, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(v)).squeeze(1)
