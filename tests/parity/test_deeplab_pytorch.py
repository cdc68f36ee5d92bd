"""Parity with DeepLabV2 as deeplab-pytorch trains it (kazuto1011/deeplab-pytorch 4219467, and L2G's
copy of it for the schedules): the project's functions against the reference code's outputs
(tests/fixtures/parity/make_fixtures.py wrote them)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from ops.params import resolve_profile
from privobfnet.config import parse_config
from privobfnet.crf import DEEPLAB_CRF, dense_crf
from privobfnet.models.backbones.resnet import MsraResNet
from privobfnet.models.deeplabv2 import MSC, DeepLabV2
from privobfnet.training.deeplab import msc_loss
from tests.conftest import REPO
from tests.fixtures.parity.make_fixtures import seeded_tensor  # the values the fixture's seeds name

FIXTURES = REPO / "tests" / "fixtures" / "parity"
REFERENCE = json.loads((FIXTURES / "reference.json").read_text())


def fixed_conv(f) -> nn.Conv2d:
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(f["weight"]))
        conv.bias.copy_(torch.from_numpy(f["bias"]))
    return conv


def test_msc_matches_libs_models_msc():
    f = np.load(FIXTURES / "deeplab_msc.npz")
    msc = MSC(fixed_conv(f), scales=list(f["scales"]))
    x = torch.from_numpy(f["x"])
    with torch.no_grad():
        train = msc.train()(x)
        fused = msc.eval()(x)
    assert len(train) == len([k for k in f.files if k.startswith("train_")])
    for i, out in enumerate(train):
        np.testing.assert_allclose(out.numpy(), f[f"train_{i}"], atol=1e-6)
    np.testing.assert_allclose(fused.numpy(), f["eval"], atol=1e-6)


def test_msc_loss_matches_the_training_loop_and_resize_labels():
    """The cross-entropy of each output against the labels resized by PIL nearest, summed."""
    f = np.load(FIXTURES / "deeplab_msc_loss.npz")
    logits = [torch.from_numpy(f[f"logits_{i}"]) for i in range(4)]
    loss = msc_loss(logits, torch.from_numpy(f["labels"]))
    assert loss.item() == pytest.approx(float(f["loss"]), rel=1e-6)


def test_test_time_crf_matches_dense_crf_with_the_configs_values():
    pytest.importorskip("pydensecrf", reason="the crf extra (make install has it)")
    for name, cfg in {
        **REFERENCE["deeplab_pytorch"]["configs"],
        **REFERENCE["l2g"]["deeplab_configs"],
    }.items():
        c = cfg["CRF"]
        assert DEEPLAB_CRF == dict(
            iterations=c["ITER_MAX"],
            pos_w=c["POS_W"],
            pos_xy_std=c["POS_XY_STD"],
            bi_w=c["BI_W"],
            bi_xy_std=c["BI_XY_STD"],
            bi_rgb_std=c["BI_RGB_STD"],
        ), name
    f = np.load(FIXTURES / "deeplab_crf.npz")
    q = dense_crf(f["image"], f["probs"], **DEEPLAB_CRF)
    np.testing.assert_allclose(q, f["q"], atol=1e-5)


@pytest.mark.parametrize(
    "profile, config", [("paper_voc", "voc12_resnet_dplv2"), ("paper_coco", "coco_resnet_dplv2")]
)
def test_paper_profiles_take_the_schedule_of_l2g_deeplab_configs(profile, config):
    d = parse_config(resolve_profile(profile, REPO / "profiles")).deeplab
    ref = REFERENCE["l2g"]["deeplab_configs"][config]
    solver = ref["SOLVER"]
    # a step sees BATCH_SIZE.TRAIN x ITER_SIZE images (gradients accumulated)
    assert d.batch_size == solver["BATCH_SIZE"]["TRAIN"] * solver["ITER_SIZE"]
    assert (d.iterations, d.lr, d.momentum, d.weight_decay, d.poly_power) == (
        solver["ITER_MAX"],
        solver["LR"],
        solver["MOMENTUM"],
        solver["WEIGHT_DECAY"],
        solver["POLY_POWER"],
    )
    assert d.scale_choices == ref["DATASET"]["SCALES"]
    assert d.crop_size == ref["IMAGE"]["SIZE"]["TRAIN"]
    assert d.crf


def test_msra_resnet_matches_deeplab_pytorch_on_a_caffe_input(tmp_path):
    """deeplab-pytorch's DeepLabV2 (its MSRA ResNet, one block per stage) on BGR minus the means
    against the project's MsraResNet loaded from the same state dict, fed RGB in [0, 1]."""
    spec = json.loads((FIXTURES / "deeplab_msra_resnet.json").read_text())
    f = np.load(FIXTURES / "deeplab_msra_resnet.npz")
    state = {t["key"]: seeded_tensor(t["shape"], t["seed"], t["kind"]) for t in spec["tensors"]}
    torch.save(state, tmp_path / "deeplab.pth")
    body = MsraResNet(freeze_bn=True, blocks=tuple(spec["n_blocks"]))
    rest = body.load_deeplab_pytorch(tmp_path / "deeplab.pth")
    model = DeepLabV2(body, body_channels=2048, n_classes=spec["n_classes"], freeze_bn=True)
    assert model.aspp.rates == tuple(spec["rates"])
    with torch.no_grad():
        for i, branch in enumerate(model.aspp.branches):
            branch.weight.copy_(rest[f"aspp.c{i}.weight"])
            branch.bias.copy_(rest[f"aspp.c{i}.bias"])
    images = torch.from_numpy(f["rgb"]).float() / 255
    with torch.no_grad():
        logits = model.eval()(images)
    assert logits.shape == f["logits"].shape
    np.testing.assert_allclose(
        logits.numpy(), f["logits"], rtol=1e-4, atol=1e-4 * np.abs(f["logits"]).max()
    )


def test_a_state_dict_that_is_not_deeplab_pytorch_s_is_named(tmp_path):
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "torchvision.pth")
    with pytest.raises(ValueError, match="torchvision.pth: not a deeplab-pytorch ResNet-101"):
        MsraResNet(blocks=(1, 1, 1, 1)).load_deeplab_pytorch(tmp_path / "torchvision.pth")
