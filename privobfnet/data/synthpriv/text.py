"""SynthPriv text content: fictitious names, addresses, dates, e-mails, phones and shop words."""

from __future__ import annotations

import numpy as np

FIRST_NAMES = (
    "Anna",
    "Luis",
    "Mei",
    "Omar",
    "Sofia",
    "James",
    "Aisha",
    "Ivan",
    "Chloe",
    "Kenji",
    "Fatima",
    "Noah",
    "Priya",
    "Lucas",
    "Elena",
    "Tom",
    "Yara",
    "Diego",
    "Hana",
    "Peter",
    "Grace",
    "Malik",
)
LAST_NAMES = (
    "Kowalski",
    "Nguyen",
    "Garcia",
    "Smith",
    "Okafor",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Haddad",
    "Silva",
    "Novak",
    "Jensen",
    "Patel",
    "Dubois",
    "Murphy",
    "Cohen",
    "Larsen",
    "Moreau",
    "Ali",
)
STREETS = (
    "Elm Street",
    "Oak Avenue",
    "Maple Road",
    "High Street",
    "Station Road",
    "Lake Drive",
    "Park Lane",
    "Mill Way",
    "Rue Verte",
    "Hauptstr.",
    "Church Road",
    "Bay Street",
)
CITIES = (
    "Springfield",
    "Riverton",
    "Lakeside",
    "Oakvale",
    "Brookfield",
    "Fairview",
    "Kingsport",
    "Westhaven",
)
DOMAINS = ("mail.com", "inbox.org", "post.net", "example.com", "webmail.io", "home.eu")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
# non-private text: signs, prices, numbers (distractors; some share digits and words with private text)
SHOP_WORDS = (
    "SALE",
    "OPEN",
    "CAFE",
    "BAKERY",
    "EXIT",
    "PUSH",
    "PULL",
    "MENU",
    "FRESH",
    "50% OFF",
    "NO PARKING",
    "WELCOME",
    "HOTEL",
    "BOOKS",
    "PIZZA",
    "TAXI",
    "SUMMER",
    "LOBBY",
    "QUIET",
    "$4.99",
    "No. 27",
    "GATE 12",
    "FLOOR 3",
    "2 FOR 1",
    "Daily 9-18",
    "Tea & Cake",
    "STOP",
    "Room 204",
    "FREE WIFI",
    "Bus 42",
    "Since 1987",
    "Street Food",
)


def _pick(rng: np.random.Generator, options):
    return options[rng.integers(len(options))]


def person_name(rng: np.random.Generator) -> str:
    """A fictitious full name."""
    first, last = _pick(rng, FIRST_NAMES), _pick(rng, LAST_NAMES)
    style = rng.integers(3)
    if style == 0:
        return f"{first} {last}"
    if style == 1:
        return f"{last}, {first}"
    return f"{first} {chr(65 + rng.integers(26))}. {last}"


def _date(rng: np.random.Generator, year_range=(1950, 2024)) -> str:
    y, m, d = int(rng.integers(*year_range)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    style = rng.integers(4)
    if style == 0:
        return f"{y}-{m:02d}-{d:02d}"
    if style == 1:
        return f"{d:02d}/{m:02d}/{y}"
    if style == 2:
        return f"{d:02d}.{m:02d}.{y}"
    return f"{MONTHS[m - 1]} {d} {y}"


def private_text(rng: np.random.Generator, attribute: str) -> list[str]:
    """Text lines that disclose ``attribute`` (one of the text-mask attributes)."""
    if attribute == "a19_name_full":
        return [person_name(rng)]
    if attribute == "a24_birth_date":
        return [f"{_pick(rng, ('DOB', 'Born', 'Birth date:', 'b.'))} {_date(rng, (1940, 2015))}"]
    if attribute == "a49_phone":
        a, b, c = rng.integers(100, 1000), rng.integers(100, 1000), rng.integers(1000, 10000)
        return [
            _pick(rng, (f"+1 {a}-{b}-{c}", f"({a}) {b} {c}", f"Tel {a} {b} {c}", f"+44 {a}{b} {c}"))
        ]
    if attribute == "a74_address_current_complete":
        street = f"{rng.integers(1, 250)} {_pick(rng, STREETS)}"
        city = f"{_pick(rng, CITIES)} {rng.integers(10000, 99999)}"
        return [street, city] if rng.random() < 0.6 else [f"{street}, {city}"]
    if attribute == "a82_date_time":
        time = f"{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}"
        date = _date(rng, (2005, 2025))
        return [_pick(rng, (f"{date} {time}", date, f"{time}  {date}"))]
    if attribute == "a90_email":
        first, last = _pick(rng, FIRST_NAMES).lower(), _pick(rng, LAST_NAMES).lower()
        user = _pick(
            rng, (f"{first}.{last}", f"{first[0]}{last}", f"{first}{rng.integers(10, 99)}")
        )
        return [f"{user}@{_pick(rng, DOMAINS)}"]
    raise ValueError(f"no text generator for attribute {attribute!r}")
