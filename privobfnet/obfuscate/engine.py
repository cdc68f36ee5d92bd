"""The obfuscation of one image: detectors, Model-Image, snapped regions, style; and the red team.

``Obfuscator.process`` takes an upright (H, W, 3) uint8 RGB image and returns the obfuscated
pixels with what was found and hidden. ``Obfuscator.verify`` runs OCR recognition and the face
detector on an output and lists leaks: a text line read inside a hidden region, or a face box
overlapping one. Files, workers and reports are the caller's (``privobfnet/cli.py``, ``stages/redact.py``).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch

from privobfnet import cams
from privobfnet.config import ConfigError, Preferences
from privobfnet.data.mask_types import read_entity_map
from privobfnet.inference import Prediction, predict
from privobfnet.models.checkpoints import load_ensemble
from privobfnet.models.privobfnet import PrivObfNet
from privobfnet.obfuscate.detect import Detectors, TextReader
from privobfnet.obfuscate.regions import (
    Detections,
    HiddenArea,
    SnapRules,
    hidden_area,
    polygon_patch,
)
from privobfnet.obfuscate.styles import apply_style
from privobfnet.priors import PriorLayout, TypedLine, build_stacks
from privobfnet.text.learned import load_typers
from privobfnet.text.typer import TextTyper

# a recognised line counts as a leak when this share of its polygon lies in the hidden area, its
# recognition confidence is at least LEAK_MIN_SCORE and it holds at least LEAK_MIN_CHARS letters or digits
LEAK_LINE_SHARE = 0.5
LEAK_MIN_SCORE = 0.5
LEAK_MIN_CHARS = 2
LEAK_FACE_SHARE = 0.3  # a face box with this share inside the hidden area is a leak


PreferencesError = ConfigError  # a bad preferences mapping: the message names the source and key


def snap_rules(prefs: Preferences) -> SnapRules:
    """The snapping rules the preferences set."""
    return SnapRules(
        min_overlap=prefs.min_overlap,
        dilate_px=prefs.dilate_px,
        margin_px=prefs.margin_px,
        type_threshold=prefs.type_threshold,
        allow=tuple(prefs.allow),
    )


# the attribute vocabulary without a model: VISPR's (SynthPriv's ids are a subset of it)
DEFAULT_TEXT_DATASET = "vispr"


def build_typer(
    prefs: Preferences, model: "LoadedModel | None", typer_path: str | os.PathLike | None
) -> TextTyper | None:
    """The text typer the preferences ask for (None for ``text_typing: none``).

    Entities map by the model's data set's mask-type table (VISPR's without a model, or for a
    checkpoint that does not name its data set). ``learned`` and ``both`` need the learned typer
    file (``typer_path``, the type_text stage's typer.npz); without one ``both`` falls back to the
    recognizers alone and ``learned`` is refused.
    """
    if prefs.text_typing == "none":
        return None
    dataset = str(
        (model.meta.get("dataset") if model is not None else None) or DEFAULT_TEXT_DATASET
    )
    entity_map = read_entity_map(dataset)
    if model is not None:
        entity_map = {a: e for a, e in entity_map.items() if a in model.class_names}
    learned = load_typers(typer_path) if typer_path else None
    if learned is not None:
        unknown = sorted({a for t in learned.values() for a in t.attributes} - set(entity_map))
        if unknown:
            raise PreferencesError(
                f"{typer_path}: the line typer types {unknown}, which {dataset}'s mask-type "
                "table maps to no text entity"
            )
    source = prefs.text_typing
    if learned is None and source == "learned":
        raise PreferencesError("text_typing learned needs the learned line typer (--typer FILE)")
    if learned is None and source == "both":
        source = "recognizers"
    return TextTyper(entity_map, source=source, learned=learned)


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """Model-Image with what the checkpoint says about it."""

    network: PrivObfNet
    class_names: list[str]
    mask_types: list[str]
    input_size: int
    meta: dict

    @property
    def layout(self) -> PriorLayout:
        """The priors the model is weighted by (``privobfnet.priors``: coarse or refined)."""
        return PriorLayout(tuple(self.meta.get("prior_types", self.mask_types)))


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Model-Image from an ensemble checkpoint (``final.pt``); errors name the file."""
    try:
        model_image, _, meta = load_ensemble(path, device)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: model checkpoint not found") from None
    except Exception as exc:  # torch's unpickling and state-dict errors
        raise ValueError(
            f"{path}: not a PrivObfNet ensemble checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    return LoadedModel(
        model_image,
        list(meta["class_names"]),
        list(meta["mask_types"]),
        int(meta["input_size"]),
        meta,
    )


def attribute_table(model: LoadedModel) -> list[dict[str, str]]:
    """The model's attributes in output order: id, mask type and description (where known)."""
    descriptions = dict(model.meta.get("descriptions") or {})
    if not descriptions and model.meta.get("dataset") == "synthpriv":
        from privobfnet.data.synthpriv import ATTRIBUTES

        descriptions = {a.attribute_id: a.description for a in ATTRIBUTES}
    return [
        {"id": name, "mask_type": kind, "description": descriptions.get(name, "")}
        for name, kind in zip(model.class_names, model.mask_types)
    ]


def model_kinds(model: LoadedModel) -> set[str]:
    """Detectors whose output the model takes as priors: text lines and the person mask; with
    refined priors the face boxes and, for typed classes, the lines read (to be typed)."""
    layout = model.layout
    return (
        ({"text"} if "text" in model.mask_types else set())
        | ({"person"} if "human" in model.mask_types else set())
        | ({"face"} if "face" in layout.types else set())
        | ({"lines"} if layout.typed_classes else set())
    )


def typed_priors(model: LoadedModel, detections: Detections) -> list[TypedLine] | None:
    """The read lines with their typer scores per class index, as the refined priors take them
    (None where the lines were not typed: no typer)."""
    if not detections.typed:
        return None
    index = {name: c for c, name in enumerate(model.class_names)}
    return [
        TypedLine(
            np.asarray(polygon, np.float64),
            {index[a]: v for a, v in typed.scores.items() if a in index},
        )
        for polygon, typed in zip(detections.text_lines, detections.typed)
    ]


def predict_image(
    model: LoadedModel,
    image: np.ndarray,
    detections: Detections,
    *,
    class_threshold: float,
    bg_threshold: float,
    device: str | torch.device = "cpu",
    typer: TextTyper | None = None,
) -> Prediction:
    """Model-Image on one image with the detectors' priors (``typer`` types the read lines where
    the refined priors need them and ``detections`` holds none typed); a prior no class uses is all ones (as in
    training). Refined priors (``privobfnet.priors``): the face boxes, and each typed class's lines
    typed as it (``detections.typed``); without typed lines (no typer) a typed class falls back to
    every text line, so a chosen attribute is not left unweighted (fail-safe, not as trained)."""
    shape = image.shape[:2]
    ones = np.ones(shape, np.float32)
    human = detections.person if "human" in model.mask_types else None
    text = detections.text_mask if "text" in model.mask_types else None
    if ("human" in model.mask_types and human is None) or (
        "text" in model.mask_types and text is None
    ):
        raise ValueError("the model needs the person mask and text lines its mask types use")
    human, text = ones if human is None else human, ones if text is None else text
    layout = model.layout
    if layout.refined:
        if layout.typed_classes and typer is not None and not detections.typed and detections.lines:
            detections = replace(detections, typed=tuple(typer(detections.lines, shape[0])))
        lines = typed_priors(model, detections)
        human, text = build_stacks(
            layout, shape, human=human, text=text, face_boxes=detections.faces, lines=lines or ()
        )
        if lines is None:
            text[1:] = text[0]
    return predict(
        model.network,
        image,
        human,
        text,
        input_size=model.input_size,
        class_threshold=class_threshold,
        bg_threshold=bg_threshold,
        device=device,
    )


def attribute_mask(prediction: Prediction, c: int, prefs: Preferences) -> np.ndarray:
    """(H, W) bool: where attribute ``c`` is detected (probability >= class_threshold) and its
    attention exceeds bg_threshold.

    Not ``prediction.masks``: those give each pixel to one attribute (the argmax, for segmentation),
    so a pixel of a chosen attribute that a non-chosen one outscores would stay visible. Measured
    by the redact stage (default profile's model, class_threshold 0.05): PII / face leak rates
    0.04 / 0.58 with the argmax masks, 0.0 / 0.17 with this rule.
    """
    if prediction.attribute_probs[c] < prefs.class_threshold:
        return np.zeros(prediction.attention.shape[1:], bool)
    return cams.attribute_mask(prediction.attention, c, prefs.bg_threshold)


def detector_kinds(
    prefs: Preferences, model: LoadedModel | None, typer: TextTyper | None = None
) -> set[str]:
    """Which detectors an image needs: the model's priors, the chosen attributes' types, hide_all,
    and "lines" (recognition) where typed text attributes or hide_all pii are chosen."""
    kinds = {"faces": "face", "text": "text", "people": "person", "pii": "lines"}
    needed = {kinds[k] for k in prefs.hide_all}
    if typer is not None and any(a in typer.attributes for a in prefs.hide):
        needed.add("lines")
    if model is not None and prefs.hide:
        types = {
            model.mask_types[model.class_names.index(a)]
            for a in prefs.hide
            if a in model.class_names
        }
        needed |= model_kinds(model) | ({"text"} if "text" in types else set())
        needed |= {"person", "face"} if "human" in types else set()
    return needed


@dataclass
class Outcome:
    """One image's result: the obfuscated pixels and what the report says about it."""

    image: np.ndarray  # (H, W, 3) uint8
    hidden: HiddenArea
    detections: Detections
    privacy_score: float | None = None
    attributes_found: dict[str, float] = field(
        default_factory=dict
    )  # id -> probability, detected ones
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step


class Obfuscator:
    """Hides what ``prefs`` choose in one image at a time; detectors and model are built by the caller."""

    def __init__(
        self,
        prefs: Preferences,
        *,
        detectors: Detectors,
        model: LoadedModel | None = None,
        typer: TextTyper | None = None,
        reader: TextReader | None = None,
        device: str | torch.device = "cpu",
    ):
        typed = set(typer.attributes) if typer is not None else set()
        untyped = [a for a in prefs.hide if a not in typed]
        if untyped and model is None:
            raise PreferencesError(
                f"hiding {', '.join(untyped)} needs a model (--model): without one only text "
                f"attributes are hidden, by text typing ({', '.join(sorted(typed)) or 'off'}); "
                "or use --hide-all"
            )
        if model is not None:
            unknown = [a for a in untyped if a not in model.class_names]
            if unknown:
                raise PreferencesError(
                    f"the model has no attribute(s) {', '.join(unknown)}; "
                    f"its attributes: {', '.join(model.class_names)}"
                )
        if "pii" in prefs.hide_all and typer is None:
            raise PreferencesError("hide_all pii needs text typing (text_typing is none)")
        self.typer = typer
        self.typed_attributes = tuple(a for a in prefs.hide if a in typed)
        if not prefs.hide and not prefs.hide_all:
            raise PreferencesError(
                "nothing to hide: choose attributes (--hide) or --hide-all kinds"
            )
        self.prefs, self.detectors, self.model, self.reader, self.device = (
            prefs,
            detectors,
            model,
            reader,
            device,
        )

    def process(self, image: np.ndarray, *, detections: Detections | None = None) -> Outcome:
        """Obfuscate one upright (H, W, 3) uint8 RGB image (``detections``: precomputed, else detected)."""
        timings: dict[str, float] = {}
        if detections is None:
            detections = self.detectors(image, timings=timings)
        shape = image.shape[:2]
        chosen: dict[str, tuple[np.ndarray, str]] = {}
        score, found = None, {}
        model_types = self.model is not None and bool(self.model.layout.typed_classes)
        if self.typer is not None and (
            self.typed_attributes or "pii" in self.prefs.hide_all or model_types
        ):
            start = time.perf_counter()
            if len(detections.lines) != len(detections.text_lines):
                raise ValueError("text typing needs the detector's lines read (detector 'lines')")
            detections = replace(detections, typed=tuple(self.typer(detections.lines, shape[0])))
            timings["typing"] = time.perf_counter() - start
        if self.model is not None and any(a in self.model.class_names for a in self.prefs.hide):
            start = time.perf_counter()
            m = self.model
            prediction = predict_image(
                m,
                image,
                detections,
                class_threshold=self.prefs.class_threshold,
                bg_threshold=self.prefs.bg_threshold,
                device=self.device,
            )
            timings["model"] = time.perf_counter() - start
            score = prediction.privacy_score
            found = {
                name: float(p)
                for name, p in zip(m.class_names, prediction.attribute_probs)
                if p >= self.prefs.class_threshold
            }
            for attribute in self.prefs.hide:  # each on its own: see attribute_mask
                if attribute not in m.class_names:  # typed by text typing alone
                    continue
                c = m.class_names.index(attribute)
                chosen[attribute] = (attribute_mask(prediction, c, self.prefs), m.mask_types[c])
        start = time.perf_counter()
        area = hidden_area(
            chosen,
            self.prefs.hide_all,
            detections,
            shape,
            snap_rules(self.prefs),
            self.typed_attributes,
        )
        out = apply_style(
            image, area.mask, self.prefs.style, color=self.prefs.color, block_px=self.prefs.block_px
        )
        timings["compose"] = time.perf_counter() - start
        return Outcome(out, area, detections, score, found, timings)

    def verify(self, output: np.ndarray, hidden: np.ndarray) -> list[dict]:
        """Red team on an output as written: text read or faces found inside the hidden area."""
        if self.reader is None or self.detectors.face is None:
            raise ValueError("verify needs a TextReader and a face detector")
        return find_leaks(self.reader(output), self.detectors.face(output).boxes, hidden)


def find_leaks(lines: Sequence, faces: Sequence, hidden: np.ndarray) -> list[dict]:
    """Leaks: recognised lines mostly inside ``hidden`` (by LEAK_* rules) and face boxes overlapping it."""
    leaks = []
    for line in lines:
        box, patch = polygon_patch(line.polygon, hidden.shape)
        x0, y0, x1, y1 = box
        n = int(patch.sum())
        share = float((hidden[y0:y1, x0:x1] & patch).sum() / n) if n else 0.0
        readable = (
            len(re.findall(r"[^\W_]", line.text)) >= LEAK_MIN_CHARS and line.score >= LEAK_MIN_SCORE
        )
        if share >= LEAK_LINE_SHARE and readable:
            leaks.append(
                {
                    "kind": "text",
                    "text": line.text,
                    "score": round(line.score, 3),
                    "box": list(box),
                    "share_hidden": round(share, 3),
                }
            )
    for face in faces:
        x0, y0, x1, y1 = (int(round(v)) for v in face[:4])
        inside = hidden[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)]
        share = float(inside.mean()) if inside.size else 0.0
        if share >= LEAK_FACE_SHARE:
            leaks.append(
                {
                    "kind": "face",
                    "score": round(float(face[4]), 3),
                    "box": [x0, y0, x1, y1],
                    "share_hidden": round(share, 3),
                }
            )
    return leaks
