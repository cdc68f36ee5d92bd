"""Stage `weights`: which files a profile needs, and checking a hand-placed ResNet-38."""
from __future__ import annotations

import json

import pytest
import torch

from privobfnet.config import ConfigError, parse_config
from stages import weights
from ops.common import resolve_profile
from ops.fetch import ManualDownloadRequired
from tests.conftest import REPO, with_changes


def test_default_profile_needs_no_weights(ci_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary = weights.main(ci_config)
    assert summary["weights"] == []
    assert json.loads((tmp_path / "data/weights/weights.json").read_text())["files"] == 0


def test_paper_profile_needs_resnet38_and_resnet101():
    cfg = parse_config(resolve_profile("paper_voc", REPO / "profiles"))
    assert weights.required_weights(cfg) == ["resnet101", "resnet38"]


def test_pretrained_path_must_match_the_catalogue(ci_config):
    cfg = with_changes(ci_config, "train", backbone="resnet50", pretrained="elsewhere/r50.pth")
    with pytest.raises(ConfigError, match="should be data/weights/resnet50-imagenet.pth"):
        weights.required_weights(cfg)


def test_missing_resnet38_says_where_to_put_it(ci_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = with_changes(ci_config, "train", backbone="resnet38", pretrained="data/weights/resnet38_dict.pth")
    with pytest.raises(ManualDownloadRequired, match="data/weights/resnet38_dict.pth"):
        weights.main(cfg)
    (tmp_path / "data/weights").mkdir(parents=True, exist_ok=True)
    torch.save({"conv1a.weight": torch.zeros(1)}, tmp_path / "data/weights/resnet38_dict.pth")
    assert weights.main(cfg)["weights"] == ["resnet38"]
