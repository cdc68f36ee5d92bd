"""Typing a line by known formats and context words, without training.

Entities (presidio-analyzer's names where it has one): ``PERSON``, ``DATE_OF_BIRTH``,
``DATE_TIME``, ``PHONE_NUMBER``, ``ADDRESS``, ``EMAIL_ADDRESS``, ``CREDIT_CARD``. Sources:

- presidio-analyzer's pattern recognizers, called directly with no NLP engine (no spaCy model is
  loaded; the registry's English spaCy models are third-party re-uploads): ``PhoneRecognizer``
  (phonenumbers' matcher over the regions in ``PHONE_REGIONS``), ``CreditCardRecognizer`` (Luhn
  checked), ``EmailRecognizer``'s pattern (its top-level-domain check is skipped: tldextract would
  fetch the public suffix list over the network);
- date and time patterns, with context words telling a birth date from a time stamp: a date
  after a birth word ("DOB", "Born", ...) is ``DATE_OF_BIRTH``; with a time of day or a time-stamp
  word ("Issued", "Printed", ...) ``DATE_TIME``; with neither it is uncertain between the two
  (both scored), which the fail-safe hiding rule turns into hiding it for either;
- addresses: usaddress's street-address parse and a street-word / postcode pattern for European
  forms; names: probablepeople's person parse of a capitalised 2-4 word line, raised by a name
  label ("Name:", "Mr", ...).

The context of a line is its own text and the text of the nearest line above it (a label such as
"Ship to:" on its own line). Scores are in [0, 1]: 0.95 a format with its context word, ~0.8 a
validated format, ~0.5 a weak or ambiguous match.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from privobfnet.data.mask_types import ENTITIES
from privobfnet.text.lines import Line

__all__ = ["ENTITIES", "Context", "Recognizers", "context_of", "recognize_lines"]
PHONE_REGIONS = ("US", "GB", "CA", "AU", "IE", "DE", "FR", "ES", "IT", "NL", "PT", "SE", "PL")
BIRTH_WORDS = {"dob", "born", "birth", "birthday", "geb", "b", "nee", "ne", "naissance"}
STAMP_WORDS = {"issued", "printed", "posted", "time", "date", "checkin", "check", "sent", "at"}
PHONE_WORDS = {"tel", "phone", "telephone", "mob", "mobile", "cell", "call", "t", "fax", "ph"}
NAME_WORDS = {"name", "holder", "passenger", "patient", "mr", "ms", "mrs", "dr", "guest", "attn"}
ADDRESS_WORDS = {"ship", "deliver", "address", "billing", "home", "from", "to", "addr"}
MAIL_WORDS = {"email", "mail", "contact"}
# street words, whole words (with a house number on the line) and compound suffixes ("Femkestraat")
STREET_WORDS = (
    r"street|st|road|rd|avenue|ave|lane|ln|drive|dr|way|court|ct|place|pl|square|close|crescent|"
    r"boulevard|blvd|terrace|parade|highway|hwy|row|hill|gardens|extension|"
    r"stra(?:ss|ß|b)e|str|weg|gasse|platz|allee|ring|damm|"
    r"rue|chemin|impasse|allée|quai|"
    r"calle|avenida|plaza|paseo|camino|carrer|rua|travessa|largo|praça|"
    r"via|viale|piazza|vicolo|corso|contrada|"
    r"straat|laan|plein|gracht|dijk|kade|"
    r"gatan|vägen|gränd|torget|"
    r"ulica|ul|aleja|al|plac|osiedle"
)
# "straBe": how OCR often reads ß
STREET_SUFFIXES = r"stra(?:ss|ß|b)e|str|weg|gasse|platz|allee|straat|laan|gracht|dijk|gatan|vägen"
_STREET = re.compile(rf"(?i)\b({STREET_WORDS})\b\.?|[a-zäöüß]({STREET_SUFFIXES})\b\.?")
# a postcode before a place ("78876 Gelnhausen", "EX8 3XX Exeter", "02-931 Kwidzyn") or a place,
# comma, optional state and postcode ("Springfield, IL 62704")
_POSTCODE_PLACE = re.compile(
    r"(\b\d{4,5}\b|\b\d{2}-\d{3}\b|\b\d{4}-\d{3}\b|\b\d{4} ?[A-Z]{2}\b|"
    r"\b[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}\b|\b[A-Z]\d[A-Z] ?\d[A-Z]\d\b)"
    r"[ ,]+[A-Z][\w'-]+|[A-Z][\w'-]+, (?:[A-Z]{2,3},? )?\d{4,5}\b"
)
# a line that is a postcode alone (the other half of a split "1365 UT Retranchement")
_POSTCODE_ALONE = re.compile(
    r"\d{4} ?[A-Z]{2}|\d{2}-\d{3}|\d{4}-\d{3}|[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}|[A-Z]\d[A-Z] ?\d[A-Z]\d"
)
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = re.compile(
    rf"(?i)\b(\d{{4}}[-/.]\d{{1,2}}[-/.]\d{{1,2}}|\d{{1,2}}[-/.]\d{{1,2}}[-/.]\d{{2,4}}|"
    rf"{_MONTH} \d{{1,2}},? \d{{4}}|\d{{1,2}} {_MONTH},? \d{{4}}|{_MONTH} \d{{4}})\b"
)
_TIME = re.compile(r"\b([01]?\d|2[0-3]):[0-5]\d(:[0-5]\d)?\b")
_TIME_RANGE = re.compile(r"\b\d{1,2}:\d{2} ?[-–] ?\d{1,2}:\d{2}\b")
_EMAIL_LOOSE = re.compile(r"\S+@\S+")
_NAME_TOKEN = re.compile(r"^[^\W\d_][^\W\d_'.-]*[.,]?$|^[^\W\d_]\.$")
FUNCTION_WORDS = {"to", "in", "of", "the", "from", "and", "for", "at", "by", "on", "with", "a"}


def words(text: str) -> set[str]:
    """Lower-case letter tokens of a text (punctuation and hyphens dropped: "Check-in" -> checkin)."""
    return set(re.findall(r"[^\W\d_]+", text.lower().replace("-", "")))


class Recognizers:
    """Entity scores for each line of an image (built once: presidio's recognizers compile here)."""

    def __init__(self):
        logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer,
            EmailRecognizer,
            PhoneRecognizer,
        )

        class _Email(EmailRecognizer):
            def validate_result(self, pattern_text):  # no tldextract (network)
                return None

        self._phone = PhoneRecognizer(supported_regions=PHONE_REGIONS)
        self._card = CreditCardRecognizer()
        self._email = _Email()

    def _presidio(self, recognizer, text: str) -> list:
        return recognizer.analyze(text, entities=recognizer.supported_entities, nlp_artifacts=None)

    def line(self, text: str, context: str = "") -> dict[str, float]:
        """Entity -> score for one line's text; ``context``: the text of the line above."""
        scores: dict[str, float] = {}

        def give(entity: str, score: float) -> None:
            scores[entity] = max(scores.get(entity, 0.0), score)

        text = text.strip()
        if not text:
            return scores
        own, near = words(text), words(context)
        around = own | near
        digits = sum(c.isdigit() for c in text)
        if self._presidio(self._email, text):
            give("EMAIL_ADDRESS", 0.95)
        elif _EMAIL_LOOSE.search(text):
            give("EMAIL_ADDRESS", 0.8)
        elif around & MAIL_WORDS and "." in text and " " not in text.split(":")[-1].strip():
            give("EMAIL_ADDRESS", 0.5)
        if digits >= 12 and self._presidio(self._card, text):
            give("CREDIT_CARD", 0.95)
        date = _DATE.search(text)
        time = _TIME.search(text) and not _TIME_RANGE.search(text)
        if date:
            if own & BIRTH_WORDS or (near & BIRTH_WORDS and not time):
                give("DATE_OF_BIRTH", 0.95)
                give("DATE_TIME", 0.1)
            elif time or around & STAMP_WORDS:
                give("DATE_TIME", 0.95)
                give("DATE_OF_BIRTH", 0.1)
            else:
                give("DATE_TIME", 0.55)
                give("DATE_OF_BIRTH", 0.5)
        elif time:
            give("DATE_TIME", 0.45)
        if not date and digits >= 6 and "CREDIT_CARD" not in scores:
            phone = self._presidio(self._phone, text)
            covered = sum(r.end - r.start for r in phone)
            if phone and covered >= 0.5 * len(text.split(":")[-1].strip()):
                give("PHONE_NUMBER", 0.95 if own & PHONE_WORDS else 0.8)
            elif own & PHONE_WORDS and digits >= 7:
                give("PHONE_NUMBER", 0.9)
            elif phone or (digits >= 8 and re.fullmatch(r"[\d\s()+./x-]+", text)):
                give("PHONE_NUMBER", 0.5)
        self._address(text, own, near, give)
        self._person(text, own, near, digits, give)
        return scores

    @staticmethod
    def _address(text: str, own: set, near: set, give) -> None:
        street = bool(_STREET.search(text)) and bool(re.search(r"\d", text))
        place = bool(_POSTCODE_PLACE.search(text))
        parsed = False
        try:
            import usaddress

            tags, kind = usaddress.tag(text)
            parsed = kind == "Street Address" and {"AddressNumber", "StreetName"} <= set(tags)
            parsed = parsed and tags["AddressNumber"].isdigit()
            full = parsed and bool({"StreetNamePostType", "StreetNamePreType"} & set(tags))
        except Exception:  # usaddress raises on labels it sees twice
            full = False
        labelled = bool(near & ADDRESS_WORDS) or "address" in own
        if street or full:
            give("ADDRESS", 0.95 if labelled else 0.85)
        elif place or parsed:
            give("ADDRESS", 0.9 if labelled else 0.6)
        elif _POSTCODE_ALONE.fullmatch(text.strip()):
            give("ADDRESS", 0.5)

    @staticmethod
    def _person(text: str, own: set, near: set, digits: int, give) -> None:
        value = text.split(":", 1)[-1].strip() if ":" in text else text
        tokens = value.replace(",", " ").split()
        labelled = bool(own & NAME_WORDS)
        if labelled:
            tokens = [t for t in tokens if t.lower().strip(".:") not in NAME_WORDS]
        if (
            digits
            or not 2 <= len(tokens) <= 4
            or not all(_NAME_TOKEN.match(t) for t in tokens)
            or any(t.lower() in FUNCTION_WORDS for t in tokens)
            or not all(t[0].isupper() for t in tokens)
        ):
            return
        try:
            import probablepeople

            _, kind = probablepeople.tag(" ".join(tokens))
        except Exception:  # probablepeople raises on labels it sees twice
            kind = "Ambiguous"
        if kind == "Person":
            give("PERSON", 0.95 if labelled else 0.6)
        elif labelled:
            give("PERSON", 0.7)


@dataclass(frozen=True)
class Context:
    """The lines around a line: the nearest one above it (a label on its own line) and its
    neighbours on the same row (the other pieces of a line the detector split or an occluder cut)."""

    above: str = ""
    left: str = ""
    right: str = ""


def context_of(lines: Sequence[Line]) -> list[Context]:
    """Each line's ``Context`` from the line boxes."""
    boxes = [line.box for line in lines]
    out = []
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        height = max(1.0, y1 - y0)
        above, above_gap = "", np.inf
        left, left_gap, right, right_gap = "", np.inf, "", np.inf
        for j, (a0, b0, a1, b1) in enumerate(boxes):
            if j == i:
                continue
            other_h = max(1.0, b1 - b0)
            overlap_x = min(x1, a1) - max(x0, a0)
            overlap_y = min(y1, b1) - max(y0, b0)
            if overlap_x > 0 and (b0 + b1) / 2 < (y0 + y1) / 2:
                gap = y0 - b1
                if -0.5 * height <= gap <= 1.5 * height and gap < above_gap:
                    above, above_gap = lines[j].text, gap
            if overlap_y >= 0.5 * min(height, other_h):  # same row
                if a1 <= x0 + 0.3 * height and x0 - a1 < 2 * height and x0 - a1 < left_gap:
                    left, left_gap = lines[j].text, x0 - a1
                if a0 >= x1 - 0.3 * height and a0 - x1 < 2 * height and a0 - x1 < right_gap:
                    right, right_gap = lines[j].text, a0 - x1
        out.append(Context(above, left, right))
    return out


def recognize_lines(recognizers: Recognizers, lines: Sequence[Line]) -> list[dict[str, float]]:
    """Entity scores of each line of one image. A line the recognizers find nothing in but whose
    row (left neighbour, itself, right neighbour joined) holds a validated format (score >= 0.8)
    gets that at 0.8 of the score: it is a piece of a split line."""
    out = []
    for line, ctx in zip(lines, context_of(lines)):
        scores = recognizers.line(line.text, ctx.above)
        if not scores and (ctx.left or ctx.right) and line.text:
            row = " ".join(t for t in (ctx.left, line.text, ctx.right) if t)
            joined = recognizers.line(row, ctx.above)
            scores = {e: 0.8 * v for e, v in joined.items() if v >= 0.8}  # formats, not guesses
        out.append(scores)
    return out
