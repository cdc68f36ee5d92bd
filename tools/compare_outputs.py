"""Command (not a DVC stage): are two pipeline runs' outputs the same? ``python -m tools.compare_outputs A B``.

A and B are two project folders that ran the pipeline (two clones, two machines). For each stage's
outputs (the files under ``data/manifests``, ``data/masks``, ``data/pseudo_labels``, the loss curves,
``reports/metrics``, the redaction examples and ``reports/tables.md``) it says whether they are
byte-identical, and for every metric that differs prints both values and the difference.
``reports/runs/`` (timings) is ignored.
Exit status 0 when everything is identical, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ops.tracking import flatten_numbers

COMPARED = {  # in pipeline order: the first stage whose outputs differ is where two runs part
    "validate": ["data/manifests", "reports/metrics/validate.json", "reports/validation.md"],
    "masks": ["data/masks", "reports/metrics/masks.json"],
    "type_text": ["data/text", "reports/metrics/type_text.json"],
    "train_ensemble": [
        "reports/plots/train_ensemble_loss.csv",
        "reports/metrics/train_ensemble.json",
    ],
    "pseudo_labels": [
        "data/pseudo_labels",
        "reports/plots/pseudo_labels_sweep.csv",
        "reports/metrics/pseudo_labels.json",
    ],
    "train_deeplab": ["reports/plots/train_deeplab_loss.csv", "reports/metrics/train_deeplab.json"],
    "evaluate": ["reports/metrics/evaluate.json"],
    "redact": ["reports/metrics/redact.json", "reports/figures/redact_examples.png"],
    "report": ["reports/tables.md"],
}


def files_under(root: Path, entry: str) -> dict[str, bytes]:
    """Relative path -> content of ``entry`` (a file or every file below a folder) in ``root``."""
    target = root / entry
    paths = [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in paths}


def stage_differences(a: Path, b: Path, entries: list[str]) -> list[str]:
    """The output files of one stage that differ between the runs (or exist in one only)."""
    left = {k: v for e in entries for k, v in files_under(a, e).items()}
    right = {k: v for e in entries for k, v in files_under(b, e).items()}
    return sorted(name for name in left.keys() | right.keys() if left.get(name) != right.get(name))


def metric_differences(a: Path, b: Path) -> list[tuple[str, float, float]]:
    """(stage.metric, A, B) for every numeric metric that differs."""
    rows = []
    for path in sorted((a / "reports/metrics").glob("*.json")):
        other = b / "reports/metrics" / path.name
        if not other.exists():
            continue
        left = flatten_numbers(json.loads(path.read_text()))
        right = flatten_numbers(json.loads(other.read_text()))
        rows += [
            (f"{path.stem}.{k}", left[k], right[k])
            for k in sorted(left.keys() & right.keys())
            if left[k] != right[k]
        ]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    args = parser.parse_args(argv)
    identical = True
    for stage, entries in COMPARED.items():
        differing = stage_differences(args.a, args.b, entries)
        identical &= not differing
        shown = ", ".join(differing[:4]) + (
            f" (+{len(differing) - 4} more)" if len(differing) > 4 else ""
        )
        print(
            f"{stage:15s} {'identical' if not differing else f'{len(differing)} files differ: {shown}'}"
        )
    rows = metric_differences(args.a, args.b)
    if rows:
        print("\n| metric | A | B | B - A |\n|---|---|---|---|")
        for name, left, right in rows:
            print(f"| {name} | {left:.6g} | {right:.6g} | {right - left:+.3g} |")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
