"""The mask-type table (paper Table 1): which prior mask weights each class's attention map.

One TSV per data set in ``privobfnet/data/mask_types/<dataset>.tsv``: ``#`` comment lines, a
header ``class_name<TAB>mask_type`` and optional named columns (``basis``: why; ``entities``: the
text entities a line of the class is typed as, comma-separated, ``-`` for none, see
``privobfnet.text``; ``refined``: the class's own prior with ``train.priors: refined``, one of
``privobfnet.priors.PRIOR_TYPES``: face, human, typed, text, none, no_region), then one row per
class. Types:

- ``human``: weighted by the human mask (faces, bodies, clothing, people together);
- ``text``: weighted by the OCR text mask (names, addresses, dates, handwriting);
- ``none``: un-masked (documents and objects such as credit cards and tickets);
- ``no_region``: un-masked like ``none``, and no pixel shows it (VISPR's ``a0_safe``): it stays an
  attribute and leaves segmentation (``privobfnet.labels``: pseudo-labels, DeepLab, mIoU).
"""

from __future__ import annotations

from importlib import resources
from typing import Sequence

from privobfnet.data.errors import DataError

MASK_TYPES = ("none", "human", "text", "no_region")
# the text entities a class's lines may be typed as (the ``entities`` column; privobfnet.text types
# lines by them): presidio-analyzer's names where it has one
ENTITIES = (
    "PERSON",
    "DATE_OF_BIRTH",
    "DATE_TIME",
    "PHONE_NUMBER",
    "ADDRESS",
    "EMAIL_ADDRESS",
    "CREDIT_CARD",
)


def mask_types_file(dataset: str):
    """The packaged TSV of ``dataset`` (a ``Traversable``; ``str()`` gives its path)."""
    return resources.files("privobfnet.data").joinpath("mask_types", f"{dataset}.tsv")


def read_mask_type_table(dataset: str) -> dict[str, str]:
    """class name -> mask type, in file order; every row checked."""
    return {name: row["mask_type"] for name, row in _read_rows(dataset).items()}


def read_entity_map(dataset: str) -> dict[str, tuple[str, ...]]:
    """class name -> the text entities its lines are typed as (classes with some only, file order).

    A table without an ``entities`` column maps nothing (VOC, COCO: no text classes).
    """
    out: dict[str, tuple[str, ...]] = {}
    for name, row in _read_rows(dataset).items():
        value = row.get("entities", "-").strip()
        entities = () if value in ("", "-") else tuple(e.strip() for e in value.split(","))
        unknown = [e for e in entities if e not in ENTITIES]
        if unknown:
            raise DataError(
                str(mask_types_file(dataset)),
                f"class {name}: unknown entities {unknown} (known: {', '.join(ENTITIES)})",
            )
        if entities:
            out[name] = entities
    return out


def _read_rows(dataset: str) -> dict[str, dict[str, str]]:
    """class name -> its row's named fields, in file order; every row checked."""
    path = mask_types_file(dataset)
    if not path.is_file():
        raise DataError(str(path), "no mask-type table for this data set", f"dataset {dataset!r}")
    lines = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    header = lines[0].split("\t") if lines else []
    if header[:2] != ["class_name", "mask_type"]:
        raise DataError(
            str(path), "header must start with class_name<TAB>mask_type", f"got {header}"
        )
    table: dict[str, dict[str, str]] = {}
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in MASK_TYPES:
            raise DataError(
                str(path), f"row {number}: expected class_name<TAB>one of {list(MASK_TYPES)}", line
            )
        if len(fields) > len(header):
            raise DataError(str(path), f"row {number}: more fields than the header names", line)
        if fields[0] in table:
            raise DataError(str(path), f"row {number}: class listed twice", fields[0])
        table[fields[0]] = dict(zip(header, fields))
    return table


def load_prior_types(dataset: str, class_names: Sequence[str], mode: str) -> list[str]:
    """The prior type of each class under ``mode`` ("coarse": the mask types; "refined": the
    ``refined`` column, the mask type where a table has no such column).

    A ``typed`` class needs entities to be typed by (else nothing would weigh it), a ``face`` or
    ``human`` class must be a human class and a ``typed`` one a text class: errors name the file.
    """
    coarse = load_mask_types(dataset, class_names)
    if mode == "coarse":
        return coarse
    rows, entities = _read_rows(dataset), read_entity_map(dataset)
    out = []
    for name, kind in zip(class_names, coarse):
        refined = rows[name].get("refined", kind).strip() or kind
        allowed = {
            "human": {"human", "face"},
            "text": {"text", "typed"},
            "none": {"none"},
            "no_region": {"no_region"},
        }[kind]
        if refined not in allowed:
            raise DataError(
                str(mask_types_file(dataset)),
                f"class {name}: refined prior {refined!r} does not refine mask type {kind!r}",
                f"allowed: {sorted(allowed)}",
            )
        if refined == "typed" and name not in entities:
            raise DataError(
                str(mask_types_file(dataset)),
                f"class {name}: refined prior 'typed' needs entities to type its lines by",
            )
        out.append(refined)
    return out


def load_mask_types(dataset: str, class_names: Sequence[str]) -> list[str]:
    """Mask type ("none" | "human" | "text" | "no_region") of each class, in ``class_names`` order.

    A class the table lacks is an error naming the table's file and the class.
    """
    table = read_mask_type_table(dataset)
    missing = [name for name in class_names if name not in table]
    if missing:
        raise DataError(
            str(mask_types_file(dataset)),
            "class missing from the mask-type table",
            ", ".join(missing),
        )
    return [table[name] for name in class_names]
