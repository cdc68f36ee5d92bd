"""Read any supported data set into one manifest per split, and the helpers the readers share.

``read_dataset`` is the only entry point the stages need: it dispatches on ``data.dataset`` and
returns manifests built by ``manifest.build_manifest``, so every data set has the same schema.
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath

import pandas as pd

from privobfnet.config import DataConfig
from privobfnet.data.errors import DataError


def read_split_list(path: str | os.PathLike) -> list[str]:
    """Image ids of a split list, one per line, in file order; duplicates are an error.

    A line may also be an SBD-style pair ``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png``
    (some train_aug.txt copies are written that way): its id is the first path's stem.
    """
    if not os.path.isfile(path):
        raise DataError(path, "split list missing")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(path, "split list is not UTF-8 text", str(exc)) from None
    seen: dict[str, int] = {}
    ids = []
    for line_no, line in enumerate(lines, start=1):
        token = line.split()[0] if line.strip() else ""
        if not token:
            continue
        image_id = PurePosixPath(token).stem if "/" in token else token
        if image_id in seen:
            detail = f"{image_id!r} on lines {seen[image_id]} and {line_no}"
            raise DataError(path, "duplicate image id in split list", detail)
        seen[image_id] = line_no
        ids.append(image_id)
    if not ids:
        raise DataError(path, "split list is empty")
    return ids


def relative_inside(root: str | os.PathLike, rel: str, source: str | os.PathLike) -> str:
    """``root/rel`` as a string, refusing ``rel`` that is absolute or climbs out of ``root``."""
    parts = PurePosixPath(rel.replace("\\", "/"))
    if parts.is_absolute() or ".." in parts.parts or not rel.strip():
        raise DataError(
            source, "image path must be relative and inside the data set root", repr(rel)
        )
    return os.path.join(root, *parts.parts)


# Splits that share images by the data set's design (VOC's train is part of SBD's train_aug, its
# trainval is train + val); every other pair of splits must be disjoint.
SHARED_SPLITS: dict[str, tuple[tuple[str, str], ...]] = {
    "voc": (
        ("train", "train_aug"),
        ("train", "trainval"),
        ("val", "trainval"),
        ("train_aug", "trainval"),
    ),
}


def dataset_root(data_cfg: DataConfig) -> str:
    """Where the download stage puts ``data_cfg.dataset``: ``<raw_dir>/<dataset>``."""
    return os.path.join(data_cfg.raw_dir, data_cfg.dataset)


def read_dataset(data_cfg: DataConfig) -> dict[str, pd.DataFrame]:
    """One manifest per split named in ``data_cfg.splits`` (a missing split is a ``DataError``).

    Image counts are not compared with ``data_cfg.splits`` here: that is the validate stage's job
    (for COCO it must add ``attrs["skipped"]``, the images without annotations).
    """
    root = dataset_root(data_cfg)
    max_pixels = data_cfg.max_image_pixels
    # imported here so that reading VISPR or VOC never needs pycocotools
    if data_cfg.dataset in ("synthpriv", "vispr"):
        from privobfnet.data.readers.vispr import read_vispr_split

        def read(split: str) -> pd.DataFrame:
            return read_vispr_split(
                root,
                split,
                dataset=data_cfg.dataset,
                max_pixels=max_pixels,
                profile=data_cfg.privacy_profile,
                rescale=data_cfg.privacy_rescale,
            )

    elif data_cfg.dataset == "voc":
        from privobfnet.data.readers.voc import read_voc_split

        def read(split: str) -> pd.DataFrame:
            return read_voc_split(root, split, max_pixels=max_pixels)

    elif data_cfg.dataset == "coco":
        from privobfnet.data.readers.coco import read_coco_split

        def read(split: str) -> pd.DataFrame:
            return read_coco_split(
                root, split, max_pixels=max_pixels, overlap=data_cfg.coco_overlap
            )

    else:
        raise ValueError(f"unknown data set {data_cfg.dataset!r}")
    return {split: read(split) for split in data_cfg.splits}
