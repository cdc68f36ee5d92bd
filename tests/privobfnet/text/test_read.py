"""Recognition of the detected lines: what a rendered page says, with word boxes on the line."""

from __future__ import annotations

from privobfnet.masks import build_backend
from tests.fixtures.documents import DOCUMENT, normalise, render_document


def test_the_text_backend_reads_every_line_it_detects():
    image, items = render_document()
    result = build_backend("text", "rapidocr", limit_side=640, cache_dir="unused", read_text=True)(
        image
    )
    assert len(result.lines) == len(result.polygons) >= len(DOCUMENT)
    read = normalise(" ".join(line.text for line in result.lines))
    assert all(normalise(item.text) in read for item in items), read
    for line in result.lines:
        assert 0 < line.score <= 1 and line.words
        x0, y0, x1, y1 = line.box
        for _, (a0, b0, a1, b1) in line.words:  # each word box lies on its line (2 px slack)
            assert x0 - 2 <= a0 < a1 <= x1 + 2 and y0 - 2 <= b0 < b1 <= y1 + 2


def test_without_reading_no_line_is_recognised():
    image, _ = render_document()
    result = build_backend("text", "rapidocr", limit_side=640, cache_dir="unused")(image)
    assert result.polygons and not result.lines
