"""SynthPriv drawing: a layered canvas that tracks which element owns each pixel, plus backgrounds,
text lines, shapes and skin blobs (objects are in ``synthpriv_items``, people in ``synthpriv_people``).

Every element is painted onto ``Canvas.rgb`` and, where its *region* lies, its instance id is
written into ``Canvas.owner``; what is drawn later wins, so occlusion updates the ground truth for
free. A text line's region is its (rotated) box around the glyphs, not the glyph pixels.
"""

from __future__ import annotations

import colorsys
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

# DejaVu fonts bundled with matplotlib, so nothing depends on the system's fonts
FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
TEXT_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
)
SKIN_TONES = np.array(
    [
        (255, 224, 196),
        (241, 194, 167),
        (234, 192, 134),
        (224, 172, 105),
        (198, 134, 66),
        (160, 105, 60),
        (141, 85, 36),
        (92, 56, 33),
    ],
    np.float32,
)


@functools.lru_cache(maxsize=512)
def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    """A bundled DejaVu font at ``size`` pixels (cached)."""
    return ImageFont.truetype(str(FONT_DIR / name), max(4, int(size)))


@dataclass
class Instance:
    """One painted element: what it means for the masks and the simulated parser."""

    attribute: Optional[str]  # attribute id of its region, None for unlabelled pixels
    person: Optional[int] = None  # index of the drawn person it belongs to (parser silhouette)
    part: Optional[str] = None  # body part ("arm_l", "leg_r", ...) for missed-limb noise
    full_area: float = 0.0  # area as drawn, including what falls outside the frame
    text: Optional[str] = (
        None  # the string of a text line (the obfuscation tool's leak test reads it)
    )
    # x0, y0, x1, y1 as drawn, out-of-frame parts included (faces: the simulated face detector's)
    box: Optional[tuple[float, float, float, float]] = None


class Canvas:
    """An RGB float image plus an owner map (instance id of the topmost element, 0 = background)."""

    def __init__(self, background: np.ndarray):
        self.size = background.shape[0]
        self.rgb = background.astype(np.float32)  # (S, S, 3)
        self.owner = np.zeros(background.shape[:2], np.int32)  # (S, S)
        self.instances: list[Instance] = [Instance(None)]

    def new_instance(self, attribute: Optional[str] = None, **kwargs) -> int:
        """Register an element and return its id (ids index ``instances``)."""
        self.instances.append(Instance(attribute, **kwargs))
        return len(self.instances) - 1

    def paint(
        self, x0: int, y0: int, alpha: np.ndarray, color, region: np.ndarray, instance: int
    ) -> None:
        """Blend ``color`` at opacity ``alpha`` (h, w) into the window at (x0, y0); ``region`` -> owner."""
        h, w = alpha.shape
        xa, ya, xb, yb = max(0, x0), max(0, y0), min(self.size, x0 + w), min(self.size, y0 + h)
        if xa >= xb or ya >= yb:
            return
        sub = (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
        a = alpha[sub][..., None]
        col = np.asarray(color, np.float32)
        col = col[sub] if col.ndim == 3 else col
        window = self.rgb[ya:yb, xa:xb]
        window *= 1.0 - a
        window += a * col
        self.owner[ya:yb, xa:xb][region[sub]] = instance

    def fill(self, draw_fn, color, instance: int) -> np.ndarray:
        """Paint the full-frame shape drawn by ``draw_fn(ImageDraw)``; returns its (S, S) footprint."""
        shape = Image.new("L", (self.size, self.size), 0)
        draw_fn(ImageDraw.Draw(shape))
        footprint = np.asarray(shape) > 127
        bbox = shape.getbbox()
        if bbox:  # paint only the shape's bounding window (most shapes are small)
            x0, y0, x1, y1 = bbox
            window = footprint[y0:y1, x0:x1]
            color = np.asarray(color, np.float32)
            color = color[y0:y1, x0:x1] if color.ndim == 3 else color
            self.paint(x0, y0, window.astype(np.float32), color, window, instance)
        return footprint

    def sprite(
        self,
        rgba: Image.Image,
        region: Image.Image,
        cx: float,
        cy: float,
        angle: float,
        instance: int,
    ) -> None:
        """Paste an RGBA sprite centred at (cx, cy), rotated ``angle`` degrees counter-clockwise."""
        if angle:
            rgba = rgba.convert("RGBa").rotate(angle, Image.BICUBIC, expand=True).convert("RGBA")
            region = region.rotate(angle, Image.NEAREST, expand=True)
        arr = np.asarray(rgba, np.float32)
        x0, y0 = round(cx - rgba.width / 2), round(cy - rgba.height / 2)
        self.paint(x0, y0, arr[..., 3] / 255.0, arr[..., :3], np.asarray(region) > 127, instance)

    def mean_color(self, cx: float, cy: float, radius: float) -> np.ndarray:
        """Mean colour of the square around (cx, cy), for picking a contrasting text colour."""
        r = max(2, int(radius))
        x0, y0 = int(np.clip(cx - r, 0, self.size - 1)), int(np.clip(cy - r, 0, self.size - 1))
        return self.rgb[y0 : int(cy + r) + 1, x0 : int(cx + r) + 1].reshape(-1, 3).mean(axis=0)


def rotate_offset(dx: float, dy: float, angle: float) -> tuple[float, float]:
    """Where a sprite-local offset from the centre lands after ``Canvas.sprite``'s rotation."""
    t = math.radians(angle)
    return dx * math.cos(t) + dy * math.sin(t), -dx * math.sin(t) + dy * math.cos(t)


def random_color(rng: np.random.Generator, *, sat=(0.2, 0.9), val=(0.25, 0.95)) -> np.ndarray:
    """A random RGB colour (0..255 floats) with saturation and value in the given ranges."""
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val))
    return np.array([r, g, b], np.float32) * 255.0


def skin_color(rng: np.random.Generator) -> np.ndarray:
    """A skin tone from a light-to-dark palette, slightly jittered."""
    return np.clip(SKIN_TONES[rng.integers(len(SKIN_TONES))] + rng.normal(0, 6, 3), 0, 255).astype(
        np.float32
    )


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size) value noise in [0, 1] with about ``cells`` blobs across the image."""
    small = rng.random((max(2, cells), max(2, cells))).astype(np.float32)
    return np.asarray(Image.fromarray(small, mode="F").resize((size, size), Image.BILINEAR))


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A varied (S, S, 3) backdrop: gradient, noise texture, stripes, blotches or a wall over a floor."""
    kind = rng.choice(["gradient", "noise", "stripes", "blotches", "room"])
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size
    theta = rng.uniform(0, 2 * np.pi)
    along = xx * np.cos(theta) + yy * np.sin(theta)
    c1, c2 = random_color(rng, sat=(0.05, 0.7)), random_color(rng, sat=(0.05, 0.7))
    if kind == "gradient":
        t = (along - along.min()) / (np.ptp(along) + 1e-6)
    elif kind == "noise":
        coarse = smooth_noise(rng, size, int(rng.integers(3, 8)))
        t = 0.6 * coarse + 0.4 * smooth_noise(rng, size, int(rng.integers(10, 24)))
    elif kind == "stripes":
        wave = np.sin(2 * np.pi * along / rng.uniform(0.04, 0.2))
        t = (wave > 0).astype(np.float32) if rng.random() < 0.5 else 0.5 + 0.5 * wave
    elif kind == "blotches":
        t = np.clip((smooth_noise(rng, size, int(rng.integers(3, 7))) - 0.5) * 6 + 0.5, 0, 1)
    else:  # a wall over a floor, each with its own shading
        horizon = rng.uniform(0.5, 0.8)
        t = (yy > horizon).astype(np.float32)
        c1 = c1 * (0.85 + 0.3 * xx[..., None])
    img = c1 * (1 - t[..., None]) + c2 * t[..., None]  # c1 is (S, S, 3) for a shaded wall
    grain = smooth_noise(rng, size, int(rng.integers(size // 6, size // 3))) - 0.5
    return np.clip(img + grain[..., None] * rng.uniform(8, 30), 0, 255).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------
def text_sprite(text: str, typeface: ImageFont.FreeTypeFont, color, pad: int = 1):
    """(RGBA glyphs, L box region) of one text line; the region is the box around the glyphs."""
    left, top, right, bottom = typeface.getbbox(text)
    w, h = right - left + 2 * pad, bottom - top + 2 * pad
    glyphs = Image.new("L", (w, h), 0)
    ImageDraw.Draw(glyphs).text((pad - left, pad - top), text, font=typeface, fill=255)
    rgba = Image.new("RGBA", (w, h), tuple(int(c) for c in color) + (0,))
    rgba.putalpha(glyphs)
    return rgba, Image.new("L", (w, h), 255)


def contrasting_color(rng: np.random.Generator, behind: np.ndarray) -> np.ndarray:
    """A text colour that reads well on a background of mean colour ``behind``."""
    luma = float(behind @ np.array([0.299, 0.587, 0.114], np.float32))
    if luma > 120:
        palette = [(15, 15, 15), (20, 30, 110), (120, 15, 20), (10, 80, 30), (60, 20, 90)]
    else:
        palette = [(250, 250, 250), (255, 235, 90), (180, 240, 255), (255, 200, 200)]
    return np.array(palette[rng.integers(len(palette))], np.float32)


def fitted_font(
    rng: np.random.Generator, lines: list[str], size_px: float, max_width: float, name=None
):
    """A random (or named) bundled font at ``size_px``, shrunk until every line fits ``max_width``."""
    name = name or TEXT_FONTS[rng.integers(len(TEXT_FONTS))]
    size = max(6, int(size_px))
    while size > 6:
        widest = max(font(name, size).getlength(line) for line in lines)
        if widest <= max_width:
            break
        size = max(6, int(size * max_width / widest))
    return font(name, size)


def draw_text_block(
    canvas: Canvas,
    rng: np.random.Generator,
    lines: list[str],
    attribute: Optional[str] | Sequence[Optional[str]],
    cx: float,
    cy: float,
    angle: float,
    typeface,
    *,
    panel: bool,
    person=None,
    part=None,
) -> tuple[float, float]:
    """Draw lines centred at (cx, cy), rotated ``angle``; each line is its own instance of ``attribute``
    (one for all lines, or one per line; None: ordinary text).

    With ``panel`` a paper/sign (unlabelled) is drawn behind first. Returns the block's (w, h).
    """
    sizes = [typeface.getbbox(line) for line in lines]
    widths = [right - left + 2 for left, _, right, _ in sizes]
    line_h = max(bottom - top for _, top, _, bottom in sizes) + 2
    gap = max(1, line_h // 4)
    block_w, block_h = max(widths), len(lines) * line_h + (len(lines) - 1) * gap
    if panel:
        m = max(2, line_h // 3)
        paper = Image.new("RGBA", (block_w + 2 * m, block_h + 2 * m), (0, 0, 0, 0))
        light = rng.random() < 0.7
        fill = random_color(rng, sat=(0.0, 0.35), val=(0.75, 1.0)) if light else random_color(rng)
        ImageDraw.Draw(paper).rounded_rectangle(
            [0, 0, paper.width - 1, paper.height - 1],
            radius=m // 2,
            fill=tuple(int(c) for c in fill) + (255,),
        )
        paper_inst = canvas.new_instance(None, person=person, part=part)
        canvas.sprite(paper, paper.getchannel("A"), cx, cy, angle, paper_inst)
    color = contrasting_color(rng, fill if panel else canvas.mean_color(cx, cy, block_h))
    per_line = list(attribute) if isinstance(attribute, (list, tuple)) else [attribute] * len(lines)
    for i, line in enumerate(lines):
        rgba, region = text_sprite(line, typeface, color)
        dy = -block_h / 2 + i * (line_h + gap) + line_h / 2
        dx = (
            (rgba.width - block_w) / 2 if rng.random() < 0.5 or len(lines) == 1 else 0.0
        )  # left-aligned
        ox, oy = rotate_offset(dx, dy, angle)
        inst = canvas.new_instance(
            per_line[i], person=person, part=part, full_area=rgba.width * rgba.height, text=line
        )
        canvas.sprite(rgba, region, cx + ox, cy + oy, angle, inst)
    return block_w, block_h


# --------------------------------------------------------------------------------------------
# Distractors, occluders and the camera finish
# --------------------------------------------------------------------------------------------
def random_shape(
    canvas: Canvas, rng: np.random.Generator, cx: float, cy: float, radius: float, color
) -> None:
    """An unlabelled polygon, ellipse, rectangle or ring (used for distractors and occluders)."""
    kind = rng.integers(4)
    box = [
        cx - radius,
        cy - radius * rng.uniform(0.4, 1.0),
        cx + radius,
        cy + radius * rng.uniform(0.4, 1.0),
    ]
    inst = canvas.new_instance(None)
    if kind == 0:
        angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8))))
        radii = radius * rng.uniform(0.5, 1.0, len(angles))
        points = [(cx + r * np.cos(a), cy + r * np.sin(a)) for a, r in zip(angles, radii)]
        canvas.fill(lambda d: d.polygon(points, fill=255), color, inst)
    elif kind == 1:
        canvas.fill(lambda d: d.ellipse(box, fill=255), color, inst)
    elif kind == 2:
        canvas.fill(lambda d: d.rectangle(box, fill=255), color, inst)
    else:
        canvas.fill(
            lambda d: d.ellipse(box, outline=255, width=max(2, int(radius / 3))), color, inst
        )


def skin_blob(
    canvas: Canvas, rng: np.random.Generator, cx: float, cy: float, radius: float
) -> None:
    """An unlabelled skin-coloured blob (hard negative for face and nudity cues), softly shaded."""
    inst = canvas.new_instance(None)
    tone = skin_color(rng)
    for _ in range(int(rng.integers(1, 4))):
        ox, oy = rng.normal(0, radius / 3, 2)
        rx, ry = radius * rng.uniform(0.4, 1.0), radius * rng.uniform(0.4, 1.0)
        canvas.fill(
            lambda d, box=[cx + ox - rx, cy + oy - ry, cx + ox + rx, cy + oy + ry]: d.ellipse(
                box, fill=255
            ),
            tone * rng.uniform(0.9, 1.05),
            inst,
        )


def soften(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera-like finish: slight blur and sensor noise; returns (S, S, 3) uint8."""
    img = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(0.4)
    )
    noisy = np.asarray(img, np.float32) + rng.normal(0, rng.uniform(1, 5), image.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
