"""Safe image and mask decoding: every refusal names the file and the rule it broke."""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image

from privobfnet.data.errors import DataError
from privobfnet.labels import IGNORE_LABEL, SegmentationClasses


def _open(path: str | os.PathLike, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and refuse images larger than ``max_pixels`` before decoding."""
    if not os.path.exists(path):
        raise DataError(path, "file missing")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(path, "image too large (decompression bomb guard)", str(exc)) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(path, "not a readable image", str(exc)) from None
    w, h = img.size
    if w * h > max_pixels:
        img.close()
        raise DataError(
            path,
            "image too large (decompression bomb guard)",
            f"{w}x{h} = {w * h} pixels > {max_pixels}",
        )
    return img


ORIENTATION_TAG = 0x0112  # EXIF Orientation
# EXIF orientation -> the transpose that shows the image upright (as ImageOps.exif_transpose)
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
BACKGROUND_RGB = (255, 255, 255)  # what transparent pixels are composited over (white, as a page)
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


def exif_orientation(img: Image.Image, *, header_only: bool = False) -> int:
    """The EXIF orientation (1..8) of an opened image; 1 when absent, invalid or unreadable.

    ``header_only``: never decode to look for it. Pillow finds a PNG's eXIf chunk only when it
    precedes the image data unless the image is loaded; such a late chunk is then missed.
    """
    if header_only and img.format == "PNG" and "exif" not in img.info:
        return 1
    try:
        value = img.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # a damaged EXIF block must not make the photo unreadable
        return 1
    return value if isinstance(value, int) and value in _UPRIGHT else 1


def image_size(
    path: str | os.PathLike, *, max_pixels: int, apply_exif: bool = True
) -> tuple[int, int]:
    """(width, height) from the header alone, as ``load_rgb`` returns it: after the EXIF orientation.

    ``apply_exif=False`` gives the stored size (class masks carry no orientation).
    """
    with _open(path, max_pixels) as img:
        width, height = img.size
        if apply_exif and exif_orientation(img, header_only=True) >= 5:  # 5..8 swap the axes
            return height, width
        return width, height


def _composite(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 RGBA over ``BACKGROUND_RGB``: round((rgb * a + bg * (255 - a)) / 255)."""
    rgb = rgba[..., :3].astype(np.uint32)
    alpha = rgba[..., 3:].astype(np.uint32)
    background = np.asarray(BACKGROUND_RGB, dtype=np.uint32)
    return ((rgb * alpha + background * (255 - alpha) + 127) // 255).astype(np.uint8)


def _scale_to_8bit(values: np.ndarray, mode: str) -> np.ndarray:
    """16-bit, 32-bit integer and float grayscale to 0..255 (see ``load_rgb`` for the rule)."""
    values = np.nan_to_num(values.astype(np.float64))
    if mode in SIXTEEN_BIT_MODES or (mode == "I" and values.min() >= 0 and values.max() <= 65535):
        scaled = values * 255.0 / 65535.0
    elif mode == "F" and values.min() >= 0 and values.max() <= 1:
        scaled = values * 255.0
    else:  # outside the type's usual range: the values' own range
        low, high = values.min(), values.max()
        scaled = np.zeros_like(values) if high == low else (values - low) * 255.0 / (high - low)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _cmyk_to_rgb(img: Image.Image) -> np.ndarray:
    """CMYK (0 = no ink) to RGB: each channel (255 - ink) * (255 - K) / 255, rounded.

    Pillow decodes every 4-channel JPEG with Adobe's inverted convention (what Photoshop writes,
    marked by the APP14 "Adobe" segment). A CMYK JPEG without that segment stores plain values,
    so what Pillow returned is inverted back here. No ICC profile is applied.
    """
    cmyk = np.asarray(img).astype(np.uint32)
    if img.format == "JPEG" and "adobe" not in img.info:
        cmyk = 255 - cmyk
    ink, black = cmyk[..., :3], cmyk[..., 3:]
    return (((255 - ink) * (255 - black) + 127) // 255).astype(np.uint8)


def _to_rgb(img: Image.Image, path: str | os.PathLike) -> np.ndarray:
    """A loaded image of any mode as (H, W, 3) uint8 (rules in ``load_rgb``)."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img)
    palette_alpha = mode == "P" and (
        "transparency" in img.info or getattr(img.palette, "mode", "") == "RGBA"
    )
    if mode in ALPHA_MODES or palette_alpha:
        return _composite(np.asarray(img.convert("RGBA")))
    if mode == "CMYK":
        return _cmyk_to_rgb(img)
    if mode in SIXTEEN_BIT_MODES or mode in ("I", "F"):
        gray = _scale_to_8bit(np.asarray(img), mode)
        return np.repeat(gray[..., None], 3, axis=2)
    try:  # 1, L, P, YCbCr (JFIF), LAB (CIE L*a*b*), HSV, RGBX: Pillow's own conversions
        return np.asarray(img.convert("RGB"))
    except ValueError as exc:
        raise DataError(path, "unsupported image mode", f"mode {mode}: {exc}") from None


def load_rgb(
    path: str | os.PathLike, *, max_pixels: int, allow_grayscale: bool = True
) -> np.ndarray:
    """Decode any image to a (H, W, 3) uint8 RGB array, upright by its EXIF orientation.

    The EXIF orientation is applied before anything reads the pixels, so every stage (masks,
    training, evaluation) sees the photo as a viewer shows it; ``image_size`` agrees.
    Conversions, by Pillow mode:

    - RGB as is; 1, L and P (palette) replicated or looked up; YCbCr (JFIF, full-range BT.601),
      LAB (CIE L*a*b*) and HSV by Pillow's conversions.
    - CMYK: ``(255 - ink) * (255 - K) / 255`` per channel; JPEGs with the APP14 Adobe segment
      are read with Adobe's inverted convention, those without it as plain CMYK.
    - Alpha (RGBA, LA, PA, P with a transparent index): composited over ``BACKGROUND_RGB``
      (white).
    - I;16 (all byte orders): ``v * 255 / 65535``. I (32-bit): the same when every value lies
      in 0..65535 (a widened 16-bit image), else the values' own range min..max to 0..255.
      F: ``v * 255`` when every value lies in [0, 1], else min..max. A constant image outside
      those ranges is black.

    ``allow_grayscale=False`` refuses single-channel images (1, L, LA, I;16, I, F). Refused:
    truncated or corrupt files, images over ``max_pixels``.
    """
    with _open(path, max_pixels) as img:
        mode = img.mode
        if mode in GRAYSCALE_MODES and not allow_grayscale:
            raise DataError(path, "grayscale image", f"mode {mode}; data.allow_grayscale is false")
        try:
            img.load()
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(path, "corrupt or truncated image", str(exc)) from None
        orientation = exif_orientation(img)
        rgb = _to_rgb(img, path)
    if orientation != 1:
        rgb = np.asarray(Image.fromarray(rgb).transpose(_UPRIGHT[orientation]))
    return np.ascontiguousarray(rgb)


def load_mask(path: str | os.PathLike, *, n_classes: int, max_pixels: int) -> np.ndarray:
    """Decode a VOC-style class mask (palette or 8-bit grayscale PNG) to (H, W) uint8.

    Values must be 0 (background), 1..n_classes (class index + 1) or 255 (ignore).
    """
    with _open(path, max_pixels) as img:
        if img.mode not in ("P", "L"):
            raise DataError(path, "class mask must be a palette or 8-bit PNG", f"mode {img.mode}")
        try:
            img.load()
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(path, "corrupt or truncated mask", str(exc)) from None
        arr = np.array(img)  # palette indices, not colours
    bad = (arr > n_classes) & (arr != IGNORE_LABEL)
    if bad.any():
        values = sorted(int(v) for v in np.unique(arr[bad]))[:5]
        raise DataError(
            path, "mask label out of range", f"values {values} not in 0..{n_classes} or 255"
        )
    return arr


def voc_palette() -> list[int]:
    """The 256-entry PASCAL VOC colour map, flattened to 768 ints for ``Image.putpalette``."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


def mask_to_image(mask: np.ndarray) -> Image.Image:
    """A (H, W) uint8 class mask as a palette PNG image in VOC colours."""
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    img = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
    img.putpalette(voc_palette())
    return img


def load_truth(path: str, seg: SegmentationClasses, *, max_pixels: int) -> np.ndarray:
    """A ground-truth mask (attribute i -> i + 1) as (H, W) uint8 segmentation labels (class j -> j + 1)."""
    return seg.from_truth(load_mask(path, n_classes=len(seg.attributes), max_pixels=max_pixels))
