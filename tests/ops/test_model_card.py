"""The model card: its numbers come from the metrics it is given; docs/model_card.md is the card of
the committed default-profile metrics."""

from __future__ import annotations

from ops.model_card import (
    DESCRIPTION_LIMIT,
    DOCS_CARD,
    METRICS_FILE,
    fit_description,
    model_card,
    render_docs_card,
)


def metrics(val_map: float, constant_map: float) -> dict:
    return {
        "splits": ["val"],
        "attributes": {
            "val": {
                "map": val_map,
                "mean_accuracy": 0.9,
                "ap": {"a9_face_complete": 0.7, "a10_face_partial": 0.1, "a0_safe": 0.9},
            }
        },
        "privacy": {"val": {"l1": 0.12, "pearson": 0.5, "spearman": 0.4}},
        "baselines": {
            "val": {
                "constant_map": constant_map,
                "always_absent_mean_accuracy": 0.8,
                "mean_score_l1": 0.3,
            }
        },
    }


def card(values: dict) -> str:
    return model_card(
        values, profile="ci", dataset="synthpriv", input_size=48, backbone="tiny", source="a test"
    )


def test_the_card_takes_each_number_and_its_baseline_from_the_metrics():
    text = card(metrics(0.4321, 0.0456))
    assert "| attribute mAP | val | 0.432 | 0.046 (constant score) |" in text
    assert "| privacy score L1 (lower is better) | val | 0.120 | 0.300 (training mean) |" in text
    assert "| attribute mAP | test |" not in text  # no test split in these metrics
    assert "`a0_safe`, `a9_face_complete`, `a10_face_partial`" in text  # by attribute number
    assert "The lowest APs on val: `a10_face_partial` 0.100, `a9_face_complete` 0.700" in text
    assert card(metrics(0.6, 0.0456)) != text
    for heading in ("## Intended use", "## Data", "## Metrics", "## Known limits"):
        assert heading in text
    assert "Small faces are missed" in text and "Blur is reversible" in text


def test_docs_model_card_is_the_card_of_the_committed_metrics():
    assert DOCS_CARD.read_text() == render_docs_card(METRICS_FILE), (
        "docs/model_card.md is stale: run `.venv/bin/python -m ops.model_card`"
    )


def test_the_card_fits_the_registry_description_with_many_attributes():
    many = metrics(0.4, 0.1)
    many["attributes"]["val"]["ap"] = {f"a{i}_attribute_{i}": 0.5 for i in range(68)}
    text = card(many)
    assert "`a67_attribute_67`" not in text and "privobfnet attributes" in text
    assert len(text) < DESCRIPTION_LIMIT
    assert len(DOCS_CARD.read_text()) < DESCRIPTION_LIMIT
    cut = fit_description("line\n" * 2000)
    assert len(cut) <= DESCRIPTION_LIMIT and cut.endswith("docs/model_card.md)\n")
