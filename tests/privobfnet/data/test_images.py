"""load_rgb on every image mode and the EXIF orientation: files written here, pixels vs expected RGB.

Expected values come from the formats' definitions, not from Pillow's conversions: JFIF's YCbCr
(full-range BT.601), CIE L*a*b*, CMYK as ink (Adobe's APP14 marks inverted storage), alpha
composited over the documented white background, 16-bit scaled by 255 / 65535.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from privobfnet.data.errors import DataError
from privobfnet.data.images import BACKGROUND_RGB, image_size, load_rgb

MAX_PIXELS = 10**7
W, H = 16, 12


def rgb_of(path, **kwargs) -> np.ndarray:
    return load_rgb(path, max_pixels=MAX_PIXELS, **kwargs)


def close(actual, expected, tolerance: int) -> bool:
    return np.abs(actual.astype(int) - np.asarray(expected, dtype=int)).max() <= tolerance


def cmyk_to_rgb(c, m, y, k) -> tuple[int, ...]:
    """Ink to RGB, no colour profile: (255 - ink) * (255 - K) / 255, rounded."""
    return tuple(round((255 - ink) * (255 - k) / 255) for ink in (c, m, y))


def strip_segment(jpeg: bytes, marker: int) -> bytes:
    """Remove every segment with the given APPn/COM marker from a JPEG (up to the scan)."""
    out, pos = bytearray(jpeg[:2]), 2  # SOI
    while pos < len(jpeg):
        assert jpeg[pos] == 0xFF, "not at a marker"
        code = jpeg[pos + 1]
        if code == 0xDA:  # start of scan: the rest is entropy-coded data
            out += jpeg[pos:]
            break
        length = int.from_bytes(jpeg[pos + 2 : pos + 4], "big")
        if code != marker:
            out += jpeg[pos : pos + 2 + length]
        pos += 2 + length
    return bytes(out)


# --- CMYK ---------------------------------------------------------------------------------------
INK = (10, 200, 30, 40)


def test_adobe_cmyk_jpeg(tmp_path):
    path = tmp_path / "adobe.jpg"
    Image.new("CMYK", (W, H), INK).save(path, quality=100)
    assert b"\xff\xee" in path.read_bytes()[:200] and b"Adobe" in path.read_bytes()[:200]  # APP14
    rgb = rgb_of(path)
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    assert close(rgb, cmyk_to_rgb(*INK), 3)


def test_plain_cmyk_jpeg_without_the_adobe_marker(tmp_path):
    # Pillow writes CMYK inverted (Adobe's convention) with APP14; storing 255 - ink and dropping
    # APP14 leaves a file whose samples are the plain ink values
    buffer = io.BytesIO()
    Image.new("CMYK", (W, H), tuple(255 - v for v in INK)).save(buffer, format="JPEG", quality=100)
    path = tmp_path / "plain.jpg"
    path.write_bytes(strip_segment(buffer.getvalue(), 0xEE))
    with Image.open(path) as raw:
        assert raw.mode == "CMYK" and "adobe" not in raw.info
        assert close(np.asarray(raw)[0, 0], [255 - v for v in INK], 3)  # Pillow inverts regardless
    assert close(rgb_of(path), cmyk_to_rgb(*INK), 3)


def test_cmyk_tiff(tmp_path):
    path = tmp_path / "ink.tif"
    Image.new("CMYK", (W, H), INK).save(path)
    assert (rgb_of(path) == cmyk_to_rgb(*INK)).all()


# --- other colour spaces ------------------------------------------------------------------------
def test_ycbcr_tiff(tmp_path):
    y, cb, cr = 100, 90, 200
    path = tmp_path / "ycc.tif"
    Image.new("YCbCr", (W, H), (y, cb, cr)).save(path)
    with Image.open(path) as raw:
        assert raw.mode == "YCbCr"
    expected = (
        y + 1.402 * (cr - 128),
        y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128),
        y + 1.772 * (cb - 128),
    )
    assert close(rgb_of(path), np.round(expected), 1)


def cielab_tiff(path, width: int, height: int, pixels: bytes) -> None:
    """A minimal uncompressed TIFF 6.0 with PhotometricInterpretation 8 (CIELab), written by hand.

    Per the TIFF 6.0 spec (section 23): 8-bit L* is unsigned, 0..255 for 0..100; a* and b* are
    signed 8-bit integers.
    """
    tags = [  # (tag, type SHORT=3 / LONG=4, count, value)
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 3, None),
        (259, 3, 1, 1),
        (262, 3, 1, 8),
        (273, 4, 1, None),
        (277, 3, 1, 3),
        (278, 4, 1, height),
        (279, 4, 1, len(pixels)),
        (284, 3, 1, 1),
    ]
    ifd_size = 2 + 12 * len(tags) + 4
    bits_at = 8 + ifd_size  # the three BitsPerSample values do not fit in the entry
    pixels_at = bits_at + 6
    entries = b"".join(
        struct.pack("<HHII", tag, kind, count, {258: bits_at, 273: pixels_at}.get(tag, value))
        for tag, kind, count, value in tags
    )
    ifd = struct.pack("<H", len(tags)) + entries + struct.pack("<I", 0)
    path.write_bytes(
        b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<HHH", 8, 8, 8) + pixels
    )


@pytest.mark.parametrize(
    "lab, expected, tolerance",
    [
        ((100.0, 0, 0), (255, 255, 255), 1),
        ((0.0, 0, 0), (0, 0, 0), 1),
        ((53.585, 0, 0), (128, 128, 128), 1),  # L* of sRGB 128 grey
        ((54.29, 80.81, 69.89), (255, 0, 0), 6),  # sRGB red (D50), within 8-bit L*a*b* quantisation
    ],
)
def test_cie_lab_tiff(tmp_path, lab, expected, tolerance):
    lightness, a, b = lab
    signed = lambda v: round(v) & 0xFF  # noqa: E731  two's complement byte
    path = tmp_path / "lab.tif"
    cielab_tiff(path, W, H, bytes([round(lightness * 255 / 100), signed(a), signed(b)]) * (W * H))
    with Image.open(path) as raw:
        assert raw.mode == "LAB"
    assert close(rgb_of(path), expected, tolerance)


# --- alpha ---------------------------------------------------------------------------------------
def over_white(rgb, alpha) -> np.ndarray:
    return np.round((np.asarray(rgb) * alpha + np.asarray(BACKGROUND_RGB) * (255 - alpha)) / 255)


def test_background_is_white():
    assert BACKGROUND_RGB == (255, 255, 255)


def test_rgba_png_is_composited_over_the_background(tmp_path):
    pixels = np.zeros((H, W, 4), np.uint8)
    pixels[:, :4] = (200, 100, 0, 64)
    pixels[:, 4:8] = (200, 100, 0, 255)
    pixels[:, 8:] = (12, 34, 56, 0)
    path = tmp_path / "screenshot.png"
    Image.fromarray(pixels, "RGBA").save(path)
    rgb = rgb_of(path)
    assert (rgb[0, 0] == over_white((200, 100, 0), 64)).all() and tuple(rgb[0, 0]) == (
        241,
        216,
        191,
    )
    assert tuple(rgb[0, 5]) == (200, 100, 0) and tuple(rgb[0, 10]) == BACKGROUND_RGB


def test_gray_with_alpha_png(tmp_path):
    path = tmp_path / "la.png"
    Image.new("LA", (W, H), (100, 128)).save(path)
    assert (rgb_of(path) == over_white((100, 100, 100), 128)).all()
    with pytest.raises(DataError, match="grayscale image"):
        rgb_of(path, allow_grayscale=False)


def test_palette_with_a_transparent_index(tmp_path):
    image = Image.new("P", (W, H), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (0, 0, W // 2, H))
    path = tmp_path / "palette.png"
    image.save(path, transparency=1)
    rgb = rgb_of(path)
    assert tuple(rgb[0, 0]) == BACKGROUND_RGB and tuple(rgb[0, W - 1]) == (255, 0, 0)


def test_palette_without_transparency_is_colour_not_grayscale(tmp_path):
    image = Image.new("P", (W, H), 1)
    image.putpalette([0, 0, 0, 10, 120, 230] + [0] * 762)
    path = tmp_path / "palette.png"
    image.save(path)
    assert (rgb_of(path, allow_grayscale=False) == (10, 120, 230)).all()


# --- high bit depth ------------------------------------------------------------------------------
def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 40000, 65535, 257]], dtype=np.uint16).repeat(3, axis=0)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I;16")
    rgb = rgb_of(path)
    assert rgb[0, :, 0].tolist() == [
        0,
        round(40000 * 255 / 65535),
        255,
        1,
    ]  # 156, not Pillow's clip to 255
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    with pytest.raises(DataError, match="grayscale image"):
        rgb_of(path, allow_grayscale=False)


def test_big_endian_sixteen_bit_tiff(tmp_path):
    path = tmp_path / "deep_be.tif"
    Image.frombytes("I;16B", (2, 1), np.array([1000, 50000], dtype=">u2").tobytes()).save(path)
    assert rgb_of(path)[0, :, 0].tolist() == [round(1000 * 255 / 65535), round(50000 * 255 / 65535)]


@pytest.mark.parametrize(
    "values, expected",
    [
        ([0, 40000, 65535], [0, 156, 255]),  # within 16 bits: a widened 16-bit image
        ([-1000, 1000, 3000], [0, 128, 255]),  # outside: its own range min..max
        ([100000, 100000, 100000], [0, 0, 0]),  # constant outside 16 bits: black
    ],
)
def test_thirty_two_bit_integer_tiff(tmp_path, values, expected):
    path = tmp_path / "int.tif"
    Image.fromarray(np.array([values], dtype=np.int32)).save(path)
    with Image.open(path) as raw:
        assert raw.mode == "I"
    assert rgb_of(path)[0, :, 0].tolist() == expected


@pytest.mark.parametrize(
    "values, expected",
    [([0.0, 0.25, 1.0], [0, 64, 255]), ([-2.0, 0.0, 2.0], [0, 128, 255])],
)
def test_float_tiff(tmp_path, values, expected):
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([values], dtype=np.float32)).save(path)
    assert rgb_of(path)[0, :, 0].tolist() == expected


def test_bilevel_png(tmp_path):
    image = Image.new("1", (W, H), 0)
    image.paste(1, (0, 0, 4, H))
    path = tmp_path / "bits.png"
    image.save(path)
    rgb = rgb_of(path)
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[0, 8]) == (0, 0, 0)


# --- EXIF orientation ----------------------------------------------------------------------------
RED, BLUE = (255, 0, 0), (0, 0, 255)


def halves(width=32, height=16) -> Image.Image:
    """Stored pixels: left half red, right half blue."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = RED
    pixels[:, width // 2 :] = BLUE
    return Image.fromarray(pixels)


def save_oriented(path, orientation: int, image: Image.Image | None = None) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    (image or halves()).save(
        path, exif=exif.tobytes(), **({"quality": 95} if path.suffix == ".jpg" else {})
    )


@pytest.mark.parametrize(
    "orientation, size, top_left, bottom_right",
    [
        (1, (32, 16), RED, BLUE),
        (6, (16, 32), RED, BLUE),  # rotate 90 clockwise to view: the stored left side goes on top
        (
            8,
            (16, 32),
            BLUE,
            RED,
        ),  # rotate 90 counter-clockwise: the stored left side goes to the bottom
        (3, (32, 16), BLUE, RED),  # rotate 180
        (2, (32, 16), BLUE, RED),  # mirror
    ],
)
def test_exif_orientation_is_applied_before_anything_reads_the_pixels(
    tmp_path, orientation, size, top_left, bottom_right
):
    path = tmp_path / "phone.jpg"
    save_oriented(path, orientation)
    rgb = rgb_of(path)
    assert image_size(path, max_pixels=MAX_PIXELS) == size == (rgb.shape[1], rgb.shape[0])
    assert close(rgb[1, 1], top_left, 12) and close(rgb[-2, -2], bottom_right, 12)
    assert image_size(path, max_pixels=MAX_PIXELS, apply_exif=False) == (32, 16)


def test_exif_orientation_in_a_png(tmp_path):
    path = tmp_path / "rotated.png"
    save_oriented(path, 6)
    rgb = rgb_of(path)
    assert rgb.shape == (32, 16, 3) and tuple(rgb[0, 0]) == RED and tuple(rgb[-1, -1]) == BLUE
    assert image_size(path, max_pixels=MAX_PIXELS) == (16, 32)


def test_orientation_applies_to_converted_modes_too(tmp_path):
    path = tmp_path / "rotated_rgba.png"
    save_oriented(path, 8, halves().convert("RGBA"))
    rgb = rgb_of(path)
    assert rgb.shape == (32, 16, 3) and tuple(rgb[0, 0]) == BLUE and tuple(rgb[-1, -1]) == RED


def test_an_out_of_range_orientation_is_ignored(tmp_path):
    path = tmp_path / "odd.jpg"
    save_oriented(path, 9)
    assert rgb_of(path).shape == (16, 32, 3) and image_size(path, max_pixels=MAX_PIXELS) == (32, 16)
