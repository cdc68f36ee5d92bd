"""Line typing against ground truth: each detected line's true attribute from the segmentation
ground truth, and per-attribute precision, recall and F1.

A line's true attribute is the typed attribute whose ground-truth pixels cover most of its polygon,
when they cover at least ``MIN_TRUTH_SHARE`` of it; otherwise the line is ordinary text (a sign, a
price, a label word). Lines are typed by ``TypedLine.type()`` (the highest score if >= 0.5). The
trivial baseline types every line as ordinary text: recall 0 and F1 0 for every attribute.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from privobfnet.masks.base import polygon_patch
from privobfnet.text.lines import Line

MIN_TRUTH_SHARE = 0.3


def line_truth(
    lines: Sequence[Line], labels: np.ndarray, values: dict[str, int]
) -> list[str | None]:
    """Each line's true attribute (``values``: attribute -> its value in ``labels``) or None."""
    by_value = {v: a for a, v in values.items()}
    out: list[str | None] = []
    for line in lines:
        (x0, y0, x1, y1), patch = polygon_patch(line.polygon, labels.shape)
        inside = labels[y0:y1, x0:x1][patch]
        typed = inside[np.isin(inside, list(by_value))]
        if not patch.sum() or len(typed) < MIN_TRUTH_SHARE * patch.sum():
            out.append(None)
            continue
        out.append(by_value[int(np.bincount(typed).argmax())])
    return out


def typing_scores(
    predicted: Sequence[str | None], truth: Sequence[str | None], attributes: Sequence[str]
) -> dict:
    """Per attribute precision, recall, F1 and support; macro F1 over attributes with support."""
    per: dict[str, dict] = {}
    for a in attributes:
        tp = sum(p == a and t == a for p, t in zip(predicted, truth))
        fp = sum(p == a and t != a for p, t in zip(predicted, truth))
        fn = sum(p != a and t == a for p, t in zip(predicted, truth))
        per[a] = {
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "recall": round(tp / (tp + fn), 4) if tp + fn else None,
            "f1": round(2 * tp / (2 * tp + fp + fn), 4) if tp + fp + fn else None,
            "support": tp + fn,
        }
    supported = [v["f1"] for v in per.values() if v["support"]]
    ordinary = sum(t is None for t in truth)
    return {
        "per_attribute": per,
        "macro_f1": round(float(np.mean(supported)), 4) if supported else None,
        "lines": len(truth),
        "private_lines": len(truth) - ordinary,
        # ordinary lines typed as some attribute: what typed hiding would change needlessly
        "ordinary_typed_private": sum(
            t is None and p is not None for p, t in zip(predicted, truth)
        ),
    }
