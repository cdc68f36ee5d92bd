"""Command (not a DVC stage): write params.yaml from a profile. `python -m tools.use_profile ci`.

params.yaml is the file DVC tracks, so after a switch `dvc params diff` shows exactly what changed
and `dvc repro` re-runs only the stages whose listed params changed.
"""

from __future__ import annotations

import sys

from ops.params import resolve_profile, write_params
from privobfnet.config import ConfigError


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(
            "usage: python -m tools.use_profile <default|ci|paper_vispr|paper_voc|paper_coco>",
            file=sys.stderr,
        )
        return 2
    try:
        params = resolve_profile(argv[0])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_params(params)
    print(f"params.yaml now holds profile {argv[0]!r}; run `make run` (or `dvc repro`).")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
