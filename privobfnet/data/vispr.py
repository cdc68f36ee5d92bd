"""VISPR reader (Orekondy et al., ICCV 2017); SynthPriv is written in the same layout.

Layout under the data set root (e.g. ``data/raw/vispr``)::

    attributes.tsv                  idx, attribute_id, group, description (68 rows for VISPR)
    user_profiles.tsv               profile_id, then one column per attribute_id, ratings 1..5
    <split>.txt                     one image id per line (train2017.txt, ...)
    annotations/<split>/<id>.json   {"id", "image_path" (relative to the root), "labels"}
    images/...                      the images the JSON files point at
    SegmentationClass/<id>.png      optional VOC-palette class masks (value = attribute idx + 1)
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from privobfnet.data.errors import DataError
from privobfnet.data.images import image_size
from privobfnet.data.manifest import build_manifest, multi_hot
from privobfnet.data.privacy import Pooling, privacy_score
from privobfnet.data.readers import read_split_list, relative_inside

ATTRIBUTE_COLUMNS = ["idx", "attribute_id", "group", "description"]


@dataclass(frozen=True)
class Attribute:
    """One row of attributes.tsv."""

    idx: int
    attribute_id: str
    group: str
    description: str


def _read_tsv(path: str | os.PathLike) -> pd.DataFrame:
    if not os.path.isfile(path):
        raise DataError(path, "file missing")
    try:
        return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(path, "not a readable tab-separated file", str(exc)) from None


def read_attributes(path: str | os.PathLike) -> list[Attribute]:
    """Rows of attributes.tsv in file order; ``idx`` must run 0..n-1 and ids must be unique."""
    table = _read_tsv(path)
    missing = [c for c in ATTRIBUTE_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(path, "attributes.tsv lacks columns", ", ".join(missing))
    if table.empty:
        raise DataError(path, "attributes.tsv has no attributes")
    attributes = []
    for row_no, row in enumerate(table.itertuples(index=False)):
        if row.idx.strip() != str(row_no):
            detail = f"row {row_no} has idx {row.idx!r}"
            raise DataError(path, "attribute idx must run 0..n-1 in file order", detail)
        attributes.append(Attribute(row_no, row.attribute_id.strip(), row.group, row.description))
    ids = [a.attribute_id for a in attributes]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise DataError(path, "duplicate attribute id", ", ".join(duplicates))
    return attributes


def read_user_profiles(path: str | os.PathLike, attribute_ids: list[str]) -> np.ndarray:
    """(n_profiles, n_attributes) float ratings 1..5, columns in ``attribute_ids`` order."""
    table = _read_tsv(path)
    if "profile_id" not in table.columns:
        raise DataError(path, "user_profiles.tsv lacks the profile_id column")
    columns = [c for c in table.columns if c != "profile_id"]
    missing = [a for a in attribute_ids if a not in columns]
    if missing:
        raise DataError(path, "user_profiles.tsv lacks attribute columns", ", ".join(missing[:5]))
    unknown = [c for c in columns if c not in attribute_ids]
    if unknown:
        raise DataError(path, "user_profiles.tsv has columns not in attributes.tsv", ", ".join(unknown[:5]))
    if table.empty:
        raise DataError(path, "user_profiles.tsv has no profiles")
    ratings = table[attribute_ids].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isin(ratings, [1, 2, 3, 4, 5])  # NaN (not a number) is bad too
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        value = table[attribute_ids[col]].iloc[row]
        raise DataError(
            path,
            "preference out of range 1..5",
            f"profile {table['profile_id'].iloc[row]!r}, {attribute_ids[col]}: {value!r}",
        )
    return ratings


def read_annotation(path: str | os.PathLike, image_id: str) -> dict:
    """One per-image JSON, checked: an object with ``id`` (= file stem), ``image_path``, ``labels``."""
    if not os.path.isfile(path):
        raise DataError(path, "annotation missing for an id in the split list", image_id)
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, "not valid JSON", str(exc)) from None
    if not isinstance(record, dict):
        raise DataError(path, "annotation must be a JSON object", type(record).__name__)
    missing = [k for k in ("id", "image_path", "labels") if k not in record]
    if missing:
        raise DataError(path, "annotation lacks keys", ", ".join(missing))
    if str(record["id"]) != image_id:
        raise DataError(path, "annotation id differs from its file name", f"{record['id']!r} != {image_id!r}")
    if not isinstance(record["image_path"], str):
        raise DataError(path, "image_path must be a string", repr(record["image_path"]))
    labels = record["labels"]
    if not isinstance(labels, list) or not all(isinstance(a, str) for a in labels):
        raise DataError(path, "labels must be a list of attribute ids", repr(labels)[:80])
    if not labels:
        raise DataError(path, "image has no labels (a safe image is labelled a0_safe)")
    return record


def read_vispr_split(
    root: str | os.PathLike,
    split: str,
    *,
    dataset: str,
    max_pixels: int,
    pooling: Pooling = "max",
) -> pd.DataFrame:
    """Manifest of one split of a VISPR-layout data set (VISPR or SynthPriv, named by ``dataset``).

    Labels are multi-hot in attributes.tsv order; ``privacy_score`` pools each user's ratings over
    the image's attributes (``pooling``), averaged over users and rescaled to [0, 1]. Paths are
    ``root`` joined with the JSON's ``image_path``, so they are relative when ``root`` is.
    """
    attributes = read_attributes(os.path.join(root, "attributes.tsv"))
    attribute_ids = [a.attribute_id for a in attributes]
    index_of = {a.attribute_id: a.idx for a in attributes}
    preferences = read_user_profiles(os.path.join(root, "user_profiles.tsv"), attribute_ids)

    records = []
    for image_id in read_split_list(os.path.join(root, f"{split}.txt")):
        json_path = os.path.join(root, "annotations", split, f"{image_id}.json")
        record = read_annotation(json_path, image_id)
        unknown = [a for a in record["labels"] if a not in index_of]
        if unknown:
            raise DataError(json_path, "unknown attribute id in labels", ", ".join(unknown))
        indices = sorted({index_of[a] for a in record["labels"]})
        image_path = relative_inside(root, record["image_path"], json_path)
        width, height = image_size(image_path, max_pixels=max_pixels)
        mask_path = os.path.join(root, "SegmentationClass", f"{image_id}.png")
        records.append(
            {
                "image_id": image_id,
                "path": image_path,
                "split": split,
                "labels": multi_hot(indices, len(attribute_ids)),
                "privacy_score": privacy_score(indices, preferences, pooling=pooling),
                "mask_path": mask_path if os.path.isfile(mask_path) else None,
                "width": width,
                "height": height,
            }
        )
    df = build_manifest(records, dataset=dataset, class_names=attribute_ids)
    df.attrs["skipped"] = 0
    return df
