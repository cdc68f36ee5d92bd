"""PASCAL VOC 2012 reader, with SBD's SegmentationClassAug masks for the train_aug split.

Layout under the data set root (e.g. ``data/raw/voc``)::

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/Annotations/<id>.xml
    VOCdevkit/VOC2012/SegmentationClassAug/<id>.png   (SBD, 8-bit; preferred)
    VOCdevkit/VOC2012/SegmentationClass/<id>.png      (VOC, palette; fallback)
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train_aug,train,val}.txt  (10,582 / 1,464 / 1,449)

VOC class masks already use 0 for background, 1..20 for the classes and 255 for void, which is
the manifest's mask convention, so they are used as they are.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import pandas as pd

from privobfnet.data.errors import DataError
from privobfnet.data.images import image_size
from privobfnet.data.manifest import build_manifest, multi_hot
from privobfnet.data.readers import read_split_list

VOC_CLASSES = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]
VOC_DIR = os.path.join("VOCdevkit", "VOC2012")


def parse_annotation(xml_path: str | os.PathLike) -> list[int]:
    """Sorted class indices of the objects in one Annotations XML file.

    Objects marked ``difficult`` count as present, as the WSSS literature does: PSA's and IRN's
    ``load_image_label_from_xml`` (the source of the cls_labels.npy that L2G and others reuse)
    take every class name in the XML and never look at ``difficult``.
    """
    if not os.path.isfile(xml_path):
        raise DataError(xml_path, "annotation missing for an id in the split list")
    try:
        tree = ET.parse(xml_path)
    except ET.ParseError as exc:
        raise DataError(xml_path, "not valid XML", str(exc)) from None
    indices = set()
    # only <object>/<name>: person objects also carry <part>/<name> (head, hand, foot)
    for obj in tree.getroot().findall("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise DataError(xml_path, "unknown VOC class name", repr(name))
        indices.add(VOC_CLASSES.index(name))
    if not indices:
        raise DataError(xml_path, "image has no labels (no <object> in the annotation)")
    return sorted(indices)


def mask_path_for(voc_dir: str, image_id: str) -> str | None:
    """SegmentationClassAug/<id>.png, else SegmentationClass/<id>.png, else None."""
    for folder in ("SegmentationClassAug", "SegmentationClass"):
        path = os.path.join(voc_dir, folder, f"{image_id}.png")
        if os.path.isfile(path):
            return path
    return None


def read_voc_split(root: str | os.PathLike, split: str, *, max_pixels: int) -> pd.DataFrame:
    """Manifest of one VOC 2012 split (train_aug, train, val, ...); VOC has no privacy scores."""
    voc_dir = os.path.join(root, VOC_DIR)
    split_file = os.path.join(voc_dir, "ImageSets", "Segmentation", f"{split}.txt")
    records = []
    for image_id in read_split_list(split_file):
        indices = parse_annotation(os.path.join(voc_dir, "Annotations", f"{image_id}.xml"))
        image_path = os.path.join(voc_dir, "JPEGImages", f"{image_id}.jpg")
        width, height = image_size(image_path, max_pixels=max_pixels)
        records.append(
            {
                "image_id": image_id,
                "path": image_path,
                "split": split,
                "labels": multi_hot(indices, len(VOC_CLASSES)),
                "privacy_score": None,
                "mask_path": mask_path_for(voc_dir, image_id),
                "width": width,
                "height": height,
            }
        )
    df = build_manifest(records, dataset="voc", class_names=VOC_CLASSES)
    df.attrs["skipped"] = 0
    df.attrs["source"] = split_file
    return df
