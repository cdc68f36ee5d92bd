"""The segmentation classes and their label encoding, defined once (pure: names in, names and arrays out).

Every attribute is a class of the attribute and privacy tasks, but only an attribute with an image
region is a *segmentation class*: one whose mask type (``privobfnet/data/mask_types/<dataset>.tsv``)
is not ``no_region``. VISPR's and SynthPriv's ``a0_safe`` ("nothing private") is drawn nowhere, so
it has no CAM pseudo-label pixels, no DeepLab class and no IoU. VOC and COCO have no such class:
there the two lists are the same.

Two label encodings, both with 0 = background and 255 = ignore:

- **ground truth** (the data sets' masks, the manifest's ``mask_path``): attribute ``i`` of the
  manifest's ``class_names`` is ``i + 1``;
- **segmentation** (written pseudo-labels, DeepLab's training targets and predictions, every
  mIoU): the ``j``-th segmentation class is ``j + 1``.

``SegmentationClasses.from_truth`` maps the first to the second; a ground-truth pixel of a class
without a region (none should exist) becomes 255, so it is ignored rather than scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

BACKGROUND = "background"  # segmentation label 0
NO_REGION = "no_region"  # the mask type of an attribute that no pixel shows
IGNORE_LABEL = 255


@dataclass(frozen=True)
class SegmentationClasses:
    """The attributes (manifest order) and the ordered subset of them that segmentation sees."""

    attributes: tuple[str, ...]
    classes: tuple[str, ...]

    def __post_init__(self):
        position = {name: i for i, name in enumerate(self.attributes)}
        unknown = [c for c in self.classes if c not in position]
        if unknown:
            raise ValueError(
                f"segmentation classes {unknown} are not attributes {list(self.attributes)}"
            )
        if [position[c] for c in self.classes] != sorted(position[c] for c in self.classes):
            raise ValueError(
                f"segmentation classes {list(self.classes)} are not in attribute order"
            )
        if len(self.attributes) >= IGNORE_LABEL:
            raise ValueError(
                f"{len(self.attributes)} attributes do not fit a uint8 label next to 255"
            )

    @classmethod
    def from_label_names(
        cls, attributes: Sequence[str], label_names: Sequence[str]
    ) -> "SegmentationClasses":
        """From a segmentation model's label names (background first), as DeepLab's checkpoint stores them."""
        if not label_names or label_names[0] != BACKGROUND:
            raise ValueError(
                f"label names must start with {BACKGROUND!r}, got {list(label_names)[:3]}"
            )
        return cls(tuple(attributes), tuple(label_names[1:]))

    @property
    def indices(self) -> list[int]:
        """The attribute index of each segmentation class (the CAM channels pseudo-labels use)."""
        return [self.attributes.index(name) for name in self.classes]

    @property
    def label_names(self) -> list[str]:
        """Names of the segmentation labels 0..K: background, then the segmentation classes."""
        return [BACKGROUND, *self.classes]

    @property
    def n_labels(self) -> int:
        return len(self.classes) + 1

    def truth_lut(self) -> np.ndarray:
        """(256,) uint8 lookup table: ground-truth label -> segmentation label (no-region classes -> 255)."""
        lut = np.full(256, IGNORE_LABEL, np.uint8)
        lut[0] = 0
        for label, index in enumerate(self.indices, start=1):
            lut[index + 1] = label
        return lut

    def from_truth(self, mask: np.ndarray) -> np.ndarray:
        """A ground-truth mask (H, W) uint8 in the ground-truth encoding -> the segmentation encoding."""
        return self.truth_lut()[mask]


def segmentation_classes(
    attributes: Sequence[str], mask_types: Sequence[str]
) -> SegmentationClasses:
    """The one derivation of the segmentation classes: the attributes whose mask type is not ``no_region``."""
    if len(attributes) != len(mask_types):
        raise ValueError(f"{len(attributes)} attributes but {len(mask_types)} mask types")
    return SegmentationClasses(
        tuple(attributes), tuple(a for a, t in zip(attributes, mask_types) if t != NO_REGION)
    )
