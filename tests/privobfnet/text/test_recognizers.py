"""The recognizers on strings written the way their formats are publicly described: phone numbers
from Ofcom's and NANPA's fictional ranges (+44 20 7946 0xxx, 555-01xx), the card networks' published
test number 4111 1111 1111 1111, ISO 8601 and day-first dates, postal addresses as the UK, German,
French and US postal services print them; ordinary text that looks like them stays untyped."""

from __future__ import annotations

import numpy as np
import pytest

from privobfnet.text.lines import Line
from privobfnet.text.recognizers import Recognizers, context_of, recognize_lines


@pytest.fixture(scope="module")
def recognizers():
    return Recognizers()


def best(scores: dict) -> str | None:
    return max(scores, key=scores.get) if scores else None


@pytest.mark.parametrize(
    ("text", "entity"),
    [
        ("Tel +44 20 7946 0958", "PHONE_NUMBER"),
        ("(201) 555-0123", "PHONE_NUMBER"),
        ("Mobile: 0161 496 0000", "PHONE_NUMBER"),
        ("jane.doe@example.com", "EMAIL_ADDRESS"),
        ("E-mail: m.muller@example.org", "EMAIL_ADDRESS"),
        ("4111 1111 1111 1111", "CREDIT_CARD"),
        ("DOB 1987-03-12", "DATE_OF_BIRTH"),
        ("Born 12.03.1987", "DATE_OF_BIRTH"),
        ("2021-06-01 14:05", "DATE_TIME"),
        ("Issued 03/11/2019", "DATE_TIME"),
        ("10 Downing Street", "ADDRESS"),
        ("Hauptstraße 5", "ADDRESS"),
        ("12 rue de la Paix", "ADDRESS"),
        ("1600 Pennsylvania Avenue NW", "ADDRESS"),
        ("10117 Berlin", "ADDRESS"),
        ("Name: Jane Doe", "PERSON"),
        ("Holder: J. Smith", "PERSON"),
    ],
)
def test_formats_and_context_words_type_a_line(recognizers, text, entity):
    scores = recognizers.line(text)
    assert best(scores) == entity and scores[entity] >= 0.5, scores


@pytest.mark.parametrize(
    "text",
    ["Room 204", "Order No. 48213", "Total 152.50", "Open 9:00-18:00", "SKU 4258-UE", "Since 1927"],
)
def test_ordinary_text_stays_untyped(recognizers, text):
    assert recognizers.line(text) == {}


def test_a_card_number_failing_the_luhn_check_is_no_card(recognizers):
    assert "CREDIT_CARD" not in recognizers.line("4111 1111 1111 1112")


def test_a_date_without_context_is_uncertain_between_birth_and_time_stamp(recognizers):
    scores = recognizers.line("1987-03-12")
    assert 0.35 <= scores["DATE_OF_BIRTH"] < 0.6 and 0.35 <= scores["DATE_TIME"] < 0.6


def test_a_label_on_the_line_above_is_context(recognizers):
    assert recognizers.line("1987-03-12", "Date of birth:")["DATE_OF_BIRTH"] >= 0.9
    assert recognizers.line("Lindenweg 7", "Ship to:")["ADDRESS"] >= 0.9


def box_line(text: str, x0: float, y0: float, x1: float, y1: float) -> Line:
    return Line(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float), text, 0.99)


def test_context_is_the_line_above_and_the_row_neighbours():
    lines = [
        box_line("Ship to:", 10, 10, 80, 30),
        box_line("Tel +44 20", 10, 40, 90, 60),
        box_line("7946 0958", 100, 40, 170, 60),
    ]
    ctx = context_of(lines)
    assert (
        ctx[1].above == "Ship to:" and ctx[1].right == "7946 0958" and ctx[2].left == "Tel +44 20"
    )


def test_a_piece_of_a_split_line_is_typed_by_its_row(recognizers):
    lines = [box_line("Tel +44 20", 10, 40, 90, 60), box_line("7946 0958", 100, 40, 170, 60)]
    scores = recognize_lines(recognizers, lines)
    assert best(scores[1]) == "PHONE_NUMBER"
