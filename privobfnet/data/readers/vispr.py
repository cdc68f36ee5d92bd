"""VISPR reader (Orekondy et al., ICCV 2017); SynthPriv is written in the same layout.

Layout under the data set root (e.g. ``data/raw/vispr``)::

    attributes.tsv                  idx, attribute_id, group, description (68 rows for VISPR)
    user_studies/user_profiles.tsv  VPA's layout, no header: one row per attribute (67 for VISPR,
                                    none for a0_safe), fields = attribute id, description, then
                                    one float rating 1..5 per profile (30 profiles)
    <split>.txt                     one image id (or annotations/<split>/<id>.json) per line
    annotations/<split>/<id>.json   {"id", "image_path" (relative to the root), "labels"}
    images/...                      the images the JSON files point at
    SegmentationClass/<id>.png      optional VOC-palette class masks (value = attribute idx + 1)

Privacy score of an image (``privobfnet.data.privacy``): per profile the max of its ratings over
the image's attributes, then the mean over profiles or one profile (``data.privacy_profile``),
then ``data.privacy_rescale`` ((x - 1) / 4 to [0, 1] by default, VPA's (x - 2.5) / 2.5 optional).
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
from privobfnet.data.privacy import Pooling, Profile, Rescale, privacy_score
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


SAFE_ID = "a0_safe"
LOWEST_RATING = 1.0  # "not private": what a0_safe, which VPA's profiles have no row for, is given
RATING_RANGE = (1.0, 5.0)


def profiles_path(root: str | os.PathLike) -> str:
    """Where VPA's release keeps the profiles: ``<root>/user_studies/user_profiles.tsv``."""
    return os.path.join(root, "user_studies", "user_profiles.tsv")


def read_user_profiles(path: str | os.PathLike, attribute_ids: list[str]) -> np.ndarray:
    """(n_profiles, n_attributes) float ratings in 1..5, columns in ``attribute_ids`` order.

    VPA's layout: no header, one row per attribute, tab-separated: attribute id, a free-text
    description, then one float rating per profile (30 in VPA's release, printed like ``3.4``).
    Rows are joined to ``attribute_ids`` by id, never by position; ``a0_safe`` may lack a row
    (VPA's file has none) and then gets the lowest rating, 1. Every other attribute needs a row.
    """
    if not os.path.isfile(path):
        old = os.path.join(os.path.dirname(os.path.dirname(path)), "user_profiles.tsv")
        hint = (
            f"found {old}: VPA's release keeps it under user_studies/"
            if os.path.isfile(old)
            else ""
        )
        raise DataError(path, "file missing", hint)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(path, "not UTF-8 text", str(exc)) from None
    known = set(attribute_ids)
    rows: dict[str, np.ndarray] = {}
    n_profiles = None
    for row_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        attribute_id = fields[0].strip()
        if attribute_id not in known:
            rule = "unknown attribute id in user profiles (not in attributes.tsv)"
            raise DataError(path, rule, f"row {row_no}: {attribute_id!r}")
        if attribute_id in rows:
            raise DataError(
                path, "duplicate attribute row in user profiles", f"row {row_no}: {attribute_id!r}"
            )
        values = fields[2:]
        if not values:
            raise DataError(
                path, "user-profile row has no ratings", f"row {row_no}: {attribute_id!r}"
            )
        if n_profiles is None:
            n_profiles = len(values)
        elif len(values) != n_profiles:
            detail = (
                f"row {row_no} ({attribute_id}): {len(values)} ratings, earlier rows {n_profiles}"
            )
            raise DataError(path, "user-profile rows differ in their number of ratings", detail)
        ratings = np.empty(len(values), dtype=np.float64)
        for column, text in enumerate(values):
            try:
                value = float(text)
            except ValueError:
                value = float("nan")
            if not RATING_RANGE[0] <= value <= RATING_RANGE[1]:  # NaN fails too
                detail = f"row {row_no} ({attribute_id}), profile {column}: {text!r}"
                raise DataError(path, "preference out of range 1..5", detail)
            ratings[column] = value
        rows[attribute_id] = ratings
    if n_profiles is None:
        raise DataError(path, "user_profiles.tsv has no profiles")
    missing = [a for a in attribute_ids if a not in rows and a != SAFE_ID]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(
            path, "user_profiles.tsv lacks rows for attributes", ", ".join(missing[:5]) + more
        )
    lowest = np.full(n_profiles, LOWEST_RATING)
    return np.stack([rows.get(a, lowest) for a in attribute_ids], axis=1)


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
        raise DataError(
            path, "annotation id differs from its file name", f"{record['id']!r} != {image_id!r}"
        )
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
    profile: Profile = "mean",
    rescale: Rescale = "unit",
) -> pd.DataFrame:
    """Manifest of one split of a VISPR-layout data set (VISPR or SynthPriv, named by ``dataset``).

    Labels are multi-hot in attributes.tsv order; ``privacy_score`` pools each profile's ratings
    over the image's attributes (``pooling``), takes the mean over profiles or one ``profile``,
    then applies ``rescale`` (``privobfnet.data.privacy``). Paths are ``root`` joined with the
    JSON's ``image_path``, so they are relative when ``root`` is.
    """
    attributes = read_attributes(os.path.join(root, "attributes.tsv"))
    attribute_ids = [a.attribute_id for a in attributes]
    index_of = {a.attribute_id: a.idx for a in attributes}
    preferences_file = profiles_path(root)
    preferences = read_user_profiles(preferences_file, attribute_ids)
    if profile != "mean" and not 0 <= profile < preferences.shape[0]:
        detail = f"data.privacy_profile is {profile}; the file has profiles 0..{preferences.shape[0] - 1}"
        raise DataError(preferences_file, "privacy profile index out of range", detail)

    records = []
    split_file = os.path.join(root, f"{split}.txt")
    for image_id in read_split_list(split_file):
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
                "privacy_score": privacy_score(
                    indices, preferences, pooling=pooling, profile=profile, rescale=rescale
                ),
                "mask_path": mask_path if os.path.isfile(mask_path) else None,
                "width": width,
                "height": height,
            }
        )
    df = build_manifest(records, dataset=dataset, class_names=attribute_ids)
    df.attrs["skipped"] = 0
    df.attrs["source"] = split_file
    return df
