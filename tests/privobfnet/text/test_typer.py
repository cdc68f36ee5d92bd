"""Sources combined per attribute, with the source named; entities mapped by the mask-type table."""

from __future__ import annotations

import numpy as np
import pytest

from privobfnet.data.errors import DataError
from privobfnet.data.mask_types import read_entity_map
from privobfnet.text.learned import N_FEATURES, LearnedTyper
from privobfnet.text.lines import Line
from privobfnet.text.typer import TextTyper


def line(text: str) -> Line:
    return Line(np.array([[0, 0], [100, 0], [100, 20], [0, 20]], float), text, 0.99)


def entity_typer(attributes: list[str], feature: str, logit: float) -> LearnedTyper:
    """A ``both`` model whose only weight is ``logit`` on one named feature (bias -5)."""
    import zlib

    weights = np.zeros((N_FEATURES, len(attributes)), np.float32)
    weights[zlib.crc32(feature.encode()) % N_FEATURES, :] = logit
    return LearnedTyper(tuple(attributes), weights, np.full(len(attributes), -5.0), 0.5, True)


def test_both_takes_the_model_and_the_validated_formats_and_names_the_source():
    emap = read_entity_map("synthpriv")
    learned = entity_typer(["a19_name_full"], "w:hello", 400.0)  # rows are 1/sqrt(nnz)-scaled
    typer = TextTyper(emap, source="both", learned={"both": learned})
    phone, word, other = typer(
        [line("Tel +44 20 7946 0958"), line("hello"), line("Open daily")], 100
    )
    assert phone.type() == "a49_phone" and phone.sources["a49_phone"] == "recognizer"
    assert word.type() == "a19_name_full" and word.sources["a19_name_full"] == "learned"
    assert other.type() is None
    recognizers = TextTyper(emap, source="recognizers")
    assert recognizers([line("hello")], 100)[0].type() is None


def test_learned_typing_needs_the_typer():
    with pytest.raises(ValueError, match="needs the learned line typer"):
        TextTyper(read_entity_map("synthpriv"), source="learned")


def test_vispr_maps_its_text_attributes_to_entities():
    emap = read_entity_map("vispr")
    assert emap["a20_name_first"] == ("PERSON",) and emap["a78_address_home_complete"] == (
        "ADDRESS",
    )
    assert read_entity_map("voc") == {}


def test_an_unknown_entity_is_refused(monkeypatch, tmp_path):
    import privobfnet.data.mask_types as mt

    bad = tmp_path / "x.tsv"
    bad.write_text("class_name\tmask_type\tentities\na19_name_full\ttext\tNAME\n")
    monkeypatch.setattr(mt, "mask_types_file", lambda dataset: bad)
    with pytest.raises(DataError, match="unknown entities"):
        mt.read_entity_map("x")
