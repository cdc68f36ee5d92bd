"""lines.parquet: round trip, and a file that breaks the schema or a row is refused by name."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from privobfnet.data.errors import DataError
from privobfnet.text.lines import Line, line_records, read_lines, write_lines


def square(x: float) -> np.ndarray:
    return np.array([[x, 0], [x + 10, 0], [x + 10, 5], [x, 5]], float)


def test_lines_round_trip(tmp_path):
    lines = [
        Line(
            square(0), "Anna Kowalski", 0.97, (("Anna", (0, 0, 4, 5)), ("Kowalski", (5, 0, 10, 5)))
        ),
        Line(square(20), "", 0.0),
    ]
    path = tmp_path / "lines.parquet"
    write_lines(path, line_records("b", lines[:1]) + line_records("a", lines))
    read = read_lines(path)
    assert list(read) == ["a", "b"]
    assert [line.text for line in read["a"]] == ["Anna Kowalski", ""]
    assert np.allclose(read["a"][1].polygon, square(20))
    assert read["b"][0].words == (
        ("Anna", (0.0, 0.0, 4.0, 5.0)),
        ("Kowalski", (5.0, 0.0, 10.0, 5.0)),
    )
    assert read["a"][0].box == (0.0, 0.0, 10.0, 5.0)


def test_a_foreign_schema_is_refused_with_the_file_named(tmp_path):
    path = tmp_path / "lines.parquet"
    pq.write_table(pa.table({"image_id": ["a"], "text": ["x"]}), path)
    with pytest.raises(DataError, match=f"{path}: schema differs"):
        read_lines(path)


def test_a_bad_row_is_refused_with_its_number(tmp_path):
    path = tmp_path / "lines.parquet"
    record = line_records("a", [Line(square(0), "x", 0.5)])[0]
    write_lines(path, [{**record, "polygon": [1.0, 2.0, 3.0]}])
    with pytest.raises(DataError, match="row 0: polygon"):
        read_lines(path)


def test_a_missing_file_says_which_stage_writes_it(tmp_path):
    with pytest.raises(DataError, match="masks stage"):
        read_lines(tmp_path / "lines.parquet")
