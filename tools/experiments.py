"""Print an experiment grid (``privobfnet.report.rows``) as ``dvc exp run`` overrides, one line each.

    python -m tools.experiments ablation     # -S train.use_cropped=false -S ... (one line a run)

The Makefile's ``ablation``, ``seeds`` and ``hypotheses`` targets read these lines, so the rows
are defined once, beside the report that reads them back.
"""

from __future__ import annotations

import json
import re
import sys

from privobfnet.report.rows import grid


def override(key: str, value) -> str:
    """One ``-S key=value`` in the YAML spelling DVC's ``--set-param`` reads (plain words unquoted,
    so that the line splits into shell words as it is)."""
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z_][\w.-]*", value):
        return f"-S {key}={value}"
    return f"-S {key}={json.dumps(value)}"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tools.experiments <ablation|seeds|hypotheses>", file=sys.stderr)
        return 2
    try:
        rows = grid(argv[0])
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for row in rows:
        print(" ".join(override(key, value) for key, value in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
