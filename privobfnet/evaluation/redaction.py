"""What the redact stage measures: PII strings the OCR still reads, faces still found, pixels changed
outside what was meant to be hidden.

- **PII leak rate**: of the chosen attributes' strings the OCR reads in the original image, the
  share it still reads in the output (letters and digits compared, case and spacing ignored).
- **face leak rate**: of the faces the detector finds on the chosen attributes' ground truth in the
  original, the share it still finds there in the output.
- **over-redaction**: the share of pixels outside every chosen attribute's ground-truth region that
  the tool changed; **coverage**: the share of the ground-truth region it hid.
- **collateral**: of the strings the OCR reads in the original that were *not* chosen, the share it
  no longer reads in the output, separately for unchosen private strings and for ordinary text.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

FACE_ON_TRUTH_SHARE = (
    0.3  # a face box counts as on the ground truth when this share of it lies there
)


def normalise(text: str) -> str:
    """Lower-case letters and digits only, accents folded: OCR spacing and punctuation vary."""
    folded = unicodedata.normalize("NFKD", text.lower().translate(FOLD))
    return re.sub(r"[^0-9a-z]", "", "".join(c for c in folded if not unicodedata.combining(c)))


FOLD = str.maketrans({"ß": "ss", "ł": "l", "ø": "o", "æ": "ae", "œ": "oe", "đ": "d", "ı": "i"})


def strings_read(strings: Sequence[str], ocr_texts: Sequence[str]) -> list[bool]:
    """For each string, whether the OCR output holds it whole (normalised)."""
    joined = normalise(" ".join(ocr_texts))
    return [bool(normalise(s)) and normalise(s) in joined for s in strings]


def faces_on(boxes: Sequence[Sequence[float]], truth: np.ndarray) -> int:
    """How many face boxes lie on the (H, W) bool ground truth (by FACE_ON_TRUTH_SHARE)."""
    count = 0
    for box in boxes:
        x0, y0, x1, y1 = (max(0, int(round(v))) for v in box[:4])
        inside = truth[y0:y1, x0:x1]
        count += bool(inside.size) and float(inside.mean()) >= FACE_ON_TRUTH_SHARE
    return count


@dataclass
class RedactTally:
    """Counts over a split for one way of choosing what to hide (the model's, or --hide-all)."""

    strings_total: int = 0
    strings_readable_before: int = 0
    strings_leaked: int = 0
    faces_before: int = 0
    faces_leaked: int = 0
    outside_pixels: int = 0
    outside_changed: int = 0
    truth_pixels: int = 0
    truth_hidden: int = 0
    leaked_examples: list[str] = field(default_factory=list)
    # readable-before strings not chosen: [private, ordinary] x [readable before, changed]
    others_before: list[int] = field(default_factory=lambda: [0, 0])
    others_changed: list[int] = field(default_factory=lambda: [0, 0])

    def add(
        self,
        *,
        strings: Sequence[str],
        read_before: Sequence[bool],
        read_after: Sequence[bool],
        faces_before: int,
        faces_after: int,
        hidden: np.ndarray,
        truth: np.ndarray | None,
        valid: np.ndarray | None = None,
        others: Sequence[tuple[bool, bool, bool]] = (),
    ) -> None:
        """One image: its chosen strings and whether they were read, faces on the truth, the hidden
        mask; ``others``: each unchosen string as (private, read before, read after)."""
        for private, before, after in others:
            if before:
                self.others_before[0 if private else 1] += 1
                self.others_changed[0 if private else 1] += not after
        self.strings_total += len(strings)
        self.strings_readable_before += sum(read_before)
        leaked = [
            s for s, before, after in zip(strings, read_before, read_after) if before and after
        ]
        self.strings_leaked += len(leaked)
        self.leaked_examples += leaked[: max(0, 10 - len(self.leaked_examples))]
        self.faces_before += faces_before
        self.faces_leaked += min(faces_after, faces_before)
        if truth is not None:
            valid = np.ones_like(truth) if valid is None else valid
            outside = valid & ~truth
            self.outside_pixels += int(outside.sum())
            self.outside_changed += int((hidden & outside).sum())
            self.truth_pixels += int(truth.sum())
            self.truth_hidden += int((hidden & truth).sum())

    def metrics(self) -> dict:
        """Rates (None where nothing was measured) and the counts behind them."""

        def rate(a: int, b: int) -> float | None:
            return round(a / b, 5) if b else None

        return {
            "pii_leak_rate": rate(self.strings_leaked, self.strings_readable_before),
            "collateral_private": rate(self.others_changed[0], self.others_before[0]),
            "collateral_ordinary": rate(self.others_changed[1], self.others_before[1]),
            "face_leak_rate": rate(self.faces_leaked, self.faces_before),
            "over_redaction": rate(self.outside_changed, self.outside_pixels),
            "coverage": rate(self.truth_hidden, self.truth_pixels),
            "strings_total": self.strings_total,
            "strings_readable_before": self.strings_readable_before,
            "strings_leaked": self.strings_leaked,
            "faces_before": self.faces_before,
            "faces_leaked": self.faces_leaked,
            "leaked_examples": self.leaked_examples,
            "other_strings_readable_before": {
                "private": self.others_before[0],
                "ordinary": self.others_before[1],
            },
        }
