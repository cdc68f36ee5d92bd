"""Command: the README's before / after figure, made by `privobfnet obfuscate` itself.

    .venv/bin/python -m tools.obfuscate_example [--out reports/figures/obfuscate_example.png]

Inputs: scikit-image's astronaut and a 640 x 480 "photo of a document" (``document``: private
strings from SynthPriv's generators in DejaVu fonts, sizes and rotations, with a face); both go
through ``privobfnet.cli.main(["obfuscate", ..., "--hide-all", "faces,text", "--verify"])``. The figure
shows each input beside the file the command wrote. ``bench/obfuscate.py`` uses ``document`` too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from privobfnet import cli
from privobfnet.data.synthpriv import TEXT_ATTRIBUTES
from privobfnet.data.synthpriv.text import private_text
from privobfnet.io import atomic_path
from privobfnet.viz import before_after_figure

FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONT_FILES = [
    "DejaVuSans.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
]


def document(
    rng: np.random.Generator, size: tuple[int, int] = (640, 480)
) -> tuple[np.ndarray, list[str]]:
    """A page with five private strings (several fonts, sizes, rotations) and a face; and the strings."""
    from skimage import data as skdata

    page = Image.new("RGB", size, tuple(int(v) for v in rng.integers(215, 255, 3)))
    # head and shoulders, the face ~65 px: MediaPipe's full-range detector misses faces under ~45 px
    # in a 640 px image (it sees the image letterboxed to 192 px)
    face = Image.fromarray(skdata.astronaut()[0:300, 80:380]).resize((220, 220))
    page.paste(face, (size[0] - 230, size[1] - 230))
    strings, y = [], 20
    for attribute in rng.choice(TEXT_ATTRIBUTES, 5, replace=False):
        text = private_text(rng, str(attribute))[0][1]  # (attribute, text) of the first line
        font_file = FONT_FILES[int(rng.integers(len(FONT_FILES)))]
        font = ImageFont.truetype(str(FONTS / font_file), int(rng.integers(16, 30)))
        left, top, right, bottom = font.getbbox(text)
        layer = Image.new("L", (right + 8, bottom + 8), 0)
        ImageDraw.Draw(layer).text((4, 4), text, font=font, fill=255)
        layer = layer.rotate(
            float(rng.uniform(-8, 8)), resample=Image.Resampling.BICUBIC, expand=True
        )
        page.paste(
            Image.new("RGB", layer.size, (25, 25, 35)), (int(rng.integers(10, 60)), y), layer
        )
        strings.append(text)
        y += layer.size[1] + int(rng.integers(25, 45))
    return np.asarray(page), strings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="reports/figures/obfuscate_example.png")
    args = parser.parse_args(argv)
    from skimage import data as skdata

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "in").mkdir()
        Image.fromarray(document(np.random.default_rng(3))[0]).save(
            folder / "in" / "document.jpg", quality=92
        )
        Image.fromarray(skdata.astronaut()).save(folder / "in" / "astronaut.png")
        status = cli.main(
            [
                "obfuscate",
                str(folder / "in"),
                "--out",
                str(folder / "out"),
                "--hide-all",
                "faces,text",
                "--verify",
                "--no-progress",
            ]
        )
        if status != 0:
            return status
        rows = []
        for name in ("document.jpg", "astronaut.png"):
            before = np.asarray(Image.open(folder / "in" / name).convert("RGB"))
            after = np.asarray(Image.open(folder / "out" / name).convert("RGB"))
            rows.append((name, before, [("privobfnet obfuscate --hide-all faces,text", after)]))
        with atomic_path(args.out) as target:
            before_after_figure(rows).savefig(target, format="png", dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
