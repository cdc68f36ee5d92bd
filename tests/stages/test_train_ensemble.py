"""Tests of train_ensemble."""

from __future__ import annotations

import math

import pytest

from ops.params import resolve_profile
from privobfnet.config import parse_config
from privobfnet.evaluation.attributes import (
    finite,
)
from privobfnet.training.ensemble import lr_at
from tests.conftest import REPO


def test_lr_steps_down_at_the_decay_epoch_and_nan_becomes_null():
    cfg = parse_config(resolve_profile("default", REPO / "profiles"))
    t = cfg.train
    assert lr_at(t, t.lr_decay_epoch - 1) == t.lr
    assert lr_at(t, t.lr_decay_epoch) == pytest.approx(t.lr * t.lr_decay_factor)
    assert finite({"a": math.nan, "b": {"c": 1.0, "d": math.nan}}) == {
        "a": None,
        "b": {"c": 1.0, "d": None},
    }
