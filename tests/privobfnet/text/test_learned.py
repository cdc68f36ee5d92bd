"""The learned typer recovers which line carries a label from image labels alone, and its file."""

from __future__ import annotations

import numpy as np
import pytest

from privobfnet.text.learned import (
    N_FEATURES,
    LearnedTyper,
    choose_threshold,
    features,
    load_typers,
    save_typers,
    train_mil,
)
from privobfnet.text.lines import Line


def line(text: str, row: int) -> Line:
    y = 30.0 * row
    return Line(np.array([[0, y], [200, y], [200, y + 20], [0, y + 20]], float), text, 0.99)


def make_images(rng: np.random.Generator, n: int):
    """Images of 2-4 lines: a phone number (label 0), an e-mail (label 1), or ordinary words; the
    image's labels say which kinds it holds, never which line."""
    images, labels = [], []
    for _ in range(n):
        kinds = rng.integers(0, 3, int(rng.integers(2, 5)))
        texts = []
        for k in kinds:
            if k == 0:
                texts.append(
                    f"+1 {rng.integers(200, 999)} {rng.integers(100, 999)} {rng.integers(1000, 9999)}"
                )
            elif k == 1:
                texts.append(f"{'abcdefgh'[rng.integers(8)]}{rng.integers(10, 99)}@mail.example")
            else:
                texts.append(
                    ["SALE", "Welcome", "Fresh bread", "Exit", "Menu of the day"][rng.integers(5)]
                )
        images.append([line(t, i) for i, t in enumerate(texts)])
        labels.append([0 in kinds, 1 in kinds])
    return images, np.array(labels, np.float32)


def test_mil_types_lines_it_never_saw_labelled():
    rng = np.random.default_rng(0)
    train, train_labels = make_images(rng, 120)
    weights, bias = train_mil(
        [features(im, 200) for im in train], train_labels, epochs=150, lr=0.05, l2=1e-5, seed=0
    )
    draft = LearnedTyper(("phone", "email"), weights, bias, 0.5)
    val, val_labels = make_images(rng, 40)
    threshold, f1 = choose_threshold(
        [draft.probabilities(im, 200) for im in val], val_labels, np.arange(0.1, 0.95, 0.05)
    )
    assert f1 > 0.9
    typer = LearnedTyper(("phone", "email"), weights, bias, threshold)
    test = [line("+1 415 555 2671", 0), line("zz77@mail.example", 1), line("Fresh bread", 2)]
    scores = typer.scores(test, 200)
    assert scores[0]["phone"] > 0.5 > scores[0]["email"]
    assert scores[1]["email"] > 0.5 > scores[1]["phone"]
    assert max(scores[2].values()) < 0.5


def test_typer_file_round_trip_and_refusal(tmp_path):
    rng = np.random.default_rng(1)
    typer = LearnedTyper(
        ("a", "b"), rng.normal(size=(N_FEATURES, 2)).astype(np.float32), np.zeros(2), 0.3
    )
    both = LearnedTyper(("a", "b"), typer.weights, np.ones(2), 0.4, uses_entities=True)
    save_typers(tmp_path / "typer.npz", {"learned": typer, "both": both})
    back = load_typers(tmp_path / "typer.npz")
    assert back["learned"].attributes == ("a", "b") and back["learned"].threshold == 0.3
    assert back["both"].uses_entities and not back["learned"].uses_entities
    assert np.allclose(back["learned"].weights, typer.weights, atol=1e-2)  # stored as float16
    with pytest.raises(ValueError, match="entity scores"):
        back["both"].probabilities([line("x", 0)], 100)
    (tmp_path / "bad.npz").write_bytes(b"not a typer")
    with pytest.raises(ValueError, match="bad.npz: not a line typer file"):
        load_typers(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_typers(tmp_path / "missing.npz")


def test_entity_scores_are_features_of_the_both_model():
    lines = [line("hello", 0)]
    plain = features(lines, 100)[0]
    with_entities = features(lines, 100, [{"PERSON": 0.6}])[0]
    assert set(plain) < set(with_entities)


def test_no_line_anywhere_is_refused():
    with pytest.raises(ValueError, match="no image has a detected line"):
        train_mil([[], []], np.ones((2, 1)), epochs=1, lr=0.1, l2=0.0, seed=0)
