"""SynthPriv: the embedded default data set, synthetic "private photos" with ground-truth masks.

Each image is drawn from its own RNG seeded by (cfg.seed, split, index), so any one image can be
regenerated alone and the same seed gives identical files. Scenes mix varied backgrounds, cartoon
people (faces, bare torsos, tattoos, patterned clothing), text lines (names, addresses, dates,
e-mails, phones), documents and plates, plus unlabelled distractors (shop words, skin-coloured
blobs, blank cards, shapes, people seen from behind) and occluders drawn on top.

Ground truth: ``class_mask`` holds attribute index + 1 where that attribute's region is visible
(0 = background; a0_safe, index 0, never appears). What is drawn on top wins. A text attribute's
region is its rotated text-line box around the glyphs, not the glyph pixels. A label is present
iff its visible region keeps at least ``min_region_pixels`` pixels after occlusion; smaller
remnants are set to background. Safe images (no label left) are labelled a0_safe only.

``write_synthpriv`` writes the VISPR layout (see ``privobfnet.data.readers.vispr``; the user profiles in
VPA's ``user_studies/user_profiles.tsv`` layout, so the real reader path is what runs) plus
``SegmentationClass/``, ``SimulatedHumanParser/`` (the output of a SIMULATED human parser) and
``SimulatedFaceDetector/`` (a SIMULATED face detector's boxes, JSON per image: MediaPipe's detector
does not fire on the drawn faces).

People are drawn at the sizes people photograph them: a face's width is log-uniform in
``synthpriv.face_width`` of the image's (group photos to close portraits, where the body leaves
the frame and a face near an edge is cut by it).
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from privobfnet.config import Config
from privobfnet.data.images import mask_to_image
from privobfnet.data.synthpriv.draw import (
    Canvas,
    background,
    draw_text_block,
    fitted_font,
    random_color,
    random_shape,
    soften,
)
from privobfnet.data.synthpriv.items import (
    OBJECT_KINDS,
    draw_distractor,
    draw_object,
    draw_text_item,
)
from privobfnet.data.synthpriv.people import (
    HEAD_HEIGHT,
    HEAD_WIDTH,
    PERSON_KINDS,
    draw_person,
    simulate_face_detector,
    simulate_human_parser,
)
from privobfnet.data.synthpriv.text import person_name
from privobfnet.io import atomic_dir

MaskType = Literal["none", "human", "text", "no_region"]
PARSER_FOLDER = "SimulatedHumanParser"  # the simulated human parser's output, beside the images
FACE_FOLDER = "SimulatedFaceDetector"  # the simulated face detector's boxes, <image_id>.json each


@dataclass(frozen=True)
class PrivacyAttribute:
    """One SynthPriv attribute; ``mask_type`` is the paper's Table 1 (which prior mask covers it)."""

    attribute_id: str
    group: str  # one of VISPR's groups (or "Safe")
    description: str
    mask_type: MaskType
    base_sensitivity: int  # 1 (not private) .. 5 (very private), mean of the simulated users


_A, _PD = PrivacyAttribute, "Personal Description"
ATTRIBUTES: tuple[PrivacyAttribute, ...] = (
    _A("a0_safe", "Safe", "nothing private", "no_region", 1),
    _A("a9_face_complete", _PD, "a fully visible face", "human", 4),
    _A("a10_face_partial", _PD, "a partly visible face (occluded or cut off)", "human", 3),
    _A("a11_tattoo", _PD, "a tattoo on an arm", "human", 3),
    _A("a12_semi_nudity", _PD, "a bare upper body", "human", 4),
    _A("a18_ethnic_clothing", _PD, "traditional patterned clothing", "human", 2),
    _A("a19_name_full", _PD, "a person's full name", "text", 4),
    _A("a24_birth_date", _PD, "a date of birth", "text", 4),
    _A("a49_phone", "Personal Life", "a phone number", "text", 4),
    _A("a74_address_current_complete", "Whereabouts", "a complete postal address", "text", 5),
    _A("a82_date_time", "Whereabouts", "a date or time stamp", "text", 2),
    _A("a90_email", "Internet", "an e-mail address", "text", 3),
    _A("a30_credit_card", "Documents", "a bank card", "none", 5),
    _A("a38_ticket", "Documents", "an admission ticket", "none", 2),
    _A("a43_medicine", "Health", "a prescription medicine bottle", "none", 3),
    _A("a103_license_plate_complete", "Automobile", "a licence plate", "none", 3),
)
del _A, _PD
ATTRIBUTE_IDS: tuple[str, ...] = tuple(a.attribute_id for a in ATTRIBUTES)
ATTRIBUTE_INDEX = {a: i for i, a in enumerate(ATTRIBUTE_IDS)}
TEXT_ATTRIBUTES = tuple(a.attribute_id for a in ATTRIBUTES if a.mask_type == "text")
FACE_COMPLETE_FRACTION = 0.85  # a face with less of its area visible is a10_face_partial
MAX_ATTEMPTS = 8  # redraws of a non-safe scene whose private items all ended up hidden


def min_region_pixels(image_size: int) -> int:
    """Smallest visible region (pixels) for a label to count as present."""
    return max(6, round(0.0005 * image_size * image_size))


@dataclass(frozen=True, eq=False)  # arrays inside: compare fields explicitly
class Sample:
    """One generated image with its ground truth."""

    image_id: str
    image: np.ndarray  # (H, W, 3) uint8
    class_mask: np.ndarray  # (H, W) uint8: attribute index + 1, 0 background
    parser_mask: np.ndarray  # (H, W) uint8 0/255: the SIMULATED human parser's output
    person_mask: np.ndarray  # (H, W) bool: exact union of the people's visible silhouettes
    labels: tuple[int, ...]  # attribute indices present, sorted; (0,) for a safe image
    people_boxes: tuple[tuple[int, int, int, int], ...]  # (x0, y0, x1, y1), x1/y1 exclusive
    # (attribute id, string) of every text line left visible (>= min_region_pixels), drawing order;
    # ordinary (non-private) lines have attribute None
    texts: tuple[tuple[str | None, str], ...] = ()
    # the SIMULATED face detector's boxes, [x0, y0, x1, y1, score] each (synthpriv.face_noise)
    face_boxes: tuple[tuple[float, ...], ...] = ()

    @property
    def label_ids(self) -> tuple[str, ...]:
        """Attribute ids of ``labels``."""
        return tuple(ATTRIBUTE_IDS[i] for i in self.labels)


# --------------------------------------------------------------------------------------------
# Scene composition
# --------------------------------------------------------------------------------------------
def _person_item(
    canvas: Canvas, rng: np.random.Generator, person: int, kind: str, face_width: list[float]
) -> None:
    """One person whose face is ``face_width`` (log-uniform [min, max]) of the image wide: small,
    whole figures for group photos up to close portraits whose body leaves the frame."""
    size = canvas.size
    low, high = np.log(face_width[0]), np.log(face_width[1])
    height = size * float(np.exp(rng.uniform(low, high))) / HEAD_WIDTH
    head = HEAD_HEIGHT * height
    top = rng.uniform(-0.3 * head, max(-0.3 * head + 1.0, size - 0.55 * height, 0.6 * size - head))
    drawn = draw_person(
        canvas,
        rng,
        person,
        rng.uniform(0.05, 0.95) * size,
        top,
        height,
        kind=kind,
        tattoo=kind != "back" and rng.random() < 0.4,
    )
    if drawn.badge_center and rng.random() < 0.3:  # a name badge on the shirt
        lines = [person_name(rng)]
        typeface = fitted_font(rng, lines, 0.05 * height, drawn.badge_width)
        draw_text_block(
            canvas,
            rng,
            lines,
            "a19_name_full",
            *drawn.badge_center,
            0.0,
            typeface,
            panel=True,
            person=person,
            part="torso",
        )


def _compose(rng: np.random.Generator, cfg: Config) -> tuple[Canvas, int, bool]:
    """Draw one scene; returns the canvas, how many people were drawn and whether it is safe."""
    sp = cfg.synthpriv
    canvas = Canvas(background(rng, sp.image_size))
    caps = {"people": sp.max_people, "text": sp.max_text_items, "objects": sp.max_objects}
    safe = rng.random() < sp.safe_fraction or not any(caps.values())
    counts = {k: 0 if safe else int(rng.integers(0, c + 1)) for k, c in caps.items()}
    if not safe and not any(counts.values()):
        open_kinds = [k for k, c in caps.items() if c > 0]
        counts[open_kinds[rng.integers(len(open_kinds))]] = 1
    jobs: list[tuple[str, str | None]] = [("distractor", None)] * int(
        rng.poisson(sp.distractor_rate)
    )
    jobs += [
        ("text", TEXT_ATTRIBUTES[rng.integers(len(TEXT_ATTRIBUTES))]) for _ in range(counts["text"])
    ]
    jobs += [
        ("object", OBJECT_KINDS[rng.integers(len(OBJECT_KINDS))]) for _ in range(counts["objects"])
    ]
    kinds = rng.choice(PERSON_KINDS, size=counts["people"], p=[0.5, 0.2, 0.18, 0.12])
    jobs += [("person", str(k)) for k in kinds]
    if safe and sp.max_people and rng.random() < 0.3:  # people seen from behind are not private
        jobs += [("person", "back")] * int(rng.integers(1, sp.max_people + 1))
    n_people = 0
    for job in rng.permutation(len(jobs)):
        what, arg = jobs[job]
        if what == "person":
            _person_item(canvas, rng, n_people, arg, sp.face_width)
            n_people += 1
        elif what == "text":
            draw_text_item(canvas, rng, arg)
        elif what == "object":
            draw_object(canvas, rng, arg)
        else:
            draw_distractor(canvas, rng)
    for _ in range(
        int(rng.poisson(0.3 if safe else 0.6))
    ):  # occluders, often right over a private item
        labelled = np.array([i.attribute is not None for i in canvas.instances])
        ys, xs = np.nonzero(labelled[canvas.owner])
        if len(xs) and rng.random() < 0.6:
            pick = rng.integers(len(xs))
            cx, cy = float(xs[pick]), float(ys[pick])
        else:
            cx, cy = rng.uniform(0, sp.image_size, 2)
        random_shape(
            canvas, rng, cx, cy, sp.image_size * rng.uniform(0.05, 0.15), random_color(rng)
        )
    return canvas, n_people, safe


def _ground_truth(canvas: Canvas) -> tuple[np.ndarray, tuple[int, ...]]:
    """Class mask and labels from the owner map (face completeness, minimum region size)."""
    counts = np.bincount(canvas.owner.ravel(), minlength=len(canvas.instances))
    lut = np.zeros(len(canvas.instances), np.uint8)
    for i, inst in enumerate(canvas.instances):
        attribute = inst.attribute
        if attribute == "a9_face_complete" and counts[i] < FACE_COMPLETE_FRACTION * inst.full_area:
            attribute = "a10_face_partial"
        if attribute is not None:
            lut[i] = ATTRIBUTE_INDEX[attribute] + 1
    class_mask = lut[canvas.owner]
    area = np.bincount(class_mask.ravel(), minlength=len(ATTRIBUTES) + 1)
    keep = area >= min_region_pixels(canvas.size)
    keep[0] = True
    class_mask[~keep[class_mask]] = 0
    labels = tuple(
        int(i) for i in np.flatnonzero(keep[1:] & (area[1:] > 0))
    )  # value i + 1 -> index i
    return class_mask, labels


def _image_seed(cfg: Config, split: str, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(
        [cfg.seed & 0xFFFFFFFFFFFFFFFF, zlib.crc32(split.encode()), index]
    )


def generate_sample(split: str, index: int, cfg: Config) -> Sample:
    """Image ``index`` of ``split``, regenerated alone from (cfg.seed, split, index)."""
    streams = _image_seed(cfg, split, index).spawn(MAX_ATTEMPTS + 2)
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng(streams[attempt])
        canvas, n_people, safe = _compose(rng, cfg)
        class_mask, labels = _ground_truth(canvas)
        if labels or safe:
            break
    # own streams: the parser's and the face detector's noise never change the scene
    parser_rng = np.random.default_rng(streams[MAX_ATTEMPTS])
    parser_mask = simulate_human_parser(canvas, n_people, cfg.synthpriv.parser_noise, parser_rng)
    face_rng = np.random.default_rng(streams[MAX_ATTEMPTS + 1])
    face_boxes = simulate_face_detector(canvas, cfg.synthpriv.face_noise, face_rng)
    person_of = np.array([-1 if i.person is None else i.person for i in canvas.instances])
    owner_person = person_of[canvas.owner]
    boxes = []
    for person in range(n_people):
        ys, xs = np.nonzero(owner_person == person)
        if len(xs):
            boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    owned = np.bincount(canvas.owner.ravel(), minlength=len(canvas.instances))
    texts = tuple(
        (inst.attribute, inst.text)
        for i, inst in enumerate(canvas.instances)
        if inst.text and owned[i] >= min_region_pixels(canvas.size)
    )
    return Sample(
        image_id=f"{split}_{index:05d}",
        image=soften(canvas.rgb, rng),
        class_mask=class_mask,
        parser_mask=parser_mask,
        person_mask=owner_person >= 0,
        labels=labels or (0,),
        people_boxes=tuple(boxes),
        texts=texts,
        face_boxes=tuple(tuple(box) for box in face_boxes),
    )


def drawn_texts(
    image_id: str, cfg: Config, truth: np.ndarray | None = None
) -> list[tuple[str | None, str]]:
    """(attribute or None for ordinary text, string) of every line drawn in image ``image_id``
    (``<split>_<index>``), regenerated from the seed; checked against the stored ground truth
    ``truth`` (the class mask) when given."""
    split, index = image_id.rsplit("_", 1)
    sample = generate_sample(split, int(index), cfg)
    if truth is not None and not np.array_equal(sample.class_mask, truth):
        raise ValueError(
            f"{image_id}: regenerated ground truth differs from the stored one (seed or synthpriv "
            "params changed since the download stage?)"
        )
    return list(sample.texts)


# --------------------------------------------------------------------------------------------
# Simulated users and the on-disk data set
# --------------------------------------------------------------------------------------------
def user_preferences(n_profiles: int, seed: int) -> np.ndarray:
    """(n_profiles, n_attributes) int ratings 1..5: base sensitivity + per-user bias and noise."""
    if n_profiles < 1:
        raise ValueError(f"n_profiles must be >= 1, got {n_profiles}")
    rng = np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, 0x5EED])
    base = np.array([a.base_sensitivity for a in ATTRIBUTES], np.float64)
    ratings = (
        base
        + rng.normal(0, 0.6, (n_profiles, 1))
        + rng.normal(0, 0.8, (n_profiles, len(ATTRIBUTES)))
    )
    prefs = np.clip(np.rint(ratings), 1, 5).astype(np.int64)
    prefs[:, ATTRIBUTE_INDEX["a0_safe"]] = 1
    return prefs


def user_profiles_tsv(n_profiles: int, seed: int) -> str:
    """``user_preferences`` in VPA's user_profiles.tsv layout (see ``privobfnet.data.readers.vispr``).

    No header; one row per attribute except a0_safe (VPA's file has none; the reader gives it the
    lowest rating, 1, which is what ``user_preferences`` holds for it), fields = attribute id,
    description, then one rating per profile printed as a float (``4.0``) as VPA prints them.
    """
    prefs = user_preferences(n_profiles, seed)
    rows = [
        "\t".join([a.attribute_id, a.description, *(repr(float(v)) for v in prefs[:, i])])
        for i, a in enumerate(ATTRIBUTES)
        if a.attribute_id != "a0_safe"
    ]
    return "\n".join(rows) + "\n"


def _write_tables(root: Path, cfg: Config) -> None:
    rows = ["idx\tattribute_id\tgroup\tdescription"]
    rows += [f"{i}\t{a.attribute_id}\t{a.group}\t{a.description}" for i, a in enumerate(ATTRIBUTES)]
    (root / "attributes.tsv").write_text("\n".join(rows) + "\n")
    (root / "user_studies").mkdir()
    profiles = user_profiles_tsv(cfg.synthpriv.n_user_profiles, cfg.seed)
    (root / "user_studies" / "user_profiles.tsv").write_text(profiles)
    meta = {
        "generator": "privobfnet.data.synthpriv",
        "seed": cfg.seed,
        "splits": dict(cfg.data.splits),
        "synthpriv": dataclasses.asdict(cfg.synthpriv),
        "attributes": [dataclasses.asdict(a) for a in ATTRIBUTES],
        "min_region_pixels": min_region_pixels(cfg.synthpriv.image_size),
        "face_complete_fraction": FACE_COMPLETE_FRACTION,
        "text_region": "rotated text-line box around the glyphs",
    }
    (root / "synthpriv.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def write_synthpriv(root: Path, cfg: Config, *, progress: bool = True) -> dict:
    """Write every split of cfg.data.splits under ``root`` atomically; returns counts and timing."""
    from tqdm import tqdm

    label_counts: Counter[str] = Counter()
    with atomic_dir(root) as tmp:  # a killed run leaves either the old data set or the new one
        _write_tables(tmp, cfg)
        for sub in ("SegmentationClass", PARSER_FOLDER, FACE_FOLDER):
            (tmp / sub).mkdir()
        for split, n_images in cfg.data.splits.items():
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "annotations" / split).mkdir(parents=True)
            ids = []
            for index in tqdm(range(n_images), desc=f"synthpriv {split}", disable=not progress):
                sample = generate_sample(split, index, cfg)
                ids.append(sample.image_id)
                label_counts.update(sample.label_ids)
                image_path = f"images/{split}/{sample.image_id}.jpg"
                Image.fromarray(sample.image).save(tmp / image_path, quality=95)
                record = {
                    "id": sample.image_id,
                    "image_path": image_path,
                    "labels": list(sample.label_ids),
                }
                annotation = tmp / "annotations" / split / f"{sample.image_id}.json"
                annotation.write_text(json.dumps(record) + "\n")
                mask_to_image(sample.class_mask).save(
                    tmp / "SegmentationClass" / f"{sample.image_id}.png"
                )
                parser_png = tmp / PARSER_FOLDER / f"{sample.image_id}.png"
                Image.fromarray(sample.parser_mask, "L").save(parser_png)
                faces_json = tmp / FACE_FOLDER / f"{sample.image_id}.json"
                faces_json.write_text(json.dumps([list(b) for b in sample.face_boxes]) + "\n")
            (tmp / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return {
        "images": sum(cfg.data.splits.values()),
        "splits": dict(cfg.data.splits),
        "safe_images": label_counts.get("a0_safe", 0),
        "label_counts": {a: label_counts.get(a, 0) for a in ATTRIBUTE_IDS},
    }
