"""COCO 2014 reader and semantic-mask renderer (pycocotools).

Layout under the data set root (e.g. ``data/raw/coco``)::

    {train2014,val2014}/COCO_<split>_<id:012d>.jpg
    annotations/instances_<split>.json
    SegmentationClass/<split>/<image_id>.png          written by ``render_semantic_masks``
    SegmentationClassFileOrder/<split>/<image_id>.png the same with ``overlap="file_order"``

Conventions (those of the WSSS literature on COCO):
- 80 classes, index = rank of the category id (1..90 with gaps) -> 0..79.
- Image labels come from every instance annotation, crowd (``iscrowd=1``) ones included.
- Images without any annotation have no label; they are left out of the manifest and counted in
  ``attrs["skipped"]`` (train2014: 82,783 images, 82,081 annotated; val2014: 40,504 / 40,137).
- Semantic masks paint every instance, crowd regions included (with their class, as detectron2's
  panoptic-to-semantic conversion does). Where instances overlap, ``data.coco_overlap`` decides:
  ``largest_first`` (default) paints in order of decreasing pixel area, so a small object lying
  on a larger one stays visible (equal areas keep the file's order); ``file_order`` paints in the
  order of the file's ``annotations`` list, so the later annotation wins. Each rule renders into
  its own folder, so switching never leaves masks of the other rule behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from typing import Literal

import numpy as np
import pandas as pd
from pycocotools.coco import COCO

from privobfnet.data.errors import DataError
from privobfnet.data.images import image_size, mask_to_image
from privobfnet.data.manifest import build_manifest, multi_hot
from privobfnet.data.readers import relative_inside
from privobfnet.io import atomic_path

# (category id, name) of COCO's 80 object categories, in id order
COCO_CATEGORIES = [
    (1, "person"),
    (2, "bicycle"),
    (3, "car"),
    (4, "motorcycle"),
    (5, "airplane"),
    (6, "bus"),
    (7, "train"),
    (8, "truck"),
    (9, "boat"),
    (10, "traffic light"),
    (11, "fire hydrant"),
    (13, "stop sign"),
    (14, "parking meter"),
    (15, "bench"),
    (16, "bird"),
    (17, "cat"),
    (18, "dog"),
    (19, "horse"),
    (20, "sheep"),
    (21, "cow"),
    (22, "elephant"),
    (23, "bear"),
    (24, "zebra"),
    (25, "giraffe"),
    (27, "backpack"),
    (28, "umbrella"),
    (31, "handbag"),
    (32, "tie"),
    (33, "suitcase"),
    (34, "frisbee"),
    (35, "skis"),
    (36, "snowboard"),
    (37, "sports ball"),
    (38, "kite"),
    (39, "baseball bat"),
    (40, "baseball glove"),
    (41, "skateboard"),
    (42, "surfboard"),
    (43, "tennis racket"),
    (44, "bottle"),
    (46, "wine glass"),
    (47, "cup"),
    (48, "fork"),
    (49, "knife"),
    (50, "spoon"),
    (51, "bowl"),
    (52, "banana"),
    (53, "apple"),
    (54, "sandwich"),
    (55, "orange"),
    (56, "broccoli"),
    (57, "carrot"),
    (58, "hot dog"),
    (59, "pizza"),
    (60, "donut"),
    (61, "cake"),
    (62, "chair"),
    (63, "couch"),
    (64, "potted plant"),
    (65, "bed"),
    (67, "dining table"),
    (70, "toilet"),
    (72, "tv"),
    (73, "laptop"),
    (74, "mouse"),
    (75, "remote"),
    (76, "keyboard"),
    (77, "cell phone"),
    (78, "microwave"),
    (79, "oven"),
    (80, "toaster"),
    (81, "sink"),
    (82, "refrigerator"),
    (84, "book"),
    (85, "clock"),
    (86, "vase"),
    (87, "scissors"),
    (88, "teddy bear"),
    (89, "hair drier"),
    (90, "toothbrush"),
]
COCO_CLASSES = [name for _, name in COCO_CATEGORIES]
CATEGORY_INDEX = {cat_id: index for index, (cat_id, _) in enumerate(COCO_CATEGORIES)}

Overlap = Literal["largest_first", "file_order"]
MASK_FOLDERS = {"largest_first": "SegmentationClass", "file_order": "SegmentationClassFileOrder"}


def instances_path(root: str | os.PathLike, split: str) -> str:
    """annotations/instances_<split>.json under ``root``."""
    return os.path.join(root, "annotations", f"instances_{split}.json")


def mask_path_for(
    root: str | os.PathLike, split: str, image_id: int | str, overlap: Overlap = "largest_first"
) -> str:
    """<overlap's folder>/<split>/<image_id>.png under ``root`` (it may not exist yet)."""
    return os.path.join(root, MASK_FOLDERS[overlap], split, f"{image_id}.png")


def load_coco(path: str | os.PathLike) -> COCO:
    """Load an instances file with pycocotools and check its categories and references."""
    if not os.path.isfile(path):
        raise DataError(path, "split annotation file missing")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints progress lines
            coco = COCO(str(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, "not a COCO annotation file", f"invalid JSON: {exc}") from None
    except (AssertionError, KeyError, TypeError) as exc:  # pycocotools indexes ids without checks
        raise DataError(path, "not a COCO annotation file", f"malformed content: {exc!r}") from None
    missing = [k for k in ("images", "annotations", "categories") if k not in coco.dataset]
    if missing:
        raise DataError(path, "COCO annotation file lacks keys", ", ".join(missing))
    categories = {(c.get("id"), c.get("name")) for c in coco.dataset["categories"]}
    if categories != set(COCO_CATEGORIES) or len(coco.dataset["categories"]) != len(
        COCO_CATEGORIES
    ):
        differ = sorted(categories ^ set(COCO_CATEGORIES), key=repr)[:3]
        raise DataError(
            path, "categories differ from COCO's 80 object categories", f"e.g. {differ}"
        )
    for ann in coco.dataset["annotations"]:
        which = f"annotation {ann.get('id')}"
        if ann.get("category_id") not in CATEGORY_INDEX:
            raise DataError(
                path, "unknown category id in annotation", f"{which}: {ann.get('category_id')!r}"
            )
        if ann.get("image_id") not in coco.imgs:
            rule = "annotation refers to an image not in the file"
            raise DataError(path, rule, f"{which}: image {ann.get('image_id')!r}")
        if "segmentation" not in ann:
            raise DataError(path, "annotation lacks a segmentation", which)
    return coco


def image_labels(coco: COCO, image_id: int) -> list[int]:
    """Sorted class indices of all instances (crowd included) of one image."""
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=None))
    return sorted({CATEGORY_INDEX[a["category_id"]] for a in anns})


def semantic_mask(coco: COCO, image_id: int, overlap: Overlap = "largest_first") -> np.ndarray:
    """(H, W) uint8 class mask of one image: 0 background, class index + 1 for each instance.

    Polygons and RLE (crowd) segmentations are both decoded by ``annToMask``. Where instances
    overlap, ``largest_first`` lets the smaller one win and ``file_order`` the later annotation.
    """
    if overlap not in MASK_FOLDERS:
        raise ValueError(f"unknown overlap rule {overlap!r} (known: {', '.join(MASK_FOLDERS)})")
    info = coco.imgs[image_id]
    mask = np.zeros((info["height"], info["width"]), dtype=np.uint8)
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=None))
    binaries = [coco.annToMask(a) for a in anns]
    areas = [int(b.sum()) for b in binaries]
    order = range(len(anns))  # getAnnIds keeps the file's order
    if overlap == "largest_first":
        order = sorted(order, key=lambda i: -areas[i])  # stable: ties keep file order
    for i in order:
        mask[binaries[i] > 0] = CATEGORY_INDEX[anns[i]["category_id"]] + 1
    return mask


def render_semantic_masks(
    root: str | os.PathLike,
    split: str,
    *,
    overwrite: bool = False,
    overlap: Overlap = "largest_first",
) -> int:
    """Write <overlap's folder>/<split>/<image_id>.png for every annotated image; returns how many.

    Existing PNGs are kept unless ``overwrite``; each write is atomic (temp file, then rename).
    """
    coco = load_coco(instances_path(root, split))
    out_dir = os.path.dirname(mask_path_for(root, split, 0, overlap))
    os.makedirs(out_dir, exist_ok=True)
    written = 0
    for image_id in sorted(coco.imgs):
        if not coco.imgToAnns.get(image_id):
            continue  # no annotation: not in the manifest either
        path = mask_path_for(root, split, image_id, overlap)
        if os.path.exists(path) and not overwrite:
            continue
        with atomic_path(path) as tmp:
            mask_to_image(semantic_mask(coco, image_id, overlap)).save(tmp, format="PNG")
        written += 1
    return written


def read_coco_split(
    root: str | os.PathLike, split: str, *, max_pixels: int, overlap: Overlap = "largest_first"
) -> pd.DataFrame:
    """Manifest of one COCO split (train2014, val2014); ``attrs["skipped"]`` counts unlabelled images.

    ``mask_path`` points at the masks rendered with the ``overlap`` rule (null until rendered).
    """
    json_path = instances_path(root, split)
    coco = load_coco(json_path)
    records, skipped = [], 0
    for image_id in sorted(coco.imgs):
        info = coco.imgs[image_id]
        if not coco.imgToAnns.get(image_id):
            skipped += 1
            continue
        image_path = relative_inside(
            os.path.join(root, split), str(info.get("file_name", "")), json_path
        )
        width, height = image_size(image_path, max_pixels=max_pixels)
        if (width, height) != (info.get("width"), info.get("height")):
            raise DataError(
                image_path,
                "image size differs from its annotation file",
                f"{width}x{height} on disk, {info.get('width')}x{info.get('height')} in {json_path}",
            )
        mask_path = mask_path_for(root, split, image_id, overlap)
        records.append(
            {
                "image_id": str(image_id),
                "path": image_path,
                "split": split,
                "labels": multi_hot(image_labels(coco, image_id), len(COCO_CLASSES)),
                "privacy_score": None,
                "mask_path": mask_path if os.path.isfile(mask_path) else None,
                "width": width,
                "height": height,
            }
        )
    df = build_manifest(records, dataset="coco", class_names=COCO_CLASSES)
    df.attrs["skipped"] = skipped
    df.attrs["source"] = json_path
    return df
