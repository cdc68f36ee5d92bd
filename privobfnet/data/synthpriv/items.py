"""SynthPriv scene items: text items, documents (cards, tickets), plates on cars, medicine, distractors."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from privobfnet.data.synthpriv.draw import (
    Canvas,
    draw_text_block,
    fitted_font,
    font,
    random_color,
    random_shape,
    rotate_offset,
    skin_blob,
)
from privobfnet.data.synthpriv.text import (
    DOCUMENT_TITLES,
    ordinary_text,
    person_name,
    private_text,
)

OBJECT_KINDS = ("a30_credit_card", "a38_ticket", "a43_medicine", "a103_license_plate_complete")


def _gradient_rgba(w: int, h: int, c1, c2, alpha: Image.Image) -> Image.Image:
    t = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    arr = np.broadcast_to(c1 * (1 - t) + c2 * t, (h, w, 3)).astype(np.uint8)
    img = Image.fromarray(np.ascontiguousarray(arr), "RGB").convert("RGBA")
    img.putalpha(alpha)
    return img


def luhn_complete(digits: list[int]) -> list[int]:
    """``digits`` followed by their Luhn check digit (real card numbers pass the Luhn check)."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = 2 * d if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    return [*digits, (10 - total % 10) % 10]


def card_sprite(rng: np.random.Generator, w: int, *, blank: bool) -> Image.Image:
    """A bank card (chip, number, brand) or, when ``blank``, a plain card of the same shape."""
    h = max(6, round(w / 1.586))
    alpha = Image.new("L", (w, h), 0)
    ImageDraw.Draw(alpha).rounded_rectangle([0, 0, w - 1, h - 1], radius=max(1, w // 14), fill=255)
    c1 = random_color(rng, sat=(0.3, 0.9), val=(0.3, 0.9))
    card = _gradient_rgba(w, h, c1, np.clip(c1 * rng.uniform(0.5, 1.4), 0, 255), alpha)
    if blank:
        return card
    draw = ImageDraw.Draw(card)
    draw.rounded_rectangle(
        [0.1 * w, 0.3 * h, 0.26 * w, 0.52 * h],
        radius=1,
        fill=(214, 178, 70, 255),
        outline=(150, 120, 40, 255),
    )
    issuer = [4] if rng.random() < 0.5 else [5, int(rng.integers(1, 6))]  # Visa or Mastercard
    number = luhn_complete(issuer + [int(d) for d in rng.integers(0, 10, 15 - len(issuer))])
    digits = " ".join("".join(map(str, number[i : i + 4])) for i in range(0, 16, 4))
    draw.text(
        (0.08 * w, 0.58 * h),
        digits,
        font=font("DejaVuSansMono.ttf", max(4, round(0.11 * h))),
        fill=(240, 240, 240, 255),
    )
    r = 0.09 * h
    for dx, col in ((0.0, (220, 30, 30, 230)), (1.2 * r, (250, 160, 20, 230))):
        draw.ellipse([0.78 * w + dx - r, 0.8 * h - r, 0.78 * w + dx + r, 0.8 * h + r], fill=col)
    return card


def ticket_sprite(rng: np.random.Generator, w: int) -> Image.Image:
    """An admission ticket: pale stock, perforated stub with notches, a title and a barcode."""
    h = max(8, round(w * rng.uniform(0.38, 0.5)))
    alpha = Image.new("L", (w, h), 255)
    cut = 0.7 * w
    ImageDraw.Draw(alpha).ellipse([cut - h * 0.1, -h * 0.1, cut + h * 0.1, h * 0.1], fill=0)
    ImageDraw.Draw(alpha).ellipse([cut - h * 0.1, h * 0.9, cut + h * 0.1, h * 1.1], fill=0)
    paper = random_color(rng, sat=(0.1, 0.45), val=(0.8, 1.0))
    ticket = _gradient_rgba(w, h, paper, paper * 0.92, alpha)
    draw = ImageDraw.Draw(ticket)
    ink = (40, 30, 30, 255)
    for y in range(2, h - 2, 4):
        draw.line([(cut, y), (cut, y + 1)], fill=ink)
    title = ["ADMIT ONE", "TICKET", "CINEMA", "CONCERT", "ROW 7 SEAT 12", "ENTRY"][rng.integers(6)]
    typeface = fitted_font(rng, [title], 0.22 * h, 0.62 * w, name="DejaVuSans-Bold.ttf")
    draw.text((0.05 * w, 0.12 * h), title, font=typeface, fill=ink)
    for i, x in enumerate(np.arange(0.76 * w, 0.95 * w, 2)):
        if rng.random() < 0.6:
            draw.line([(x, 0.3 * h), (x, 0.75 * h)], fill=ink, width=1 + (i % 3 == 0))
    return ticket


PLATE_FORMATS = ("LL NNN LL", "NLLL NNN", "LL-LL NNN", "LLL NNNN", "L NNN LLL")


def plate_sprite(rng: np.random.Generator, w: int) -> Image.Image:
    """A licence plate: white or yellow, dark border, registration characters."""
    fmt = PLATE_FORMATS[rng.integers(len(PLATE_FORMATS))]
    draw_char = {"L": lambda: chr(65 + rng.integers(26)), "N": lambda: str(rng.integers(10))}
    chars = "".join(draw_char[c]() if c in draw_char else c for c in fmt)
    h = max(6, round(w / rng.uniform(2.2, 4.6)))
    fill = (250, 250, 245, 255) if rng.random() < 0.6 else (250, 210, 40, 255)
    plate = Image.new("RGBA", (w, h), fill)
    draw = ImageDraw.Draw(plate)
    draw.rectangle([0, 0, w - 1, h - 1], outline=(20, 20, 20, 255), width=max(1, h // 12))
    typeface = fitted_font(rng, [chars], 0.72 * h, 0.88 * w, name="DejaVuSans-Bold.ttf")
    left, top, right, bottom = typeface.getbbox(chars)
    draw.text(
        ((w - right - left) / 2, (h - bottom - top) / 2),
        chars,
        font=typeface,
        fill=(15, 15, 15, 255),
    )
    return plate


def medicine_sprite(rng: np.random.Generator, w: int) -> Image.Image:
    """A prescription bottle: amber body, white cap, white label with 'Rx'."""
    h = max(10, round(w * rng.uniform(1.5, 2.2)))
    bottle = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(bottle)
    cap_h = max(2, round(0.2 * h))
    body = (200, 110, 20, 255) if rng.random() < 0.7 else (235, 235, 240, 255)
    draw.rounded_rectangle([0, cap_h - 1, w - 1, h - 1], radius=max(1, w // 6), fill=body)
    draw.rectangle(
        [w * 0.05, 0, w * 0.95, cap_h], fill=(248, 248, 248, 255), outline=(180, 180, 180, 255)
    )
    draw.rectangle([0, 0.4 * h, w - 1, 0.78 * h], fill=(250, 250, 250, 255))
    draw.text(
        (0.12 * w, 0.42 * h),
        "Rx",
        font=font("DejaVuSans-Bold.ttf", max(4, round(0.16 * h))),
        fill=(30, 60, 140, 255),
    )
    return bottle


def draw_car(
    canvas: Canvas, rng: np.random.Generator, cx: float, bottom: float, width: float
) -> tuple[float, float]:
    """An unlabelled cartoon car seen from behind; returns where its plate goes (centre x, y)."""
    inst = canvas.new_instance(None)
    h = width * 0.55
    body = random_color(rng, sat=(0.3, 0.9), val=(0.3, 0.9))
    x0, x1, top = cx - width / 2, cx + width / 2, bottom - h
    canvas.fill(
        lambda d: d.rounded_rectangle(
            [x0 + 0.15 * width, top, x1 - 0.15 * width, top + 0.5 * h],
            radius=int(0.1 * h) + 1,
            fill=255,
        ),
        body * 0.9,
        inst,
    )
    canvas.fill(
        lambda d: d.rectangle(
            [x0 + 0.22 * width, top + 0.08 * h, x1 - 0.22 * width, top + 0.42 * h], fill=255
        ),
        np.array([90, 120, 150], np.float32),
        inst,
    )
    canvas.fill(
        lambda d: d.rounded_rectangle(
            [x0, top + 0.42 * h, x1, bottom - 0.12 * h], radius=int(0.1 * h) + 1, fill=255
        ),
        body,
        inst,
    )
    for wx in (x0 + 0.12 * width, x1 - 0.22 * width):
        canvas.fill(
            lambda d, box=[wx, bottom - 0.2 * h, wx + 0.1 * width, bottom]: d.rectangle(
                box, fill=255
            ),
            np.array([25, 25, 25], np.float32),
            inst,
        )
    return cx, top + 0.7 * h


def draw_text_item(canvas: Canvas, rng: np.random.Generator, attribute: str | None) -> None:
    """A private text item (lines disclosing ``attribute``) or, for None, ordinary text: on an open
    background or a sign (half the time), or in a document with ordinary lines around it."""
    if attribute is not None and rng.random() < 0.5:
        draw_document(canvas, rng, attribute)
        return
    size = canvas.size
    pairs = private_text(rng, attribute) if attribute else [(None, ordinary_text(rng))]
    lines = [text for _, text in pairs]
    typeface = fitted_font(rng, lines, size * rng.uniform(0.055, 0.11), 0.9 * size)
    width = max(typeface.getlength(line) for line in lines)
    cx = rng.uniform(min(width / 2, size / 2), max(size - width / 2, size / 2))
    cy = rng.uniform(0.08, 0.92) * size
    angle = 0.0 if rng.random() < 0.4 else rng.uniform(-15, 15)
    draw_text_block(
        canvas,
        rng,
        lines,
        [a for a, _ in pairs],
        cx,
        cy,
        angle,
        typeface,
        panel=rng.random() < 0.5,
    )


def draw_document(canvas: Canvas, rng: np.random.Generator, attribute: str) -> None:
    """A letter, envelope, receipt, ticket or screenshot: a light panel holding the private lines
    of ``attribute`` among ordinary ones (a title, an order number, a price)."""
    size = canvas.size
    pairs = private_text(rng, attribute)
    if rng.random() < 0.5:
        pairs.insert(0, (None, DOCUMENT_TITLES[rng.integers(len(DOCUMENT_TITLES))]))
    for _ in range(int(rng.integers(0, 3))):
        pairs.insert(int(rng.integers(len(pairs) + 1)), (None, ordinary_text(rng)))
    lines = [text for _, text in pairs]
    typeface = fitted_font(rng, lines, size * rng.uniform(0.045, 0.075), 0.85 * size)
    width = max(typeface.getlength(line) for line in lines)
    cx = rng.uniform(min(width / 2 + 4, size / 2), max(size - width / 2 - 4, size / 2))
    cy = rng.uniform(0.2, 0.8) * size
    angle = 0.0 if rng.random() < 0.5 else rng.uniform(-8, 8)
    draw_text_block(canvas, rng, lines, [a for a, _ in pairs], cx, cy, angle, typeface, panel=True)


def draw_object(canvas: Canvas, rng: np.random.Generator, kind: str) -> None:
    """A labelled object (one of OBJECT_KINDS), sometimes with a name or date printed on it."""
    size = canvas.size
    cx, cy = rng.uniform(0.1, 0.9, 2) * size
    angle = rng.uniform(-30, 30)
    if kind == "a103_license_plate_complete":
        w = round(size * rng.uniform(0.18, 0.35))
        if rng.random() < 0.6:
            cx, cy = draw_car(
                canvas, rng, cx, size * rng.uniform(0.6, 1.05), w * rng.uniform(2.6, 3.4)
            )
            angle = rng.uniform(-4, 4)
        sprite = plate_sprite(rng, w)
    elif kind == "a43_medicine":
        sprite = medicine_sprite(rng, round(size * rng.uniform(0.08, 0.15)))
    elif kind == "a38_ticket":
        sprite = ticket_sprite(rng, round(size * rng.uniform(0.28, 0.5)))
    else:
        sprite = card_sprite(rng, round(size * rng.uniform(0.25, 0.5)), blank=False)
    inst = canvas.new_instance(
        kind, full_area=float(np.count_nonzero(np.asarray(sprite.getchannel("A"))))
    )
    canvas.sprite(sprite, sprite.getchannel("A"), cx, cy, angle, inst)
    # co-occurrence: a name printed on a card, a date printed on a ticket
    printed = {"a30_credit_card": "a19_name_full", "a38_ticket": "a82_date_time"}.get(kind)
    if printed and rng.random() < 0.5:
        w, h = sprite.size
        lines = (
            [person_name(rng).upper()]
            if printed == "a19_name_full"
            else [private_text(rng, printed)[0][1]]
        )
        typeface = fitted_font(rng, lines, max(6.0, 0.15 * h), 0.62 * w)
        tw = typeface.getlength(lines[0])
        dx, dy = 0.07 * w + tw / 2 - w / 2, 0.3 * h
        ox, oy = rotate_offset(dx, dy, angle)
        draw_text_block(canvas, rng, lines, printed, cx + ox, cy + oy, angle, typeface, panel=False)


def draw_distractor(canvas: Canvas, rng: np.random.Generator) -> None:
    """An unlabelled distractor: skin-coloured blob, blank card, random shape or non-private text."""
    size = canvas.size
    cx, cy = rng.uniform(0, 1, 2) * size
    kind = rng.integers(5)
    if kind == 0:
        skin_blob(canvas, rng, cx, cy, size * rng.uniform(0.04, 0.12))
    elif kind == 1:
        card = card_sprite(rng, round(size * rng.uniform(0.18, 0.4)), blank=True)
        canvas.sprite(
            card, card.getchannel("A"), cx, cy, rng.uniform(-30, 30), canvas.new_instance(None)
        )
    elif kind == 2:
        random_shape(canvas, rng, cx, cy, size * rng.uniform(0.05, 0.2), random_color(rng))
    else:
        draw_text_item(canvas, rng, None)
