"""Rendered test documents: private strings drawn in DejaVu fonts (shipped with matplotlib) at
several sizes and rotations, with the pixel box of each, for the obfuscation tool's tests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@dataclass(frozen=True)
class Item:
    """One drawn string: which attribute it stands for, and where it landed."""

    attribute: str
    text: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of its ink


# attribute id (SynthPriv's), text, font file, size, rotation (degrees, counter-clockwise)
DOCUMENT = [
    ("a19_name_full", "Margaret Olsen", "DejaVuSans-Bold.ttf", 26, 0),
    ("a49_phone", "+44 20 7946 0958", "DejaVuSansMono.ttf", 20, 0),
    ("a90_email", "m.olsen@example.org", "DejaVuSerif.ttf", 20, 4),
    ("a74_address_current_complete", "221 Baker Street London", "DejaVuSans.ttf", 18, 0),
    ("a24_birth_date", "14 March 1987", "DejaVuSerif-Bold.ttf", 22, -5),
]


def render_document(
    lines=DOCUMENT, size: tuple[int, int] = (480, 320)
) -> tuple[np.ndarray, list[Item]]:
    """(H, W, 3) uint8 page with one string per line, and each string's ink box."""
    page = Image.new("RGB", size, (250, 248, 240))
    items, y = [], 14
    for attribute, text, font_file, points, angle in lines:
        font = ImageFont.truetype(str(FONTS / font_file), points)
        left, top, right, bottom = font.getbbox(text)
        layer = Image.new("L", (right + 8, bottom + 8), 0)
        ImageDraw.Draw(layer).text((4, 4), text, font=font, fill=255)
        layer = layer.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
        x = 24
        page.paste(Image.new("RGB", layer.size, (20, 20, 30)), (x, y), layer)
        ink = np.asarray(layer) > 64
        ys, xs = np.nonzero(ink)
        items.append(
            Item(
                attribute,
                text,
                (
                    x + int(xs.min()),
                    y + int(ys.min()),
                    x + int(xs.max()) + 1,
                    y + int(ys.max()) + 1,
                ),
            )
        )
        y += layer.size[1] + 22
    return np.asarray(page), items


def normalise(text: str) -> str:
    """Lower case letters and digits only (OCR spacing and punctuation vary)."""
    return re.sub(r"[^0-9a-z]", "", text.lower())


def reads(ocr_texts: list[str], text: str) -> bool:
    """True if the OCR output holds ``text`` (normalised) whole."""
    return normalise(text) in normalise(" ".join(ocr_texts))


def reads_any_part(ocr_texts: list[str], text: str, min_chars: int = 4) -> bool:
    """True if any word (>= ``min_chars`` letters/digits) of ``text`` is in the OCR output."""
    joined = normalise(" ".join(ocr_texts))
    return any(len(w) >= min_chars and w in joined for w in map(normalise, text.split()))
