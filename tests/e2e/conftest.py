"""End-to-end tests: stages, DVC, Prefect and torchrun run for real on the ci profile. Every test
here is marked ``slow`` (``make test`` runs them, ``make test-fast`` skips them)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.slow)
