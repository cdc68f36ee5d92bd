"""Class-agnostic saliency maps, L2G's ``Sal/`` folder, placed by hand beside a data set.

L2G's crop target gates every class by a saliency map (PoolNet's, published by L2G's authors);
with ``masks.saliency`` on, the l2g crop target (``train.crop_target: l2g``) gates the classes
whose mask type has no prior mask of its own (type ``none``) by it, and the background by
1 - the union of it and the prior masks (``privobfnet.training.ensemble``).

Layout: ``<raw_dir>/<dataset>/Sal/<name>.png``, ``<name>`` the image file's name without its
extension (L2G's: ``2007_000032.png``, ``COCO_train2014_000000000009.png``), one per image of
every split, any 8-bit mode (read as L), the image's size. Read as L2G reads it: L / 255, divided by the map's maximum.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from privobfnet.data.errors import DataError

SALIENCY_FOLDER = "Sal"
# where L2G's maps come from (its README, commit 0ec2504); Google Drive cannot be fetched unattended
SALIENCY_SOURCES = {
    "voc": "https://drive.google.com/file/d/1ZBLZ3YFw6yDIRWo0Apd4znOozg-Buj4A/view",
    "coco": "https://drive.google.com/file/d/1IN6qQK0kL4_x8yzF7jvS6hNIFXsrR6XV/view",
}
MAX_LISTED = 5  # problem files named in an error


def saliency_dir(dataset_root: str | os.PathLike) -> Path:
    """Where a data set's saliency maps are placed: ``Sal`` in its root
    (``privobfnet.data.readers.dataset_root``: ``<raw_dir>/<dataset>``)."""
    return Path(dataset_root) / SALIENCY_FOLDER


def saliency_file(folder: str | os.PathLike, image_path: str | os.PathLike) -> Path:
    """The saliency map of the image at ``image_path``: its file name with ``.png``, in ``folder``."""
    return Path(folder) / f"{Path(image_path).stem}.png"


def placement_hint(folder: Path, dataset: str) -> str:
    source = SALIENCY_SOURCES.get(dataset)
    where = (
        f"L2G's PoolNet maps for {dataset}: {source} (unpack the PNGs into it)"
        if source
        else "a class-agnostic saliency model's maps, one <image file name>.png per image"
    )
    return f"place {where}, or set masks.saliency: false"


def check_saliency_folder(folder: str | os.PathLike, dataset: str) -> int:
    """The number of PNGs in a placed saliency folder; ``DataError`` saying where to get them if it
    is missing or holds none."""
    folder = Path(folder)
    n_maps = sum(1 for _ in folder.glob("*.png")) if folder.is_dir() else 0
    if not n_maps:
        raise DataError(
            folder,
            "saliency maps missing" if not folder.is_dir() else "no saliency maps (*.png) in it",
            placement_hint(folder, dataset),
        )
    return n_maps


def check_saliency_files(
    folder: str | os.PathLike, images: Iterable[tuple[str, str, int, int]], dataset: str
) -> dict[str, Path]:
    """image_id -> its saliency map, for (image_id, image path, width, height) ``images``; each must
    decode (its header) as an image of that size. ``DataError`` naming the folder, how many fail and a few of
    them."""
    folder = Path(folder)
    found, problems = {}, []
    for image_id, image_path, width, height in images:
        path = saliency_file(folder, image_path)
        try:
            with Image.open(path) as png:
                size = png.size
        except FileNotFoundError:
            problems.append(f"{path.name}: missing")
            continue
        except (OSError, ValueError, SyntaxError) as exc:
            problems.append(f"{path.name}: unreadable ({exc})")
            continue
        if size != (width, height):
            problems.append(f"{path.name}: {size[0]}x{size[1]}, the image {width}x{height}")
            continue
        found[image_id] = path
    if problems:
        raise DataError(
            folder,
            f"{len(problems)} of {len(problems) + len(found)} saliency maps missing or unusable",
            "; ".join(problems[:MAX_LISTED]) + f". {placement_hint(folder, dataset)}",
        )
    return found


def read_saliency(path: str | os.PathLike, shape: tuple[int, int]) -> np.ndarray:
    """An (H, W) float32 saliency map in [0, 1], max-normalised as L2G's loader does; ``DataError``
    naming the file if unreadable or not ``shape``."""
    try:
        with Image.open(path) as png:
            array = np.asarray(png.convert("L"), dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise DataError(path, "saliency map missing (re-run the masks stage)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(path, "saliency map unreadable", str(exc)) from None
    if array.shape != tuple(shape):
        raise DataError(
            path, "saliency map has the wrong size", f"{array.shape}, the image {shape}"
        )
    return array / (array.max() + 1e-10)
