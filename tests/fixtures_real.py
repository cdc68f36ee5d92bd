"""Tiny data sets in each real on-disk format (VISPR, VOC 2012 + SBD, COCO 2014), built in tmp_path.

Each ``make_*`` writes a handful of images whose expected labels, scores and masks are stated in
its docstring, so tests can assert hand-computed values. Other test files may import these.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from privobfnet.data.images import mask_to_image


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def write_jpeg(
    path: Path, width: int, height: int, color=(120, 60, 30), *, noise: bool = False
) -> Path:
    """An RGB JPEG of one colour, or of random noise (then the scan data outweighs the header)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if noise:
        pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
    else:
        image = Image.new("RGB", (width, height), color)
    image.save(path, format="JPEG", quality=90)
    return path


def write_palette_mask(path: Path, mask: np.ndarray) -> Path:
    """A VOC-palette class mask PNG (mode P), as VOC's SegmentationClass."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mask_to_image(mask).save(path, format="PNG")
    return path


def write_gray_mask(path: Path, mask: np.ndarray) -> Path:
    """An 8-bit grayscale class mask PNG (mode L), as SBD's SegmentationClassAug."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(mask, dtype=np.uint8)).save(path, format="PNG")
    return path


def write_bomb_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A valid 1-bit black PNG of width x height that takes ~50 kB on disk and no big allocation."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    row = b"\x00" + bytes((width + 7) // 8)  # filter byte "none", then all-black pixels
    compressor = zlib.compressobj(9)
    block = row * 1000
    parts = [compressor.compress(block) for _ in range(height // 1000)]
    parts += [compressor.compress(row * (height % 1000)), compressor.flush()]
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, grayscale
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)
    return path


def truncate_file(path: Path, keep: float = 0.5) -> Path:
    """Cut a file to its first ``keep`` share of bytes (the header survives)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def uncompressed_rle(binary: np.ndarray) -> dict:
    """COCO's uncompressed RLE of a (H, W) 0/1 mask: column-major run lengths, zeros first."""
    flat = np.asarray(binary, dtype=np.uint8).flatten(order="F")
    counts, current, run = [], 0, 0
    for value in flat:
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    counts.append(run)
    return {
        "counts": [int(c) for c in counts],
        "size": [int(binary.shape[0]), int(binary.shape[1])],
    }


# --------------------------------------------------------------------------------------------
# VISPR (and SynthPriv) layout
# --------------------------------------------------------------------------------------------
VISPR_ATTRIBUTES = [
    ("a0_safe", "Safe", "No private information"),
    ("a9_face_complete", "Personal Description", "Full face visible"),
    ("a17_color", "Personal Description", "Skin colour"),
    ("a64_rel_personal", "Relationship", "Personal relationships"),
]
# VPA's user_studies/user_profiles.tsv: attribute -> (description, one float rating per profile).
# a0_safe has no row, as in VPA's file (the reader rates it 1); rows are written in an order
# different from attributes.tsv on purpose (the reader joins by id).
VISPR_PROFILES = {
    "a64_rel_personal": ("Personal Relationships", [4.4, 5.0, 1.6]),
    "a17_color": ("Color", [2.0, 1.0, 1.0]),
    "a9_face_complete": ("Face (Complete)", [5.0, 3.0, 4.0]),
}
VISPR_IMAGES = {  # id -> (split, labels, (width, height))
    "2017_10000001": ("train", ["a17_color", "a9_face_complete"], (48, 32)),
    "2017_10000002": ("train", ["a0_safe"], (40, 40)),
    "2017_20000001": ("val", ["a64_rel_personal", "a17_color"], (36, 28)),
}


def write_vispr_annotation(root: Path, split: str, image_id: str, record: dict) -> Path:
    """annotations/<split>/<id>.json with the given content."""
    path = root / "annotations" / split / f"{image_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def write_vpa_profiles(root: Path, profiles: dict[str, tuple[str, list[float]]]) -> Path:
    """user_studies/user_profiles.tsv as VPA ships it: no header, id, description, ratings."""
    path = root / "user_studies" / "user_profiles.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ["\t".join([a, d, *(str(v) for v in ratings)]) for a, (d, ratings) in profiles.items()]
    path.write_text("\n".join(rows) + "\n")
    return path


def make_vispr(root: Path) -> Path:
    """A 3-image VISPR-layout data set at ``root``.

    Expected (attributes.tsv order a0_safe, a9_face_complete, a17_color, a64_rel_personal), with
    the default score (max over attributes, mean over the 3 profiles, rescale (x-1)/4):
    - train 2017_10000001: labels [0,1,1,0]; per-profile max 5,3,4 -> mean 4 -> score 0.75;
      48x32; has SegmentationClass/2017_10000001.png (values 0, 2, 3, 255).
    - train 2017_10000002: labels [1,0,0,0]; a0_safe has no row -> 1,1,1 -> score 0; 40x40.
    - val   2017_20000001: labels [0,0,1,1]; per-profile max 4.4,5,1.6 -> mean 11/3 -> score 2/3;
      36x28.
    """
    root.mkdir(parents=True, exist_ok=True)
    lines = ["idx\tattribute_id\tgroup\tdescription"]
    lines += [f"{i}\t{a}\t{g}\t{d}" for i, (a, g, d) in enumerate(VISPR_ATTRIBUTES)]
    (root / "attributes.tsv").write_text("\n".join(lines) + "\n")
    write_vpa_profiles(root, VISPR_PROFILES)
    splits: dict[str, list[str]] = {}
    for image_id, (split, labels, (w, h)) in VISPR_IMAGES.items():
        splits.setdefault(split, []).append(image_id)
        image_path = f"images/{split}/{image_id}.jpg"
        write_jpeg(root / image_path, w, h)
        record = {"id": image_id, "image_path": image_path, "labels": labels}
        write_vispr_annotation(root, split, image_id, record)
    for split, ids in splits.items():
        (root / f"{split}.txt").write_text("\n".join(ids) + "\n")
    mask = np.zeros((32, 48), dtype=np.uint8)
    mask[4:20, 4:20] = 2  # a9_face_complete
    mask[10:30, 30:44] = 3  # a17_color
    mask[0, :] = 255
    write_palette_mask(root / "SegmentationClass" / "2017_10000001.png", mask)
    return root


# --------------------------------------------------------------------------------------------
# PASCAL VOC 2012 + SBD layout
# --------------------------------------------------------------------------------------------
def voc_xml(filename: str, size: tuple[int, int], objects: list[tuple[str, int]]) -> str:
    """An Annotations XML as VOC writes it; person objects get <part> children with <name>s."""
    body = []
    for name, difficult in objects:
        parts = "".join(
            f"<part><name>{p}</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></part>"
            for p in (("head", "hand") if name == "person" else ())
        )
        body.append(
            f"<object><name>{name}</name><pose>Frontal</pose><truncated>0</truncated>"
            f"<difficult>{difficult}</difficult><bndbox><xmin>2</xmin><ymin>3</ymin><xmax>20</xmax>"
            f"<ymax>25</ymax></bndbox>{parts}</object>"
        )
    return (
        f"<annotation><folder>VOC2012</folder><filename>{filename}</filename>"
        f"<source><database>The VOC2007 Database</database></source>"
        f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
        f"<segmented>1</segmented>{''.join(body)}</annotation>\n"
    )


VOC_IMAGES = {  # id -> (objects (name, difficult), (width, height))
    "2007_000032": ([("aeroplane", 0), ("aeroplane", 0), ("person", 1)], (50, 40)),
    "2007_000039": ([("tvmonitor", 0)], (30, 30)),
    "2008_000002": ([("dog", 0), ("cat", 1)], (44, 36)),
    "2009_000001": ([("bird", 0)], (32, 32)),
}
VOC_SPLITS = {
    "train": ["2007_000032", "2007_000039"],
    "val": ["2008_000002"],
    "train_aug": ["2007_000032", "2007_000039", "2009_000001"],
}


def make_voc(root: Path) -> Path:
    """A 4-image VOC 2012 + SBD layout at ``root`` (the data set root, holding VOCdevkit/).

    Expected (VOC class order):
    - 2007_000032: aeroplane (0) + difficult person (14); 50x40; SegmentationClassAug mask (mode L:
      0, 1 in rows 5:20 cols 5:30, 15 in rows 22:38 cols 30:45, 255 border) AND a different
      SegmentationClass mask (all 1) -> the Aug one is used.
    - 2007_000039: tvmonitor (19); 30x30; no mask.
    - 2008_000002: dog (11) + difficult cat (7); 44x36; SegmentationClass only (palette, 12 in a box).
    - 2009_000001: bird (2); 32x32; SegmentationClassAug only.
    Splits: train [032, 039], val [2008_000002], train_aug [032, 039, 2009_000001] (SBD pair form).
    """
    voc = root / "VOCdevkit" / "VOC2012"
    for image_id, (objects, (w, h)) in VOC_IMAGES.items():
        write_jpeg(voc / "JPEGImages" / f"{image_id}.jpg", w, h)
        (voc / "Annotations").mkdir(parents=True, exist_ok=True)
        (voc / "Annotations" / f"{image_id}.xml").write_text(
            voc_xml(f"{image_id}.jpg", (w, h), objects)
        )
    aug = np.zeros((40, 50), dtype=np.uint8)
    aug[5:20, 5:30] = 1
    aug[22:38, 30:45] = 15
    aug[0, :] = 255
    write_gray_mask(voc / "SegmentationClassAug" / "2007_000032.png", aug)
    write_palette_mask(
        voc / "SegmentationClass" / "2007_000032.png", np.ones((40, 50), dtype=np.uint8)
    )
    dog = np.zeros((36, 44), dtype=np.uint8)
    dog[10:30, 10:30] = 12
    write_palette_mask(voc / "SegmentationClass" / "2008_000002.png", dog)
    write_gray_mask(
        voc / "SegmentationClassAug" / "2009_000001.png", np.full((32, 32), 3, dtype=np.uint8)
    )
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    for split, ids in VOC_SPLITS.items():
        if split == "train_aug":
            lines = [f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png" for i in ids]
        else:
            lines = ids
        (lists / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


# --------------------------------------------------------------------------------------------
# COCO 2014 layout
# --------------------------------------------------------------------------------------------
def coco_categories() -> list[dict]:
    """The 80 categories as instances_*.json lists them."""
    from privobfnet.data.coco import COCO_CATEGORIES

    return [{"supercategory": "thing", "id": i, "name": n} for i, n in COCO_CATEGORIES]


def make_coco(root: Path, split: str = "val2014") -> Path:
    """A 3-image COCO 2014 layout at ``root`` with annotations/instances_<split>.json.

    - image 42 (40x30): a person polygon (x 5..25, y 5..20, 300 px, listed first) and a crowd car
      as uncompressed RLE (columns 20..39, all rows, 600 px). Labels person (0), car (2). Mask:
      person = 1, car = 3; where they overlap the smaller person wins (1).
    - image 7 (32x24): a toothbrush polygon (x 2..12, y 2..10); label 79, mask value 80.
    - image 99 (20x20): no annotation -> skipped.
    """
    images = [(42, 40, 30), (7, 32, 24), (99, 20, 20)]
    crowd = np.zeros((30, 40), dtype=np.uint8)
    crowd[:, 20:40] = 1
    annotations = [
        {
            "id": 101,
            "image_id": 42,
            "category_id": 1,
            "iscrowd": 0,
            "area": 300.0,
            "bbox": [5, 5, 20, 15],
            "segmentation": [[5, 5, 25, 5, 25, 20, 5, 20]],
        },
        {
            "id": 102,
            "image_id": 42,
            "category_id": 3,
            "iscrowd": 1,
            "area": 600.0,
            "bbox": [20, 0, 20, 30],
            "segmentation": uncompressed_rle(crowd),
        },
        {
            "id": 103,
            "image_id": 7,
            "category_id": 90,
            "iscrowd": 0,
            "area": 80.0,
            "bbox": [2, 2, 10, 8],
            "segmentation": [[2, 2, 12, 2, 12, 10, 2, 10]],
        },
    ]
    dataset = {
        "info": {"description": "tiny COCO fixture"},
        "licenses": [],
        "images": [
            {"id": i, "file_name": f"COCO_{split}_{i:012d}.jpg", "width": w, "height": h}
            for i, w, h in images
        ],
        "annotations": annotations,
        "categories": coco_categories(),
    }
    for i, w, h in images:
        write_jpeg(root / split / f"COCO_{split}_{i:012d}.jpg", w, h)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(dataset))
    return root
