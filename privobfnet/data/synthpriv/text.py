"""SynthPriv text content from Faker: names, addresses, dates, phones and e-mails in many locales
and formats, with and without label words ("Tel", "DOB", "Name:", "Ship to"), and ordinary text
that resembles them (prices, order and room numbers, product codes, opening hours, headlines
naming places) as distractors.

Everything is drawn from the numpy generator passed in: each call seeds a Faker instance from it,
so an image's text depends only on the data set's seed, its split and its index.
"""

from __future__ import annotations

import datetime
import functools
from typing import Optional

import numpy as np
from faker import Faker

# Latin-script locales: PP-OCRv6's recogniser and the bundled DejaVu fonts read and draw them
LOCALES = (
    "en_US",
    "en_GB",
    "en_CA",
    "en_AU",
    "en_IE",
    "de_DE",
    "fr_FR",
    "es_ES",
    "it_IT",
    "nl_NL",
    "pt_PT",
    "sv_SE",
    "pl_PL",
)
# the day the generated time stamps and ages are counted from (fixed: no dependence on the clock)
REFERENCE_DAY = datetime.date(2024, 6, 1)
# label words printed before a value, per attribute (drawn with a probability, as on real documents)
LABEL_WORDS = {
    "a19_name_full": ("Name:", "Name", "Holder:", "Passenger:", "Patient:", "Mr", "Ms", "Dr"),
    "a24_birth_date": ("DOB", "DOB:", "Born", "Birth date:", "Date of birth:", "Geb.", "b."),
    "a49_phone": ("Tel", "Tel.", "Tel:", "Phone:", "Mob.", "Mobile:", "Call", "T:"),
    "a82_date_time": ("Date:", "Issued", "Printed", "Time:", "Check-in", "Posted"),
    "a90_email": ("E-mail:", "Email:", "Mail:", "Contact:"),
}
ADDRESS_HEADERS = ("Ship to:", "Deliver to:", "Address:", "Billing address", "Home:", "From:")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
SIGN_WORDS = (
    "SALE",
    "OPEN",
    "CAFE",
    "BAKERY",
    "EXIT",
    "PUSH",
    "MENU",
    "FRESH",
    "50% OFF",
    "NO PARKING",
    "WELCOME",
    "HOTEL",
    "BOOKS",
    "PIZZA",
    "TAXI",
    "LOBBY",
    "FREE WIFI",
    "2 FOR 1",
    "Tea & Cake",
    "Street Food",
    "INVOICE",
    "RECEIPT",
    "BOARDING PASS",
    "THANK YOU",
)
DOCUMENT_TITLES = ("INVOICE", "RECEIPT", "ORDER", "BOARDING PASS", "DELIVERY NOTE", "MEMBER CARD")


@functools.lru_cache(maxsize=None)
def _faker(locale: str) -> Faker:
    """One Faker per locale, with its draws independent of the process's hash seed.

    Faker's it_IT address provider builds ``cities`` as ``list({...})``: a set's order follows
    PYTHONHASHSEED, so a seeded ``city()`` named a different town in every process and SynthPriv
    differed run to run. A list-valued ``cities`` is sorted here; the other word lists Faker draws
    from (for the methods this module calls) are tuples or lists written out in the source.
    """
    fake = Faker(locale)
    for provider in fake.providers:
        cities = getattr(provider, "cities", None)
        if isinstance(cities, list):
            provider.cities = sorted(cities)
    return fake


def faker(rng: np.random.Generator) -> Faker:
    """A Faker of a random locale, seeded from ``rng`` (deterministic)."""
    fake = _faker(LOCALES[rng.integers(len(LOCALES))])
    fake.seed_instance(int(rng.integers(2**31)))
    return fake


def _pick(rng: np.random.Generator, options):
    return options[rng.integers(len(options))]


def _labelled(rng: np.random.Generator, attribute: str, value: str, p: float) -> str:
    """``value``, with probability ``p`` after one of the attribute's label words."""
    return f"{_pick(rng, LABEL_WORDS[attribute])} {value}" if rng.random() < p else value


def person_name(rng: np.random.Generator) -> str:
    """A fictitious full name in one of several written forms."""
    fake = faker(rng)
    first, last = fake.first_name(), fake.last_name()
    style = rng.integers(5)
    if style == 0:
        return f"{first} {last}"
    if style == 1:
        return f"{last}, {first}"
    if style == 2:
        return f"{first[0]}. {last}"
    if style == 3:
        return f"{first} {fake.first_name()[0]}. {last}"
    return f"{first} {last}".upper()


def format_date(rng: np.random.Generator, day: datetime.date) -> str:
    """A date in one of the common written forms."""
    y, m, d = day.year, day.month, day.day
    style = rng.integers(6)
    if style == 0:
        return f"{y}-{m:02d}-{d:02d}"
    if style == 1:
        return f"{d:02d}/{m:02d}/{y}"
    if style == 2:
        return f"{d:02d}.{m:02d}.{y}"
    if style == 3:
        return f"{MONTHS[m - 1]} {d} {y}"
    if style == 4:
        return f"{m:02d}/{d:02d}/{y}"
    return f"{d} {MONTHS[m - 1].title()} {y}"


def _days_before(rng: np.random.Generator, low: int, high: int) -> datetime.date:
    return REFERENCE_DAY - datetime.timedelta(days=int(rng.integers(low, high)))


def private_text(rng: np.random.Generator, attribute: str) -> list[tuple[Optional[str], str]]:
    """Lines that disclose ``attribute`` (a text attribute): (attribute or None for a label line, text)."""
    fake = faker(rng)
    if attribute == "a19_name_full":
        return [(attribute, _labelled(rng, attribute, person_name(rng), 0.3))]
    if attribute == "a24_birth_date":
        day = _days_before(rng, 6 * 365, 90 * 365)
        return [(attribute, _labelled(rng, attribute, format_date(rng, day), 0.7))]
    if attribute == "a49_phone":
        return [(attribute, _labelled(rng, attribute, fake.phone_number(), 0.5))]
    if attribute == "a74_address_current_complete":
        lines = [line.strip() for line in fake.address().splitlines() if line.strip()]
        if rng.random() < 0.35:
            lines = [", ".join(lines)]
        out: list[tuple[Optional[str], str]] = [(attribute, line) for line in lines]
        if rng.random() < 0.35:
            out.insert(0, (None, _pick(rng, ADDRESS_HEADERS)))
        return out
    if attribute == "a82_date_time":
        day = _days_before(rng, 0, 15 * 365)
        time = f"{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}"
        date = format_date(rng, day)
        value = _pick(rng, (f"{date} {time}", date, f"{time}  {date}", f"{date}, {time}"))
        return [(attribute, _labelled(rng, attribute, value, 0.4))]
    if attribute == "a90_email":
        email = fake.free_email() if rng.random() < 0.5 else fake.email()
        return [(attribute, _labelled(rng, attribute, email, 0.3))]
    raise ValueError(f"no text generator for attribute {attribute!r}")


def ordinary_text(rng: np.random.Generator) -> str:
    """Non-private text, often resembling private text (digits, dates of no one, place names)."""
    fake = faker(rng)
    kind = rng.integers(12)
    if kind == 0:
        return (
            f"{_pick(rng, ('$', 'EUR ', '£', ''))}{rng.integers(1, 500)}.{rng.integers(0, 100):02d}"
        )
    if kind == 1:
        return f"{_pick(rng, ('Order No.', 'Order #', 'Ref.', 'Invoice'))} {rng.integers(1000, 999999)}"
    if kind == 2:
        return f"{_pick(rng, ('Room', 'Gate', 'Seat', 'Platform', 'Floor'))} {rng.integers(1, 450)}"
    if kind == 3:
        return f"SKU {rng.integers(100, 9999)}-{chr(65 + rng.integers(26))}{chr(65 + rng.integers(26))}"
    if kind == 4:
        a, b = int(rng.integers(6, 11)), int(rng.integers(16, 23))
        return f"{_pick(rng, ('Mon-Fri', 'Daily', 'Sat', 'Open'))} {a}:00-{b}:{_pick(rng, ('00', '30'))}"
    if kind == 5:
        return f"{_pick(rng, ('Welcome to', 'Visit', 'Greetings from', 'Made in'))} {fake.city()}"
    if kind == 6:
        return fake.company()
    if kind == 7:
        return f"Total {rng.integers(1, 300)}.{rng.integers(0, 100):02d}"
    if kind == 8:
        return f"Flight {chr(65 + rng.integers(26))}{chr(65 + rng.integers(26))} {rng.integers(100, 9999)}"
    if kind == 9:
        return f"Since {rng.integers(1890, 2020)}"
    if kind == 10:
        return f"{rng.integers(1, 12)} x {fake.word().title()}"
    return _pick(rng, SIGN_WORDS)
