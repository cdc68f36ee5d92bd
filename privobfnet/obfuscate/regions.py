"""Which pixels to hide: each chosen attribute's mask snapped to the detector regions of its mask type.

Snapping rules (``SnapRules``; the attribute's mask is ``Prediction.masks[c]`` at full resolution):

- **text** attribute: every OCR text-line polygon of which at least ``min_overlap`` of the pixels
  lie in the attribute's mask is hidden whole, so no half-covered line stays readable. If the mask
  covers no line (the OCR missed the text the model saw), the mask itself is hidden, dilated by
  ``dilate_px``.
- **human** attribute: every face box of which at least ``min_overlap`` lies in the mask is hidden
  whole, and so is the person mask inside the attribute's mask dilated by ``dilate_px`` (the
  attention snapped to the person's outline). If less than half of the mask lies on a detected
  person (no person mask, or the segmenter missed them), the dilated mask is hidden as it is.
- **none** (un-masked) attribute: the mask dilated by ``dilate_px``.
- model-free ``hide_all``: ``faces`` every face box, ``text`` every text line, ``people`` every
  pixel of the person mask (probability >= ``person_threshold``), ``pii`` every read line typed as
  any private text attribute (a score >= ``type_threshold``), ordinary text left as it is.
- **typed** text attributes (text typing on, ``privobfnet.text.typer``): every read line whose
  score for a chosen attribute is at least ``type_threshold`` is hidden whole, unless its text is
  on the allow-list; the model's attention then only adds the lines recognition could not read
  (no mask fallback: a line the typer read and did not type as chosen stays).

Finally every hidden region grows by ``margin_px`` (an elliptic dilation of the union); with text
typing on, the margin does not grow into a read line that stays (less than half of it hidden), so
the line next to a hidden one stays readable. The hidden regions themselves are never cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Sequence

import cv2
import numpy as np

from privobfnet.config import HIDE_ALL_KINDS
from privobfnet.masks.base import Box, pixel_box, polygon_patch


@dataclass(frozen=True, eq=False)  # arrays inside
class Detections:
    """What the detectors found in one image (pixels of the image)."""

    text_lines: tuple[np.ndarray, ...] = ()  # (K, 2) x/y polygons, one per OCR text line
    faces: tuple[Box, ...] = ()  # x0, y0, x1, y1, score
    person: np.ndarray | None = None  # (H, W) float person probability; None: not computed
    text_mask: np.ndarray | None = (
        None  # (H, W) float text prior as the masks stage makes it (model input)
    )
    # what recognition read of each text line (privobfnet.text.lines.Line), in text_lines order
    lines: tuple = ()
    # each read line typed (privobfnet.text.typer.TypedLine), set by the obfuscator
    typed: tuple = ()


@dataclass(frozen=True, kw_only=True)
class SnapRules:
    """How masks become hidden regions (see the module docstring); the preferences set them
    (``privobfnet.obfuscate.engine.snap_rules``)."""

    min_overlap: float  # share of a text line / face box the attribute's mask must cover
    dilate_px: int  # growth of un-masked attributes' masks (and of the fallbacks)
    margin_px: int  # growth of every hidden region
    person_threshold: float = 0.5  # person probability that counts as a person pixel
    type_threshold: float = 0.3  # a typed line's score from which it is hidden
    allow: tuple[str, ...] = ()  # texts never hidden by typing (normalised: see allowed)


@dataclass(frozen=True)
class Region:
    """One hidden region, for the report."""

    source: str  # the attribute id, or faces / text / people / pii for hide_all
    kind: str  # text_line | face | person | mask
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive) before the margin
    # what decided it: cam (the model's attention), recognizer / learned (text typing), detector
    by: str = "detector"


@dataclass(frozen=True, eq=False)
class HiddenArea:
    """The union of the hidden regions (margin included) and the regions it came from."""

    mask: np.ndarray  # (H, W) bool
    regions: list[Region] = field(default_factory=list)


def dilate(mask: np.ndarray, px: int) -> np.ndarray:
    """(H, W) bool mask grown by ``px`` pixels (elliptic structuring element)."""
    if px <= 0 or not mask.any():
        return mask.astype(bool)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def _box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def share_covered(
    mask: np.ndarray, box: tuple[int, int, int, int], patch: np.ndarray | None = None
) -> float:
    """Share of a box's pixels (or of the patch's pixels inside the box) that ``mask`` covers."""
    x0, y0, x1, y1 = box
    inside = mask[y0:y1, x0:x1]
    if patch is None:
        return float(inside.mean()) if inside.size else 0.0
    n = int(patch.sum())
    return float((inside & patch).sum() / n) if n else 0.0


def _paint_polygon(target: np.ndarray, box, patch) -> None:
    x0, y0, x1, y1 = box
    target[y0:y1, x0:x1] |= patch


def snap_attribute(
    mask: np.ndarray,
    mask_type: str,
    detections: Detections,
    rules: SnapRules,
    source: str,
    *,
    fallback: bool = True,
) -> tuple[np.ndarray, list[Region]]:
    """One attribute's (H, W) bool mask -> (pixels to hide, regions) by the rule of its mask type.

    ``fallback``: a text attribute's mask covering no line is hidden as it is (off for typed text
    attributes, whose readable lines the typer decides)."""
    shape = mask.shape
    hidden = np.zeros(shape, bool)
    regions: list[Region] = []
    if not mask.any():
        return hidden, regions
    if mask_type == "text":
        for polygon in detections.text_lines:
            box, patch = polygon_patch(polygon, shape)
            if share_covered(mask, box, patch) >= rules.min_overlap:
                _paint_polygon(hidden, box, patch)
                regions.append(Region(source, "text_line", box, "cam"))
        if not regions and fallback:
            hidden = dilate(mask, rules.dilate_px)
            regions.append(Region(source, "mask", _box_of(hidden), "cam"))
        return hidden, regions
    if mask_type == "human":
        for face in detections.faces:
            box = pixel_box(face[:4], shape)
            if share_covered(mask, box) >= rules.min_overlap:
                hidden[box[1] : box[3], box[0] : box[2]] = True
                regions.append(Region(source, "face", box, "cam"))
        grown = dilate(mask, rules.dilate_px)
        person = None if detections.person is None else detections.person >= rules.person_threshold
        on_person = 0.0 if person is None else float((mask & person).sum() / mask.sum())
        part = grown & person if person is not None else np.zeros(shape, bool)
        if part.any():
            hidden |= part
            regions.append(Region(source, "person", _box_of(part), "cam"))
        if on_person < 0.5:  # the segmenter missed what the model saw: hide the attention as it is
            hidden |= grown
            regions.append(Region(source, "mask", _box_of(grown), "cam"))
        return hidden, regions
    if mask_type == "none":
        hidden = dilate(mask, rules.dilate_px)
        return hidden, [Region(source, "mask", _box_of(hidden), "cam")]
    raise ValueError(f"{source}: unknown mask type {mask_type!r}")


def hide_all_regions(
    kinds: Sequence[str], detections: Detections, shape: tuple[int, int], rules: SnapRules
) -> tuple[np.ndarray, list[Region]]:
    """Model-free: every face box, text line or person pixel the detectors found."""
    hidden = np.zeros(shape, bool)
    regions: list[Region] = []
    for kind in kinds:
        if kind == "faces":
            for face in detections.faces:
                box = pixel_box(face[:4], shape)
                hidden[box[1] : box[3], box[0] : box[2]] = True
                regions.append(Region("faces", "face", box))  # by the detector
        elif kind == "text":
            for polygon in detections.text_lines:
                box, patch = polygon_patch(polygon, shape)
                _paint_polygon(hidden, box, patch)
                regions.append(Region("text", "text_line", box))
        elif kind == "pii":
            part, found = typed_regions(detections.typed, None, shape, rules, "pii")
            hidden |= part
            regions += found
        elif kind == "people":
            if detections.person is None:
                raise ValueError("hide_all people needs the person mask")
            person = detections.person >= rules.person_threshold
            if person.any():
                hidden |= person
                regions.append(Region("people", "person", _box_of(person)))
        else:
            raise ValueError(
                f"hide_all: unknown kind {kind!r} (known: {', '.join(HIDE_ALL_KINDS)})"
            )
    return hidden, regions


def allowed(text: str, allow: Sequence[str]) -> bool:
    """Whether a line's text is on the allow-list (case, spacing and punctuation ignored)."""
    key = re.sub(r"[\W_]", "", text.lower())
    return bool(key) and key in {re.sub(r"[\W_]", "", a.lower()) for a in allow}


def typed_regions(
    typed: Sequence,
    chosen: Sequence[str] | None,
    shape: tuple[int, int],
    rules: SnapRules,
    source: str | None = None,
) -> tuple[np.ndarray, list[Region]]:
    """Read lines typed as a chosen attribute (``chosen`` None: any attribute), score >=
    ``rules.type_threshold``, not allowed; a region names the attribute (or ``source``) and the
    typing source that scored it."""
    hidden = np.zeros(shape, bool)
    regions: list[Region] = []
    for line in typed:
        if allowed(line.line.text, rules.allow):
            continue
        hits = {
            a: v
            for a, v in line.scores.items()
            if v >= rules.type_threshold and (chosen is None or a in chosen)
        }
        if not hits:
            continue
        best = max(hits, key=lambda a: hits[a])
        box, patch = polygon_patch(line.line.polygon, shape)
        _paint_polygon(hidden, box, patch)
        regions.append(Region(source or best, "text_line", box, line.sources.get(best, "")))
    return hidden, regions


def hidden_area(
    attribute_masks: dict[str, tuple[np.ndarray, str]],
    hide_all: Sequence[str],
    detections: Detections,
    shape: tuple[int, int],
    rules: SnapRules,
    typed_attributes: Sequence[str] = (),
) -> HiddenArea:
    """Union of the snapped attribute regions (id -> (mask, mask type)), the typed text lines of
    ``typed_attributes`` and the hide_all regions, plus margin."""
    hidden, regions = hide_all_regions(hide_all, detections, shape, rules)
    unread = replace(
        detections,
        text_lines=tuple(line.polygon for line in detections.lines if not line.text),
    )
    for attribute_id, (mask, mask_type) in attribute_masks.items():
        typed = attribute_id in typed_attributes
        part, found = snap_attribute(
            mask,
            mask_type,
            unread if typed else detections,
            rules,
            attribute_id,
            fallback=not typed,
        )
        hidden |= part
        regions += found
    if typed_attributes:
        part, found = typed_regions(detections.typed, typed_attributes, shape, rules)
        hidden |= part
        regions += found
    grown = dilate(hidden, rules.margin_px)
    if typed_attributes or "pii" in hide_all:  # the margin stops at the read lines that stay
        grown = hidden | (grown & ~kept_lines(detections, hidden, shape))
    return HiddenArea(grown, regions)


def kept_lines(detections: Detections, hidden: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the polygons of the read lines less than half of which is hidden."""
    kept = np.zeros(shape, bool)
    for line in detections.lines:
        if not line.text:
            continue
        box, patch = polygon_patch(line.polygon, shape)
        if share_covered(hidden, box, patch) < 0.5:
            _paint_polygon(kept, box, patch)
    return kept
