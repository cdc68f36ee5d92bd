"""A read text line and its stored form.

The masks stage writes ``<masks.out_dir>/lines.parquet``, one row per detected line, with the
schema ``LINES_SCHEMA``:

=============  ======================  =========================================================
column         type                    meaning
=============  ======================  =========================================================
image_id       string                  the manifest's image id
line           int32                   the line's index in the image (detection order)
polygon        list<float64>           x0, y0, x1, y1, ... of the detected polygon (image pixels)
text           string                  what recognition read ("" when nothing)
score          float32                 recognition confidence in [0, 1]
word_texts     list<string>            the line's words as recognition split them
word_boxes     list<list<float64>>     each word's x0, y0, x1, y1 (image pixels)
=============  ======================  =========================================================

An image with no line has no row. ``read_lines`` checks the schema and every row and names the
file in its errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from privobfnet.data.errors import DataError

LINES_FILE = "lines.parquet"
TYPED_LINES_FILE = (
    "typed_lines.parquet"  # the type_text stage's every line typed, under text.out_dir
)
WordBox = tuple[str, tuple[float, float, float, float]]


@dataclass(frozen=True, eq=False)  # an array inside
class Line:
    """One detected line: polygon (K, 2) x/y in the image's pixels, what it reads, word boxes."""

    polygon: np.ndarray
    text: str = ""
    score: float = 0.0
    words: tuple[WordBox, ...] = field(default=())

    @property
    def box(self) -> tuple[float, float, float, float]:
        """x0, y0, x1, y1 of the polygon."""
        points = np.asarray(self.polygon, np.float64).reshape(-1, 2)
        x0, y0 = points.min(0)
        x1, y1 = points.max(0)
        return float(x0), float(y0), float(x1), float(y1)


def lines_schema():
    """The pyarrow schema of lines.parquet."""
    import pyarrow as pa

    return pa.schema(
        [
            ("image_id", pa.string()),
            ("line", pa.int32()),
            ("polygon", pa.list_(pa.float64())),
            ("text", pa.string()),
            ("score", pa.float32()),
            ("word_texts", pa.list_(pa.string())),
            ("word_boxes", pa.list_(pa.list_(pa.float64()))),
        ]
    )


def line_records(image_id: str, lines: Sequence[Line]) -> list[dict]:
    """JSON-able rows of one image's lines (the masks stage's log; the parquet rows)."""
    return [
        {
            "image_id": image_id,
            "line": i,
            "polygon": [round(float(v), 2) for v in np.asarray(line.polygon).reshape(-1)],
            "text": line.text,
            "score": round(float(line.score), 4),
            "word_texts": [w for w, _ in line.words],
            "word_boxes": [[round(float(v), 2) for v in box] for _, box in line.words],
        }
        for i, line in enumerate(lines)
    ]


def line_from_record(record: dict) -> Line:
    """A row back to a ``Line``."""
    polygon = np.asarray(record["polygon"], np.float64).reshape(-1, 2)
    words = tuple(
        (str(t), tuple(float(v) for v in b))
        for t, b in zip(record["word_texts"], record["word_boxes"])
    )
    return Line(polygon, str(record["text"]), float(record["score"]), words)  # type: ignore[arg-type]


def write_lines(path: str | Path, records: Iterable[dict]) -> None:
    """lines.parquet from rows (sorted by image id and line), written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from privobfnet.io import atomic_path

    rows = sorted(records, key=lambda r: (r["image_id"], r["line"]))
    table = pa.Table.from_pylist(rows, schema=lines_schema())
    with atomic_path(Path(path)) as tmp:
        pq.write_table(table, tmp)


def read_lines(path: str | Path) -> dict[str, list[Line]]:
    """image id -> its lines in order, from lines.parquet; a wrong schema or row names the file."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), "no lines file (run the masks stage)", "missing")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow's errors for a torn or foreign file
        raise DataError(
            str(path), "not a readable parquet file", f"{type(exc).__name__}: {exc}"
        ) from None
    expected = lines_schema()
    if not table.schema.remove_metadata().equals(expected):
        raise DataError(
            str(path), "schema differs from privobfnet.text.lines.LINES_SCHEMA", str(table.schema)
        )
    out: dict[str, list[Line]] = {}
    for number, record in enumerate(table.to_pylist()):
        polygon = record["polygon"] or []
        if len(polygon) < 6 or len(polygon) % 2 or not np.all(np.isfinite(polygon)):
            raise DataError(str(path), f"row {number}: polygon needs >= 3 finite x/y points", "")
        if len(record["word_texts"] or []) != len(record["word_boxes"] or []) or any(
            len(b) != 4 for b in record["word_boxes"] or []
        ):
            raise DataError(str(path), f"row {number}: word texts and 4-number boxes differ", "")
        lines = out.setdefault(record["image_id"], [])
        if record["line"] != len(lines):
            raise DataError(
                str(path), f"row {number}: line {record['line']} out of order", record["image_id"]
            )
        lines.append(line_from_record(record))
    return out
