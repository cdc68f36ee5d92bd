"""Text attributes hidden by typed lines, without a model: the chosen lines become unreadable,
the unchosen private lines and the ordinary text stay; ``--hide-all pii``; the allow-list; the
report names the source; a non-text attribute without a model is refused by name."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from privobfnet.cli import main as cli_main
from privobfnet.data.mask_types import read_entity_map
from privobfnet.obfuscate import (
    Detectors,
    Obfuscator,
    Preferences,
    PreferencesError,
    TextReader,
    build_detectors,
)
from privobfnet.text.typer import TextTyper
from tests.fixtures.documents import DOCUMENT, reads, reads_any_part, render_document

ORDINARY = [
    ("ordinary", "Order No. 48213", "DejaVuSans.ttf", 20, 0),
    ("ordinary", "Open daily 9:00-18:00", "DejaVuSerif.ttf", 20, 0),
]


@pytest.fixture(scope="module")
def tools():
    detectors = build_detectors({"text", "lines"}, cache_dir="unused", text_limit_side=640)
    typer = TextTyper(read_entity_map("synthpriv"), source="recognizers")
    return detectors, typer, TextReader(limit_side=960)


@pytest.fixture(scope="module")
def document():
    return render_document(DOCUMENT + ORDINARY, size=(520, 420))


def hide(tools, document, prefs: Preferences):
    detectors, typer, reader = tools
    image, items = document
    outcome = Obfuscator(prefs, detectors=detectors, typer=typer).process(image)
    return outcome, [line.text for line in reader(outcome.image)], items


def test_only_the_chosen_text_attributes_become_unreadable(tools, document):
    chosen = {"a19_name_full", "a49_phone"}
    outcome, texts, items = hide(tools, document, Preferences(hide=tuple(chosen)))
    for item in items:
        if item.attribute in chosen:  # whole: the e-mail holds the surname
            assert not reads(texts, item.text), (item.text, texts)
        else:
            assert reads(texts, item.text), (item.text, texts)
    assert {r.source for r in outcome.hidden.regions} == chosen
    assert {r.by for r in outcome.hidden.regions} == {"recognizer"}


def test_hide_all_pii_leaves_ordinary_text(tools, document):
    _, texts, items = hide(tools, document, Preferences(hide_all=("pii",)))
    for item in items:
        if item.attribute == "ordinary":
            assert reads(texts, item.text), (item.text, texts)
        else:
            assert not reads(texts, item.text), (item.text, texts)


def test_allowed_strings_are_never_hidden(tools, document):
    prefs = Preferences(hide=("a19_name_full",), allow=("MARGARET OLSEN",))
    outcome, texts, _ = hide(tools, document, prefs)
    assert reads(texts, "Margaret Olsen") and not outcome.hidden.regions


def test_a_non_text_attribute_needs_the_model():
    typer = TextTyper(read_entity_map("synthpriv"), source="recognizers")
    with pytest.raises(PreferencesError, match="a9_face_complete needs a model"):
        Obfuscator(Preferences(hide=("a9_face_complete",)), detectors=Detectors(), typer=typer)
    with pytest.raises(PreferencesError, match="pii needs text typing"):
        Obfuscator(Preferences(hide_all=("pii",)), detectors=Detectors())


def test_the_cli_hides_text_attributes_without_a_model(tmp_path, document, capsys):
    image, _ = document
    Image.fromarray(image).save(tmp_path / "doc.png")
    status = cli_main(
        [
            "obfuscate",
            str(tmp_path / "doc.png"),
            "--out",
            str(tmp_path / "out"),
            "--hide",
            "a49_phone",
            "--no-progress",
            "--cache-dir",
            "unused",
        ]
    )
    assert status == 0
    assert "no --model: only text attributes are hidden" in capsys.readouterr().err
    texts = [
        line.text
        for line in TextReader(limit_side=960)(np.asarray(Image.open(tmp_path / "out/doc.png")))
    ]
    assert not reads_any_part(texts, "+44 20 7946 0958") and reads(texts, "Margaret Olsen")


def test_the_margin_stops_at_a_read_line_that_stays():
    from privobfnet.obfuscate import SnapRules, hidden_area
    from privobfnet.obfuscate.regions import Detections
    from privobfnet.text.lines import Line
    from privobfnet.text.typer import TypedLine

    def box(y0, y1):
        return np.array([[10, y0], [90, y0], [90, y1], [10, y1]], float)

    name, title = Line(box(30, 40), "Jane Doe", 0.9), Line(box(42, 52), "RECEIPT", 0.9)
    detections = Detections(
        text_lines=(name.polygon, title.polygon),
        lines=(name, title),
        typed=(
            TypedLine(name, {"a19_name_full": 0.9}, {"a19_name_full": "learned"}),
            TypedLine(title, {"a19_name_full": 0.1}, {"a19_name_full": "learned"}),
        ),
    )
    rules = SnapRules(min_overlap=0.1, dilate_px=0, margin_px=4)
    area = hidden_area({}, (), detections, (64, 100), rules, ("a19_name_full",))
    assert area.mask[30:40, 10:90].all()  # the hidden line, whole
    assert area.mask[26:30, 10:90].all()  # its margin where nothing stays
    assert not area.mask[43:52, 12:88].any()  # none of it on the line that stays
