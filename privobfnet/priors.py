"""The prior masks each attribute's CAM is weighted by (paper section 3.2), coarse or refined.

The paper weights an attribute's CAM by the mask of its type (Table 1): the human parser's mask for
every human attribute, the OCR text mask for every text attribute, nothing for the rest. That one
mask per type is what ``priors: coarse`` gives. ``priors: refined`` gives each attribute a mask of
its own kind, from the mask-type table's ``refined`` column (``privobfnet.data.mask_types``):

- ``face``: the face detector's boxes, each grown by ``FACE_BOX_GROWTH`` of its size, over the person
  mask at ``FACE_PERSON_FLOOR`` (a face the detector misses keeps some evidence on its person, so
  the attribute can still be recognised; where a box is found the box holds the map's peak);
- ``human``: the person mask (bodies, skin, clothing);
- ``typed``: the text lines typed as this attribute (``privobfnet.text``), each line's polygon at
  the typer's score for the attribute (a line typed as something else weighs little or nothing);
- ``text``: every text line (an attribute no typer types, e.g. handwriting);
- ``none`` / ``no_region``: un-masked.

The masks travel as two stacks so the model's inputs keep their shape: the *human* stack
``[person, face?]`` and the *text* stack ``[lines, typed_1, ..., typed_T]`` (one typed channel per
``typed`` attribute, in class order). ``channel_index`` maps every class to its channel in
``[ones, *human, *text]``, the model's gate (``privobfnet.models.heads``). Training, the
pseudo-labels, evaluation and the obfuscation tool build the stacks here, from the masks stage's
outputs or from the tool's own detections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

PRIOR_MODES = ("coarse", "refined")
PRIOR_TYPES = ("none", "no_region", "human", "text", "face", "typed")
GATED_AS = {"no_region": "none"}  # a class without a region (a0_safe) is un-masked
FACE_BOX_GROWTH = 0.15  # each side of a face box grown by this share of its width / height
FACE_PERSON_FLOOR = 0.3  # the face prior on the person mask outside every box


@dataclass(frozen=True)
class PriorLayout:
    """Which prior mask weighs each class: its prior type and the channel stacks they make."""

    types: tuple[str, ...]  # per class: one of PRIOR_TYPES

    def __post_init__(self):
        unknown = sorted(set(self.types) - set(PRIOR_TYPES))
        if unknown:
            raise ValueError(f"unknown prior type(s) {unknown}; expected {list(PRIOR_TYPES)}")

    @property
    def human_channels(self) -> tuple[str, ...]:
        """Names of the human stack's channels: the person mask, then the face boxes if used."""
        return ("person",) + (("face",) if "face" in self.types else ())

    @property
    def typed_classes(self) -> tuple[int, ...]:
        """Class indices with a typed-lines channel, in class order."""
        return tuple(c for c, t in enumerate(self.types) if t == "typed")

    @property
    def text_channels(self) -> tuple[str, ...]:
        """Names of the text stack's channels: every line, then one per typed class."""
        return ("lines",) + tuple(f"typed:{c}" for c in self.typed_classes)

    @property
    def refined(self) -> bool:
        return "face" in self.types or "typed" in self.types

    def channel_index(self, extra: Sequence[str] = ()) -> list[int]:
        """Per class (and per ``extra`` channel type, e.g. a background "none"), its channel in
        ``[ones, *human, *text]``."""
        n_human = len(self.human_channels)
        typed = {c: j for j, c in enumerate(self.typed_classes)}
        out = []
        for c, kind in enumerate(list(self.types) + list(extra)):
            kind = GATED_AS.get(kind, kind)
            out.append(
                {
                    "none": 0,
                    "human": 1,
                    "face": 2,
                    "text": 1 + n_human,
                    "typed": 2 + n_human + typed.get(c, 0),
                }[kind]
            )
        return out


def layout_for(
    mask_types: Sequence[str], refined_types: Sequence[str] | None, mode: str
) -> PriorLayout:
    """The layout of ``mode`` ("coarse": the paper's Table 1 types; "refined": the table's
    ``refined`` column, None where the table has none, then coarse)."""
    if mode not in PRIOR_MODES:
        raise ValueError(f"priors must be one of {PRIOR_MODES}, got {mode!r}")
    if mode == "refined" and refined_types is not None:
        return PriorLayout(tuple(refined_types))
    return PriorLayout(tuple(mask_types))


def face_mask(boxes: Iterable[Sequence[float]] | None, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float32: 1 inside any face box (x0, y0, x1, y1[, score]), each grown by
    ``FACE_BOX_GROWTH``; zeros without boxes."""
    mask = np.zeros(shape, np.float32)
    h, w = shape
    for box in boxes or ():
        x0, y0, x1, y1 = (float(v) for v in box[:4])
        gx, gy = FACE_BOX_GROWTH * (x1 - x0), FACE_BOX_GROWTH * (y1 - y0)
        r0, r1 = max(0, int(np.floor(y0 - gy))), min(h, int(np.ceil(y1 + gy)))
        c0, c1 = max(0, int(np.floor(x0 - gx))), min(w, int(np.ceil(x1 + gx)))
        mask[r0:r1, c0:c1] = 1.0
    return mask


@dataclass(frozen=True)
class TypedLine:
    """A read line's polygon ((K, 2) x/y pixels) and its typer scores per class index."""

    polygon: np.ndarray
    scores: Mapping[int, float]


def typed_masks(
    lines: Sequence[TypedLine], classes: Sequence[int], shape: tuple[int, int]
) -> np.ndarray:
    """(len(classes), H, W) float32: per class, each line's polygon filled with the line's score
    for the class (the maximum where lines overlap)."""
    out = np.zeros((len(classes), *shape), np.float32)
    for line in lines:
        values = [float(line.scores.get(c, 0.0)) for c in classes]
        if not any(v > 0 for v in values):
            continue
        polygon = Image.new("L", (shape[1], shape[0]), 0)
        points = [tuple(p) for p in np.asarray(line.polygon, np.float64).reshape(-1, 2)]
        if len(points) < 3:
            continue
        ImageDraw.Draw(polygon).polygon(points, fill=255, outline=255)
        inside = np.asarray(polygon) > 0
        for k, value in enumerate(values):
            if value > 0:
                np.maximum(out[k], inside * np.float32(value), out=out[k])
    return out


def to_unit(mask: np.ndarray | None, shape: tuple[int, int], fill: float = 0.0) -> np.ndarray:
    """(H, W) uint8 0..255 / bool / float mask -> float32 in [0, 1]; None -> ``fill``."""
    if mask is None:
        return np.full(shape, fill, np.float32)
    array = np.asarray(mask)
    if array.shape != tuple(shape):
        raise ValueError(f"mask of shape {array.shape} does not match the image's {shape}")
    scale = 255.0 if array.dtype == np.uint8 else 1.0
    return array.astype(np.float32) / scale


def build_stacks(
    layout: PriorLayout,
    shape: tuple[int, int],
    *,
    human: np.ndarray | None,
    text: np.ndarray | None,
    face_boxes: Iterable[Sequence[float]] | None = None,
    lines: Sequence[TypedLine] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """One image's (human stack, text stack), float32 (Ch, H, W) and (Ct, H, W) in [0, 1].

    ``human`` / ``text``: the person and text masks (None: zeros); ``face_boxes``: the face
    detector's boxes; ``lines``: the read lines with their typer scores (per class index).
    """
    human_stack = [to_unit(human, shape)]
    if "face" in layout.types:
        floor = FACE_PERSON_FLOOR * human_stack[0]
        human_stack.append(np.maximum(face_mask(face_boxes, shape), floor))
    text_stack = [to_unit(text, shape)]
    if layout.typed_classes:
        text_stack.extend(typed_masks(lines, layout.typed_classes, shape))
    return np.stack(human_stack), np.stack(text_stack)
