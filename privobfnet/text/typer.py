"""Each line's attribute scores from the chosen sources, and which source gave each.

``source``: ``none`` (no typing: text attributes fall back to the model's attention), ``recognizers``,
``learned`` (the model learned from text features alone) or ``both`` (the model learned with the
recognizers' scores as features; a recognizer's validated format, score >= ``VALIDATED`` 0.8,
counts whatever the model says: source ``recognizer``, else ``learned``). Entities map to
attributes by the data set's mask-type table (``privobfnet.data.mask_types.read_entity_map``): an
attribute's recognizer score is the highest of its entities' scores.

A line's type is its highest-scoring attribute when that score is at least ``DECISION`` (0.5);
else the line is ordinary text. Hiding is fail-safe and uses a lower threshold (the preference
``type_threshold``): a line is hidden when a chosen attribute scores at least that, so a line
uncertain between a chosen and an unchosen attribute is hidden.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

from privobfnet.text.learned import LearnedTyper
from privobfnet.text.lines import Line
from privobfnet.text.recognizers import Recognizers, recognize_lines

TypingSource = Literal["none", "recognizers", "learned", "both"]
TYPING_SOURCES = ("none", "recognizers", "learned", "both")
DECISION = 0.5
VALIDATED = 0.8  # a recognizer score from which a format is taken as found (both)


@dataclass(frozen=True, eq=False)
class TypedLine:
    """A line with its attribute scores and the source of each score."""

    line: Line
    scores: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # attribute -> "recognizer" | "learned"

    def type(self, threshold: float = DECISION) -> str | None:
        """The highest-scoring attribute if it reaches ``threshold``, else None (ordinary text)."""
        if not self.scores:
            return None
        best = max(self.scores, key=lambda a: self.scores[a])
        return best if self.scores[best] >= threshold else None


class TextTyper:
    """Types the lines of one image against a data set's text attributes."""

    def __init__(
        self,
        entity_map: dict[str, tuple[str, ...]],
        *,
        source: TypingSource,
        recognizers: Recognizers | None = None,
        learned: dict[str, LearnedTyper] | None = None,
    ):
        if source not in TYPING_SOURCES:
            raise ValueError(f"text typing source {source!r}: one of {', '.join(TYPING_SOURCES)}")
        model = None if source in ("none", "recognizers") else (learned or {}).get(source)
        if source in ("learned", "both") and model is None:
            raise ValueError(f"text typing {source!r} needs the learned line typer (none given)")
        if source in ("recognizers", "both") and recognizers is None:
            recognizers = Recognizers()
        self.entity_map, self.source = dict(entity_map), source
        self.recognizers, self.model = recognizers, model
        self.attributes = (
            tuple(entity_map)
            if model is None
            else tuple(dict.fromkeys([*entity_map, *model.attributes]))
        )

    def __call__(self, lines: Sequence[Line], image_height: int) -> list[TypedLine]:
        """One ``TypedLine`` per line, in order."""
        lines = list(lines)
        entities = (
            recognize_lines(self.recognizers, lines)
            if self.source in ("recognizers", "both")
            else None
        )
        recognized = [
            {
                attribute: max((found.get(e, 0.0) for e in wanted), default=0.0)
                for attribute, wanted in self.entity_map.items()
                if any(e in found for e in wanted)
            }
            for found in entities or [{} for _ in lines]
        ]
        if self.source == "recognizers":
            return [
                TypedLine(line, scores, dict.fromkeys(scores, "recognizer"))
                for line, scores in zip(lines, recognized)
            ]
        out = []
        for line, learned, own in zip(
            lines, self.model.scores(lines, image_height, entities), recognized
        ):
            scores, sources = dict(learned), dict.fromkeys(learned, "learned")
            for a, v in own.items():  # a validated format counts whatever the model says
                if v >= VALIDATED and v > scores.get(a, 0.0):
                    scores[a], sources[a] = v, "recognizer"
            out.append(TypedLine(line, scores, sources))
        return out
