"""The one manifest schema every data set is read into (SynthPriv, VISPR, VOC, COCO).

A manifest is a pandas DataFrame, one row per image of one split, saved as parquet:

=============== ============ ======================================================
column          dtype        meaning
=============== ============ ======================================================
image_id        string       unique within the manifest
path            string       image file, relative to the project root (or absolute)
split           string       split name (train, val, train_aug, val2014, ...)
labels          list<uint8>  multi-hot over ``class_names`` (length n_classes)
privacy_score   float64      in [0, 1]; null where the data set has no scores
mask_path       string       VOC-style class PNG (0 background, i+1 = class i, 255
                             ignore); null where the data set has no masks
width, height   int64        image size from its header
=============== ============ ======================================================

``df.attrs`` carries ``dataset`` and ``class_names`` (pandas stores attrs in the parquet file);
the readers add ``skipped`` (images left out for lack of annotations) and ``source`` (the file
the split was read from: its list or annotation file).
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from privobfnet.data.errors import DataError

COLUMNS = ["image_id", "path", "split", "labels", "privacy_score", "mask_path", "width", "height"]


def multi_hot(indices: Iterable[int], n_classes: int) -> list[int]:
    """Class indices to a multi-hot list of 0/1."""
    vec = [0] * n_classes
    for i in indices:
        vec[i] = 1
    return vec


def build_manifest(
    records: Sequence[Mapping[str, object]], *, dataset: str, class_names: Sequence[str]
) -> pd.DataFrame:
    """Rows (dicts with the COLUMNS keys) to a manifest frame with the schema's dtypes."""
    df = pd.DataFrame.from_records(list(records), columns=COLUMNS)
    df["image_id"] = df["image_id"].astype("string")
    df["path"] = df["path"].astype("string")
    df["split"] = df["split"].astype("string")
    df["mask_path"] = df["mask_path"].astype("string")
    df["privacy_score"] = pd.to_numeric(df["privacy_score"], errors="raise").astype("float64")
    df["width"] = df["width"].astype("int64")
    df["height"] = df["height"].astype("int64")
    df["labels"] = [np.asarray(v, dtype=np.uint8).tolist() for v in df["labels"]]
    df.attrs["dataset"] = dataset
    df.attrs["class_names"] = list(class_names)
    return df


def write_manifest(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Save as parquet (the caller makes the write atomic)."""
    df.to_parquet(path, index=False)


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Load a manifest and check it has the schema's columns and attrs."""
    try:
        df = pd.read_parquet(path)
    except FileNotFoundError:
        raise DataError(path, "manifest missing") from None
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(path, "not a readable parquet manifest", str(exc)) from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(path, "manifest lacks columns", ", ".join(missing))
    if "class_names" not in df.attrs:
        raise DataError(path, "manifest lacks class_names in its metadata")
    df["labels"] = [list(map(int, v)) for v in df["labels"]]
    return df


def labels_matrix(df: pd.DataFrame) -> np.ndarray:
    """(N, n_classes) uint8 multi-hot matrix of a manifest."""
    n = len(df.attrs["class_names"])
    if len(df) == 0:
        return np.zeros((0, n), dtype=np.uint8)
    return np.stack([np.asarray(v, dtype=np.uint8) for v in df["labels"]])
