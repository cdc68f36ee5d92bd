"""SynthPriv people: cartoon figures (skin, clothes, face, limbs) and the simulated human parser.

A person is a set of canvas instances that share its index (legs, torso, arms, neck, hair, face,
tattoo, name badge), so the parser's silhouette is the union of what is still visible of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from privobfnet.config import FaceNoise, ParserNoise
from privobfnet.data.synthpriv.draw import Canvas, random_color, skin_color, smooth_noise

LIMBS = ("arm_l", "arm_r", "leg_l", "leg_r")
PERSON_KINDS = ("clothed", "semi_nude", "ethnic", "back")
HAIR_COLORS = np.array(
    [(20, 15, 10), (60, 35, 20), (110, 70, 35), (200, 160, 90), (150, 60, 25), (170, 170, 170)],
    np.float32,
)
INK = np.array([25, 40, 75], np.float32)
HEAD_WIDTH = 0.15  # a head's width as a share of the person's height (its face is that wide)
HEAD_HEIGHT = 0.19
FACE_DETECTOR_SCORES = (0.6, 0.99)  # the simulated detector's box scores, uniform


@dataclass(frozen=True)
class DrawnPerson:
    """Where the composer may put a name badge (on a shirt); None when the chest is bare."""

    badge_center: tuple[float, float] | None
    badge_width: float


def _line(canvas: Canvas, points, width: float, color, inst: int) -> None:
    """A thick polyline with round ends and joints."""
    r = width / 2

    def draw(d: ImageDraw.ImageDraw) -> None:
        d.line(points, fill=255, width=max(1, round(width)), joint="curve")
        for x, y in (points[0], points[-1]):
            d.ellipse([x - r, y - r, x + r, y + r], fill=255)

    canvas.fill(draw, color, inst)


def _along(p, q, t: float) -> tuple[float, float]:
    return p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t


def _pattern(
    rng: np.random.Generator, size: int, colors: list[np.ndarray], scale: float
) -> np.ndarray:
    """(S, S, 3) bold textile pattern: stripes, zigzags or checks in 2-3 colours, ``scale`` px wide."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = max(2.5, scale * rng.uniform(0.7, 1.4))
    kind = rng.integers(3)
    if kind == 0:
        band = yy / period
    elif kind == 1:
        band = yy / period + np.abs((xx / period) % 2 - 1)
    else:
        band = np.floor(xx / period) + np.floor(yy / period)
    index = np.floor(band).astype(np.int64) % len(colors)
    return np.stack(colors)[index]


def _tattoo(
    canvas: Canvas, rng: np.random.Generator, at, radius: float, person: int, part: str
) -> None:
    """A small ink motif (star, heart, diamond or ring), labelled a11_tattoo."""
    x, y = at
    shape = Image.new("L", (canvas.size, canvas.size), 0)
    d = ImageDraw.Draw(shape)
    kind = rng.integers(4)
    if kind == 0:
        radii = [radius if i % 2 == 0 else 0.45 * radius for i in range(10)]
        angles = [math.pi * i / 5 - math.pi / 2 for i in range(10)]
        d.polygon(
            [(x + r * math.cos(a), y + r * math.sin(a)) for r, a in zip(radii, angles)], fill=255
        )
    elif kind == 1:
        r = radius / 2
        d.ellipse([x - 2 * r, y - 1.5 * r, x, y + 0.5 * r], fill=255)
        d.ellipse([x, y - 1.5 * r, x + 2 * r, y + 0.5 * r], fill=255)
        d.polygon(
            [(x - 1.9 * r, y - 0.2 * r), (x + 1.9 * r, y - 0.2 * r), (x, y + 2 * r)], fill=255
        )
    elif kind == 2:
        d.polygon(
            [(x, y - radius), (x + 0.7 * radius, y), (x, y + radius), (x - 0.7 * radius, y)],
            fill=255,
        )
    else:
        ring = [x - radius, y - radius, x + radius, y + radius]
        d.ellipse(ring, outline=255, width=max(2, round(radius / 2)))
    footprint = np.asarray(shape) > 127
    inst = canvas.new_instance(
        "a11_tattoo", person=person, part=part, full_area=float(footprint.sum())
    )
    canvas.paint(0, 0, footprint * np.float32(0.85), INK * rng.uniform(0.6, 1.2), footprint, inst)


class _Body:
    """Measurements, colours and instance bookkeeping of one person being drawn."""

    def __init__(
        self, canvas: Canvas, rng: np.random.Generator, person: int, cx: float, top: float, h: float
    ):
        self.canvas, self.person, self.cx, self.top, self.h = canvas, person, cx, top, h
        self.skin, self.shirt = skin_color(rng), random_color(rng)
        self.trousers = random_color(rng, sat=(0.1, 0.6), val=(0.15, 0.6))
        self.limb_w, self.leg_w = max(2.0, 0.07 * h), max(2.0, 0.085 * h)
        self.ys, self.yh = top + 0.22 * h, top + 0.56 * h  # shoulder and hip heights
        self.shoulder, self.hip = 0.13 * h * rng.uniform(0.9, 1.15), 0.105 * h  # half widths

    def part(self, name: str, attribute: str | None = None, **kwargs) -> int:
        """A new canvas instance belonging to this person."""
        return self.canvas.new_instance(attribute, person=self.person, part=name, **kwargs)

    def disc(self, x: float, y: float, r: float, color, inst: int) -> None:
        """A filled circle."""
        self.canvas.fill(lambda d: d.ellipse([x - r, y - r, x + r, y + r], fill=255), color, inst)


def _legs(body: _Body, rng: np.random.Generator, *, shorts: bool, swimwear: bool) -> None:
    h, cx, leg_w = body.h, body.cx, body.leg_w
    spread = rng.uniform(0.0, 0.08) * h
    for side, part in ((-1, "leg_l"), (1, "leg_r")):
        inst = body.part(part)
        hip = (cx + side * 0.055 * h, body.yh - leg_w / 2)
        knee = (cx + side * (0.06 * h + spread / 2), body.top + 0.77 * h)
        foot = (cx + side * (0.06 * h + spread), body.top + 0.96 * h)
        _line(body.canvas, [hip, knee, foot], leg_w, body.skin if shorts else body.trousers, inst)
        if shorts:
            hem = _along(hip, knee, 0.35 if swimwear else 0.8)
            _line(body.canvas, [hip, hem], leg_w * 1.1, body.trousers, inst)
        fx, fy = foot[0] + side * leg_w * 0.3, foot[1]
        shoe = [fx - leg_w * 0.8, fy - leg_w * 0.35, fx + leg_w * 0.8, fy + leg_w * 0.45]
        body.canvas.fill(
            lambda d, box=shoe: d.ellipse(box, fill=255), np.full(3, 35, np.float32), inst
        )


def _torso(body: _Body, rng: np.random.Generator, kind: str) -> np.ndarray:
    """Shirt, patterned tunic (ethnic) or bare skin (semi-nudity); returns the sleeve colour."""
    h, cx, ys, yh, size = body.h, body.cx, body.ys, body.yh, body.canvas.size
    torso = body.part(
        "torso", {"semi_nude": "a12_semi_nudity", "ethnic": "a18_ethnic_clothing"}.get(kind)
    )
    bottom, flare = (yh + 0.14 * h, 1.35) if kind == "ethnic" else (yh, 1.0)
    outline = [
        (cx - body.shoulder, ys),
        (cx + body.shoulder, ys),
        (cx + body.hip * flare, bottom),
        (cx - body.hip * flare, bottom),
    ]
    if kind == "ethnic":
        colors = [
            random_color(rng, sat=(0.6, 1.0), val=(0.5, 1.0))
            for _ in range(int(rng.integers(2, 4)))
        ]
        fabric, sleeves = _pattern(rng, size, colors, 0.04 * h), colors[0]
    else:
        sleeves = body.skin if kind == "semi_nude" else body.shirt
        shade = 0.85 + 0.3 * np.linspace(0, 1, size, dtype=np.float32)[None, :, None]
        fabric = np.broadcast_to(sleeves, (size, size, 3)) * shade
    r = body.limb_w / 2

    def torso_shape(d: ImageDraw.ImageDraw) -> None:
        d.polygon(outline, fill=255)
        for x in (cx - body.shoulder + r, cx + body.shoulder - r):
            d.ellipse([x - r, ys, x + r, ys + 2 * r], fill=255)

    body.canvas.fill(torso_shape, fabric, torso)
    if kind == "semi_nude":  # swimwear band over the hips, not part of the bare-skin region
        band = [cx - body.hip, yh - 0.05 * h, cx + body.hip, yh + 0.02 * h]
        body.canvas.fill(lambda d: d.rectangle(band, fill=255), body.trousers, body.part("hips"))
    return sleeves


def _arms(
    body: _Body, rng: np.random.Generator, sleeves: str, sleeve_color, *, tattoo: bool
) -> None:
    """Skin, then sleeves on top, then hands; poses: hanging, raised, waving, hand on hip."""
    h, limb_w = body.h, body.limb_w
    for side, part in ((-1, "arm_l"), (1, "arm_r")):
        pose = rng.integers(4)
        upper = [
            rng.uniform(8, 25),
            rng.uniform(120, 165),
            rng.uniform(60, 100),
            rng.uniform(25, 40),
        ][pose]
        fore = [
            upper + rng.uniform(-5, 20),
            upper + rng.uniform(-20, 20),
            rng.uniform(140, 180),
            upper - rng.uniform(80, 110),
        ][pose]  # degrees from straight down, outwards positive
        shoulder = (body.cx + side * (body.shoulder - 0.4 * limb_w), body.ys + 0.5 * limb_w)
        elbow = (
            shoulder[0] + side * 0.17 * h * math.sin(math.radians(upper)),
            shoulder[1] + 0.17 * h * math.cos(math.radians(upper)),
        )
        hand = (
            elbow[0] + side * 0.15 * h * math.sin(math.radians(fore)),
            elbow[1] + 0.15 * h * math.cos(math.radians(fore)),
        )
        inst = body.part(part)
        _line(body.canvas, [shoulder, elbow, hand], limb_w, body.skin, inst)
        if sleeves == "long":
            _line(
                body.canvas,
                [shoulder, elbow, _along(elbow, hand, 0.8)],
                limb_w * 1.15,
                sleeve_color,
                inst,
            )
        elif sleeves == "short":
            _line(
                body.canvas,
                [shoulder, _along(shoulder, elbow, 0.55)],
                limb_w * 1.2,
                sleeve_color,
                inst,
            )
        body.disc(*hand, 0.6 * limb_w, body.skin, inst)
        if tattoo and limb_w >= 4 and (side == 1 or rng.random() < 0.3):
            radius = 0.75 * limb_w * rng.uniform(1.0, 1.4)  # seen at 320 px on a group photo
            _tattoo(body.canvas, rng, _along(elbow, hand, 0.45), radius, body.person, part)


def _head(body: _Body, rng: np.random.Generator, *, back_view: bool) -> None:
    """Neck, hair and head; a front view has a face (eyes or sunglasses, mouth, maybe a fringe)."""
    h, cx, canvas = body.h, body.cx, body.canvas
    hh, hw = HEAD_HEIGHT * h, HEAD_WIDTH * h
    hy = body.top + hh / 2
    neck = [cx - 0.035 * h, hy, cx + 0.035 * h, body.ys + 0.02 * h]
    canvas.fill(lambda d: d.rectangle(neck, fill=255), body.skin * 0.92, body.part("neck"))
    hair_color = HAIR_COLORS[rng.integers(len(HAIR_COLORS))]
    x0, y0, x1, y1 = head = [cx - hw / 2, hy - hh / 2, cx + hw / 2, hy + hh / 2]
    style = rng.integers(4)  # 0 bald, 1 short, 2 long, 3 bun
    hair = body.part("hair")
    if style or back_view:

        def hair_shape(d: ImageDraw.ImageDraw) -> None:
            d.ellipse([x0 - 0.08 * hw, y0 - 0.1 * hh, x1 + 0.08 * hw, hy + 0.2 * hh], fill=255)
            if style == 2:
                d.rectangle([x0 - 0.08 * hw, hy, x1 + 0.08 * hw, hy + 0.75 * hh], fill=255)
            if style == 3:
                d.ellipse([cx - 0.25 * hw, y0 - 0.35 * hh, cx + 0.25 * hw, y0 + 0.1 * hh], fill=255)

        canvas.fill(hair_shape, hair_color, hair)
    if back_view:
        canvas.fill(lambda d: d.ellipse(head, fill=255), hair_color * 0.9, hair)
        return
    face = body.part(
        "face", "a9_face_complete", full_area=math.pi * hw * hh / 4, box=(x0, y0, x1, y1)
    )
    canvas.fill(lambda d: d.ellipse(head, fill=255), body.skin, face)
    if style:  # fringe: a chord of the head ellipse, so the face region stays the ellipse
        cut = rng.uniform(10, 35)
        canvas.fill(lambda d: d.chord(head, 180 + cut, 360 - cut, fill=255), hair_color, face)
    dark = np.array([30, 25, 25], np.float32)
    eye_r, eye_y = max(0.6, 0.07 * hw), hy - 0.02 * hh
    if rng.random() < 0.12:  # sunglasses
        glasses = [cx - 0.38 * hw, eye_y - 2 * eye_r, cx + 0.38 * hw, eye_y + 2 * eye_r]
        canvas.fill(lambda d: d.rectangle(glasses, fill=255), dark, face)
    else:
        for ex in (cx - 0.22 * hw, cx + 0.22 * hw):
            body.disc(ex, eye_y, eye_r, dark, face)
    mouth = [cx - 0.2 * hw, hy + 0.15 * hh, cx + 0.2 * hw, hy + 0.3 * hh]
    canvas.fill(
        lambda d: d.arc(mouth, 20, 160, fill=255, width=max(1, round(0.03 * h))),
        np.array([150, 40, 40], np.float32),
        face,
    )


def draw_person(
    canvas: Canvas,
    rng: np.random.Generator,
    person: int,
    cx: float,
    top: float,
    height: float,
    *,
    kind: str,
    tattoo: bool,
) -> DrawnPerson:
    """Draw one upright cartoon person of ``height`` px whose head starts at ``top``.

    kind: "clothed" (face only private), "semi_nude" (bare torso: a12_semi_nudity),
    "ethnic" (patterned tunic: a18_ethnic_clothing) or "back" (seen from behind: nothing private).
    The face is labelled a9_face_complete here; the composer demotes it to a10_face_partial when
    too little of it stays visible. A tattoo needs a bare forearm, so it shortens long sleeves.
    """
    body = _Body(canvas, rng, person, cx, top, height)
    sleeves = {
        "clothed": ["long", "short", "short"][rng.integers(3)],
        "semi_nude": "none",
        "ethnic": "long",
        "back": ["long", "short"][rng.integers(2)],
    }[kind]
    if tattoo and sleeves == "long":
        sleeves = "short"
    _legs(
        body, rng, shorts=kind == "semi_nude" or rng.random() < 0.25, swimwear=kind == "semi_nude"
    )
    sleeve_color = _torso(body, rng, kind)
    _arms(body, rng, sleeves, sleeve_color, tattoo=tattoo and kind != "back")
    _head(body, rng, back_view=kind == "back")
    if kind != "clothed" or sleeves == "none":
        return DrawnPerson(None, 0.0)
    badge = (cx + 0.45 * body.shoulder * rng.choice([-1, 1]), body.ys + 0.12 * height)
    return DrawnPerson(badge, 0.9 * body.shoulder)


def _jitter(silhouette: np.ndarray, jitter_px: float, rng: np.random.Generator) -> np.ndarray:
    """Move the boundary by about ``jitter_px`` (smooth random in/out), via blur + noise + threshold."""
    sigma = max(1.0, jitter_px)
    blurred = Image.fromarray(silhouette.astype(np.uint8) * 255).filter(
        ImageFilter.GaussianBlur(sigma)
    )
    soft = np.asarray(blurred, np.float32) / 255.0
    noise = (
        2.0 * smooth_noise(rng, silhouette.shape[0], round(silhouette.shape[0] / (4 * sigma))) - 1.0
    )
    # a blurred step has slope 1/(sigma*sqrt(2*pi)) at the edge: this amplitude shifts it by jitter_px
    return soft + noise * jitter_px / (sigma * math.sqrt(2 * math.pi)) > 0.5


def simulate_human_parser(
    canvas: Canvas, n_people: int, noise: ParserNoise, rng: np.random.Generator
) -> np.ndarray:
    """SIMULATED human parser output, (S, S) uint8 0/255: a noisy union of the people's silhouettes.

    Per person: missed entirely (``miss_person_prob``), else its visible pixels minus each limb
    missed with ``miss_limb_prob``, boundary moved by ``boundary_jitter_px``; per person and once
    per image a false blob appears with ``false_blob_prob``. All zero: the exact visible union.
    """
    size = canvas.size
    person_of = np.array([-1 if i.person is None else i.person for i in canvas.instances])
    part_of = [i.part for i in canvas.instances]
    out = np.zeros((size, size), bool)
    for person in range(n_people):
        missed_person = rng.random() < noise.miss_person_prob
        missed = {limb for limb in LIMBS if rng.random() < noise.miss_limb_prob}
        if missed_person:
            continue
        keep = (person_of == person) & np.array([p not in missed for p in part_of])
        silhouette = keep[canvas.owner]
        if noise.boundary_jitter_px > 0 and silhouette.any():
            silhouette = _jitter(silhouette, noise.boundary_jitter_px, rng)
        out |= silhouette
    for _ in range(n_people + 1):
        if rng.random() < noise.false_blob_prob:
            x, y = rng.uniform(0, size, 2)
            rx, ry = rng.uniform(0.04, 0.12, 2) * size
            blob = Image.new("L", (size, size), 0)
            ImageDraw.Draw(blob).ellipse([x - rx, y - ry, x + rx, y + ry], fill=255)
            out |= np.asarray(blob) > 127
    return out.astype(np.uint8) * 255


def simulate_face_detector(
    canvas: Canvas, noise: FaceNoise, rng: np.random.Generator
) -> list[list[float]]:
    """SIMULATED face detector output: ``[[x0, y0, x1, y1, score], ...]`` in pixels.

    Each drawn face (its head ellipse's box, clipped to the frame) is missed when narrower than
    ``min_face_px``, when less than ``min_visible`` of it shows, or with ``miss_prob``; else its
    sides move by up to ``jitter`` of its size. One spurious box per image with ``false_box_prob``.
    """
    size = canvas.size
    visible = np.bincount(canvas.owner.ravel(), minlength=len(canvas.instances))
    boxes: list[list[float]] = []
    for i, inst in enumerate(canvas.instances):
        if inst.attribute != "a9_face_complete" or inst.box is None:
            continue
        x0, y0, x1, y1 = inst.box
        shown = visible[i] / max(inst.full_area, 1.0)
        missed = rng.random() < noise.miss_prob
        if missed or x1 - x0 < noise.min_face_px or shown < noise.min_visible:
            continue
        w, h = x1 - x0, y1 - y0
        dx0, dy0, dx1, dy1 = rng.uniform(-noise.jitter, noise.jitter, 4)
        box = np.clip([x0 + dx0 * w, y0 + dy0 * h, x1 + dx1 * w, y1 + dy1 * h], 0, size)
        if box[2] > box[0] and box[3] > box[1]:
            score = rng.uniform(*FACE_DETECTOR_SCORES)
            boxes.append([round(float(v), 1) for v in box] + [round(float(score), 3)])
    if rng.random() < noise.false_box_prob:
        w = rng.uniform(0.05, 0.2) * size
        x, y = rng.uniform(0, size - w, 2)
        score = rng.uniform(*FACE_DETECTOR_SCORES)
        boxes.append([round(float(v), 1) for v in (x, y, x + w, y + 1.2 * w)] + [round(score, 3)])
    return boxes
