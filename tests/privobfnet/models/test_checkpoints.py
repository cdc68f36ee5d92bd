"""Tests of checkpoints."""

from __future__ import annotations

import torch

from privobfnet.models.checkpoints import deeplab_checkpoint, load_deeplab
from privobfnet.models.deeplabv2 import (
    build_deeplab,
)
from tests.fixtures.models import (
    deeplab_config,
)


def test_checkpoint_round_trip(tmp_path):
    cfg = deeplab_config()
    model = build_deeplab(cfg, n_classes=3)
    path = tmp_path / "final.pt"
    torch.save(
        deeplab_checkpoint(model, cfg, class_names=["background", "a", "b"], iteration=10), path
    )
    loaded, meta = load_deeplab(path, "cpu")
    assert meta["class_names"] == ["background", "a", "b"] and meta["config"]["tiny_width"] == 8
    assert not loaded.training
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(loaded(x), model.eval()(x))
