"""Parity with L2G (PengtaoJiang/L2G 0ec2504): the project's functions against outputs of L2G's
own code on fixed inputs (tests/fixtures/parity/make_fixtures.py wrote them)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ops.params import resolve_profile
from privobfnet.cams import label_map, normalise_maps, sum_views, view_input, views
from privobfnet.config import parse_config
from privobfnet.models.crops import sample_crop_boxes
from privobfnet.training.ensemble import ensemble_optimizer, lr_at
from privobfnet.training.losses import image_loss, l2g_crop_target
from tests.conftest import REPO
from tests.fixtures.parity.make_fixtures import L2GHead

FIXTURES = REPO / "tests" / "fixtures" / "parity"
REFERENCE = json.loads((FIXTURES / "reference.json").read_text())["l2g"]
PAPER_PROFILES = ("paper_voc", "paper_coco", "paper_vispr")


def paper(name: str = "paper_voc"):
    return parse_config(resolve_profile(name, REPO / "profiles"))


def test_cam_inference_matches_test_l2g_voc_multi_scale():
    """Signed views upsampled (bicubic), flipped back, averaged, one ReLU, max-normalised, the
    background threshold's argmax (scripts/test_l2g_voc.py)."""
    f = np.load(FIXTURES / "l2g_cam_inference.npz")
    n_views = len([k for k in f.files if k.startswith("view_")])
    size = tuple(int(x) for x in f["size"])
    present = f["labels"] > 1e-5
    n_classes = len(present)
    view_cams = [(torch.from_numpy(f[f"view_{i}"]), i % 2 == 1) for i in range(n_views)]
    maps = normalise_maps(sum_views(view_cams, size)[:n_classes], present)
    np.testing.assert_allclose(maps[present].numpy(), f["norm_cam"][:n_classes][present], atol=2e-5)
    assert not maps[~present].any()
    labels = label_map(maps, float(f["thr"]))
    assert np.array_equal(labels, f["pred"])
    # the fixture exercises what the order of ReLU and mean decides
    relu_first = sum_views([(torch.relu(c), flip) for c, flip in view_cams], size)
    other = label_map(normalise_maps(relu_first[:n_classes], present), float(f["thr"]))
    assert (other != f["pred"]).mean() > 0.01


def test_crop_target_and_eq2_match_the_training_step():
    """The local CAM -> L2G's target (ReLU, max-normalised, absent classes out, argmax only,
    > bg_thr, foreground x saliency, background x (1 - saliency)) and eq. 2's term: the MSE of
    the softmaxed global CAM cut at the boxes against it, x kd_weights (train_l2g_sal_voc.py)."""
    f = np.load(FIXTURES / "l2g_crop_target.npz")
    feat_local = torch.from_numpy(f["feat_local"])
    n_classes = feat_local.shape[1] - 1
    crop_labels = torch.from_numpy(f["label"]).repeat_interleave(int(f["crops_per_image"]), dim=0)
    saliency = torch.from_numpy(f["saliency"])
    target = l2g_crop_target(
        feat_local,
        crop_labels,
        saliency.expand(-1, n_classes, -1, -1),
        1.0 - saliency,
        bg_threshold=float(f["bg_thr"]),
    )
    np.testing.assert_allclose(target.numpy(), f["target"], atol=1e-6)
    assert (f["target"] > 0).any() and (f["target"][:, -1] > 0).any()
    loss = float(f["kd_weight"]) * image_loss(torch.from_numpy(f["aligned"]), target)
    assert loss.item() == pytest.approx(float(f["loss_kd"]), rel=1e-5)
    t = paper().train  # train_l2g_sal_voc.sh's --kd_weights=10 --bg_thr=0.001
    assert (t.loss_weights["image"], t.l2g_bg_threshold) == (10.0, 0.001)
    assert (float(f["kd_weight"]), float(f["bg_thr"])) == pytest.approx((10.0, 0.001))


def test_view_images_match_the_multi_scale_loader():
    """Each scale's input: the 8-bit image resized by PIL's bicubic filter, round(side * scale)
    (utils/LoadData.py VOCDatasetMSF_l2g)."""
    f = np.load(FIXTURES / "l2g_view_images.npz")
    image = torch.from_numpy(f["image"]).permute(2, 0, 1)[None].float()
    mask = torch.zeros(1, 1, *image.shape[-2:])
    sizes = [s for s, flipped in views(list(f["scales"]), tuple(image.shape[-2:])) if not flipped]
    for i, size in enumerate(sizes):
        reference = f[f"view_{i}"]
        assert size == reference.shape[:2]
        ours = view_input((image, mask, mask), size, flip=False)[0]
        assert np.array_equal(ours[0].permute(1, 2, 0).numpy().astype(np.uint8), reference)


def test_lr_decays_where_l2g_reduce_lr_does():
    """reduce_lr at each epoch's start with --decay_points='5', 10 epochs (train_l2g_sal_voc.sh)."""
    ref = REFERENCE["reduce_lr"]
    for name in PAPER_PROFILES:
        t = paper(name).train
        assert t.epochs == ref["epochs"]
        ours = [lr_at(t, epoch) / t.lr for epoch in range(t.epochs)]
        np.testing.assert_allclose(ours, ref["lr_per_epoch"])


def test_crop_boxes_follow_box_generation():
    """The four corners in L2G's order, then random offsets from [0, input - crop)."""
    for case in REFERENCE["box_generation"]:
        size, crop, n = case["input_size"], case["crop_size"], case["patch_size"]
        boxes = sample_crop_boxes(
            500, n, (size, size), crop, generator=torch.Generator().manual_seed(0), corners=True
        )
        assert (boxes[:, :4] == torch.tensor(case["corners"])).all()
        if case["random_min"] is not None:
            offsets = boxes[:, 4:, :2].reshape(-1, 2)
            assert offsets.min(0).values.tolist() == case["random_min"]
            assert offsets.max(0).values.tolist() == case["random_max"]  # never the far edge


class L2GShaped(L2GHead):
    """The module make_fixtures.py ran L2G's get_parameter_groups on, with ``param_groups`` as
    PrivObfNet's: (pretrained conv1, bn1, conv2; new fc8, f9), trainable tensors only."""

    def param_groups(self):
        backbone = [m for m in (self.conv1, self.bn1, self.conv2) for m in m.parameters()]
        new = [*self.fc8.parameters(), *self.f9.parameters()]
        return [p for p in backbone if p.requires_grad], [p for p in new if p.requires_grad]


def test_sgd_groups_match_l2g_get_parameter_groups():
    """Every parameter's lr multiple, weight decay, momentum and Nesterov flag as L2G's SGD, for
    both networks; the frozen batch norm in no group."""
    ref = REFERENCE["sgd"]
    t = paper().train
    nets = {"global": L2GShaped(), "local": L2GShaped()}
    optimizer = ensemble_optimizer(t, list(nets.values()))
    name_of = {id(p): f"{k}.{n}" for k, net in nets.items() for n, p in net.named_parameters()}
    ours = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            ours[name_of[id(p)]] = dict(
                lr_mult=group["lr_mult"],
                weight_decay=group["weight_decay"],
                momentum=group["momentum"],
                nesterov=group["nesterov"],
            )
    assert t.weight_decay == 5e-4  # the value make_fixtures.py gave L2G's args
    assert ours == ref["params"]
    assert sorted(set(name_of.values()) - set(ours)) == ref["not_optimised"]
