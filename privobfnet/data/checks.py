"""Per-row checks of a manifest: columns that the validate stage's expectations then test.

``row_checks`` opens the files a manifest names and records, for each row, what it found. It
never raises on a bad file: a broken image is a value (``decodes`` False plus the ``DataError``
text), so one report can list every offending file at once.

Three-valued columns (pandas ``boolean``): True = checked and good, False = checked and bad,
null = not checked. Null means "no mask for this row" for the mask columns, and "header read fine
but the full decode was skipped" for ``decodes`` (see ``decode_sample``). Expectations therefore
ignore nulls and fail on any False.

``split_overlaps`` is the one check across splits: which rows share their image id with another
split that the data set does not nest by design.
"""

from __future__ import annotations

import hashlib
import os
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from privobfnet.data.errors import DataError
from privobfnet.data.images import image_size, load_mask, load_rgb
from privobfnet.data.readers.vispr import (
    SAFE_ID,  # an image with nothing private: the label stands alone
)
from privobfnet.labels import IGNORE_LABEL

CHECK_COLUMNS = [
    "file_exists",
    "decodes",
    "decode_error",
    "size_matches_manifest",
    "size_error",
    "labels_length",
    "labels_binary",
    "n_labels",
    "safe_alone",
    "mask_exists",
    "mask_matches_image",
    "mask_error",
    "mask_classes_in_labels",
    "mask_label_error",
]


def decode_selection(image_ids: pd.Series, *, decode_sample: int, seed: int) -> np.ndarray:
    """Boolean mask of the rows to decode fully: all when ``decode_sample`` is 0 or >= the row count.

    Otherwise the ``decode_sample`` rows whose hash of (seed, image_id) is smallest: the choice
    depends on neither row order nor the other rows, so a re-run checks the same images.
    """
    n = len(image_ids)
    if decode_sample <= 0 or decode_sample >= n:
        return np.ones(n, dtype=bool)
    keys = [hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).hexdigest() for i in image_ids]
    chosen = np.zeros(n, dtype=bool)
    chosen[np.argsort(keys, kind="stable")[:decode_sample]] = True
    return chosen


def _is_missing(value: object) -> bool:
    return value is None or (not isinstance(value, (list, tuple, np.ndarray)) and pd.isna(value))


def _check_image(path: object, *, decode: bool, max_pixels: int, allow_grayscale: bool) -> dict:
    """file_exists, decodes, decode_error and the (width, height) found (None when unknown)."""
    if _is_missing(path):
        return dict(
            file_exists=False,
            decodes=False,
            decode_error="(no path): image path is null",
            size=None,
        )
    path = str(path)
    if not os.path.isfile(path):
        return dict(
            file_exists=False,
            decodes=False,
            decode_error=str(DataError(path, "file missing")),
            size=None,
        )
    try:
        if decode:
            height, width = load_rgb(
                path, max_pixels=max_pixels, allow_grayscale=allow_grayscale
            ).shape[:2]
            return dict(file_exists=True, decodes=True, decode_error=None, size=(width, height))
        size = image_size(path, max_pixels=max_pixels)
        return dict(file_exists=True, decodes=None, decode_error=None, size=size)
    except DataError as exc:
        return dict(file_exists=True, decodes=False, decode_error=str(exc), size=None)


def _check_mask(
    mask_path: object,
    image_wh: tuple[int, int],
    labels: set[int],
    *,
    decode: bool,
    class_names: list[str],
    max_pixels: int,
) -> dict:
    """mask_exists, mask_matches_image (size and values), mask_error, and whether every class in
    the mask is among the image's ``labels`` (mask_classes_in_labels, mask_label_error); nulls when
    there is no mask, and for the classes when it was not decoded."""
    unchecked = dict(mask_classes_in_labels=None, mask_label_error=None)
    if _is_missing(mask_path):
        return dict(mask_exists=None, mask_matches_image=None, mask_error=None, **unchecked)
    mask_path = str(mask_path)
    if not os.path.isfile(mask_path):
        error = str(DataError(mask_path, "file missing"))
        return dict(mask_exists=False, mask_matches_image=None, mask_error=error, **unchecked)
    classes = None
    try:
        if decode:
            mask = load_mask(mask_path, n_classes=len(class_names), max_pixels=max_pixels)
            height, width = mask.shape
            classes = {int(v) - 1 for v in np.unique(mask) if v not in (0, IGNORE_LABEL)}
        else:  # header only: the size is checked, the values are not
            width, height = image_size(mask_path, max_pixels=max_pixels, apply_exif=False)
    except DataError as exc:
        return dict(mask_exists=True, mask_matches_image=False, mask_error=str(exc), **unchecked)
    if classes is not None:
        stray = sorted(classes - labels)
        unchecked = dict(mask_classes_in_labels=not stray, mask_label_error=None)
        if stray:
            names = ", ".join(f"{class_names[c]} (value {c + 1})" for c in stray)
            detail = f"{names} painted but not labelled"
            unchecked["mask_label_error"] = str(
                DataError(mask_path, "mask class not in the image's labels", detail)
            )
    if (width, height) != tuple(image_wh):
        detail = f"mask is {width}x{height}, image is {image_wh[0]}x{image_wh[1]}"
        error = str(DataError(mask_path, "mask size differs from image size", detail))
        return dict(mask_exists=True, mask_matches_image=False, mask_error=error, **unchecked)
    return dict(mask_exists=True, mask_matches_image=True, mask_error=None, **unchecked)


def _check_labels(labels: object, class_names: list[str]) -> dict:
    """labels_length, labels_binary (every value 0 or 1), n_labels (non-zero entries) and
    safe_alone (a0_safe is not combined with another label; null where there is no a0_safe)."""
    values = [] if _is_missing(labels) else [int(v) for v in np.asarray(labels).ravel()]
    n_labels = sum(1 for v in values if v != 0)
    safe_alone = None
    if SAFE_ID in class_names and len(values) == len(class_names):
        safe_alone = not (values[class_names.index(SAFE_ID)] != 0 and n_labels > 1)
    return dict(
        labels_length=len(values),
        labels_binary=all(v in (0, 1) for v in values),
        n_labels=n_labels,
        safe_alone=safe_alone,
    )


def row_checks(
    df: pd.DataFrame,
    *,
    max_pixels: int,
    allow_grayscale: bool,
    decode_sample: int,
    seed: int,
    decode_images: bool = True,
) -> pd.DataFrame:
    """A copy of the manifest ``df`` with the ``CHECK_COLUMNS`` added (see the module docstring).

    Args:
        max_pixels: larger images and masks are refused (decompression-bomb guard).
        allow_grayscale: 8-bit grayscale/palette images count as decodable (converted to RGB).
        decode_sample: 0 decodes every row; N decodes a deterministic sample of N rows (the
            others get only a header read, and ``decodes`` null when that read succeeds).
        seed: picks the sample.
        decode_images: False reads headers only (``decodes`` null wherever the header is fine).
    """
    class_names = list(df.attrs["class_names"])
    if decode_images:
        decode = decode_selection(df["image_id"], decode_sample=decode_sample, seed=seed)
    else:
        decode = np.zeros(len(df), dtype=bool)
    rows = []
    for (path, mask_path, labels, width, height), full in zip(
        df[["path", "mask_path", "labels", "width", "height"]].itertuples(index=False, name=None),
        decode,
    ):
        image = _check_image(
            path, decode=bool(full), max_pixels=max_pixels, allow_grayscale=allow_grayscale
        )
        found = image.pop("size")
        expected = (int(width), int(height))
        image["size_matches_manifest"] = None if found is None else tuple(found) == expected
        image["size_error"] = None
        if image["size_matches_manifest"] is False:
            detail = f"file is {found[0]}x{found[1]}, manifest says {expected[0]}x{expected[1]}"
            image["size_error"] = str(
                DataError(path, "image size differs from the manifest", detail)
            )
        label_checks = _check_labels(labels, class_names)
        present = (
            set()
            if _is_missing(labels)
            else {i for i, v in enumerate(np.asarray(labels).ravel()) if v}
        )
        # compare the mask with the real image size when it could be read, else with the manifest's
        mask = _check_mask(
            mask_path,
            found or expected,
            present,
            decode=bool(full),
            class_names=class_names,
            max_pixels=max_pixels,
        )
        rows.append({**image, **label_checks, **mask})
    checks = pd.DataFrame.from_records(rows, columns=CHECK_COLUMNS, index=df.index)
    out = df.copy()
    out.attrs = dict(df.attrs)
    for column in ("file_exists", "labels_binary"):
        out[column] = checks[column].astype(bool)
    boolean = (
        "decodes",
        "size_matches_manifest",
        "safe_alone",
        "mask_exists",
        "mask_matches_image",
        "mask_classes_in_labels",
    )
    for column in boolean:
        out[column] = checks[column].astype("boolean")
    for column in ("labels_length", "n_labels"):
        out[column] = checks[column].astype("int64")
    for column in ("decode_error", "size_error", "mask_error", "mask_label_error"):
        out[column] = checks[column].astype("string")
    return out


def split_overlaps(
    manifests: Mapping[str, pd.DataFrame], *, allowed: Iterable[tuple[str, str]] = ()
) -> dict[str, pd.Series]:
    """Per split, per row: null, or a text naming the other splits that hold the same image id.

    ``allowed``: pairs of splits that may share ids by the data set's design (VOC's train lies
    inside SBD's train_aug); every other pair must be disjoint.
    """
    permitted = {frozenset(pair) for pair in allowed}
    where: dict[str, list[tuple[str, str]]] = {}  # image id -> [(split, path)]
    for split, df in manifests.items():
        for image_id, path in zip(df["image_id"], df["path"]):
            where.setdefault(str(image_id), []).append((split, str(path)))
    out = {}
    for split, df in manifests.items():
        texts = []
        for image_id in df["image_id"]:
            others = [
                (s, p)
                for s, p in where[str(image_id)]
                if s != split and frozenset((s, split)) not in permitted
            ]
            texts.append("; ".join(f"also in split {s!r} ({p})" for s, p in others) or None)
        out[split] = pd.Series(texts, index=df.index, dtype="string")
    return out
