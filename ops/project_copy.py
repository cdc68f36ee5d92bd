"""Copy a checkout's sources (tracked and untracked-but-not-ignored files) into a scratch project.

Used by tests and benches that run stages in a copy: params, lock, reports, checkpoints and data are
left behind, so the copy starts with nothing computed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

LEFT_BEHIND = ("params.yaml", "dvc.lock", "reports/", "checkpoints/", "data/")


def copy_sources(repo: Path, root: Path) -> None:
    """Copy every file git lists in ``repo`` (less ``LEFT_BEHIND``) to the same relative path under ``root``."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    for rel in filter(None, listed):
        if rel.startswith(LEFT_BEHIND) or not (repo / rel).is_file():
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, root / rel)
