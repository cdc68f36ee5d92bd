"""Backbones, heads, crops, the ensemble's training step and the inference API."""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest
import torch
import torchvision

from privobfnet.config import TrainConfig
from privobfnet.data.splits import Batch
from privobfnet.models.backbones import build_backbone
from privobfnet.models.backbones.resnet38 import (
    ResNet38,
    mxnet_to_torch_names,
    read_mxnet_params,
    resnet38_imagenet_state,
)
from privobfnet.models.backbones.tiny import TinyBackbone
from privobfnet.models.checkpoints import ensemble_checkpoint, load_ensemble
from privobfnet.models.crops import align_to_crops, cut_crops, sample_crop_boxes
from privobfnet.models.heads import (
    AttentionFeatures,
    gate_by_prior_masks,
    mask_type_index,
    prior_masks_at,
)
from privobfnet.training.ensemble import ensemble_losses, epoch_batches
from tests.fixtures.models import MASK_TYPES, tiny_model


# ---- backbones ---------------------------------------------------------------------------
def test_tiny_backbone_has_output_stride_8():
    net = TinyBackbone(width=8)
    assert net(torch.zeros(2, 3, 160, 96)).shape == (2, 32, 20, 12)
    assert net(torch.zeros(1, 3, 100, 100)).shape == (1, 32, 13, 13)  # padded, ceil(100 / 8)


def test_resnet38_layout_and_output_stride():
    net = ResNet38(width_divisor=16).eval()
    assert net(torch.zeros(1, 3, 64, 48)).shape == (1, 4096 // 16, 8, 6)
    keys = set(net.state_dict())
    for key in (
        "conv1a.weight",
        "b2.conv_branch1.weight",
        "b4_5.conv_branch2b1.weight",
        "b5.bn_branch2a.running_var",
        "b6.conv_branch2b2.weight",
        "b7.bn_branch2b2.weight",
        "bn7.running_mean",
    ):
        assert key in keys
    assert "b2_1.conv_branch1.weight" not in keys  # same shape: identity shortcut
    assert net.b5.conv_branch2a.dilation == (1, 1) and net.b5.conv_branch2b1.dilation == (2, 2)
    assert net.b7.conv_branch2b1.dilation == (4, 4)


def _mxnet_name(torch_key: str) -> str:
    """The MXNet name of a ResNet-38 state-dict key (the inverse of the converter, written out by hand)."""
    bn = {
        "weight": "gamma",
        "bias": "beta",
        "running_mean": "moving_mean",
        "running_var": "moving_var",
    }
    if torch_key == "conv1a.weight":
        return "arg:conv1a_weight"
    if torch_key.startswith("bn7."):
        field = torch_key[4:]
        return f"{'aux' if 'running' in field else 'arg'}:bn7_{bn[field]}"
    module, layer, field = torch_key.split(".")
    stage, _, index = module[1:].partition("_")
    block = f"{stage}b{index}" if index else f"{stage}a"
    kind, branch = layer.split("_", 1)
    if kind == "conv":
        return f"arg:res{block}_{branch}_weight"
    return f"{'aux' if 'running' in field else 'arg'}:bn{block}_{branch}_{bn[field]}"


def _write_mxnet(path, arrays: dict[str, np.ndarray], *, legacy: bool = False) -> None:
    """An MXNet NDArray list file (V2 or the pre-V1 legacy layout), float32 arrays."""
    with open(path, "wb") as f:
        f.write(struct.pack("<QQQ", 0x112, 0, len(arrays)))
        for array in arrays.values():
            if legacy:
                f.write(struct.pack(f"<I{array.ndim}I", array.ndim, *array.shape))
            else:
                f.write(struct.pack(f"<Iii{array.ndim}q", 0xF993FAC9, 0, array.ndim, *array.shape))
            f.write(struct.pack("<iii", 1, 0, 0))  # cpu context, float32
            f.write(array.astype("<f4").tobytes())
        f.write(struct.pack("<Q", len(arrays)))
        for name in arrays:
            f.write(struct.pack("<Q", len(name)) + name.encode())


@pytest.mark.parametrize("legacy", [False, True])
def test_resnet38_weights_read_from_the_mxnet_file(tmp_path, legacy):
    net = ResNet38(width_divisor=16)
    rng = np.random.default_rng(0)
    arrays = {
        _mxnet_name(k): rng.normal(size=tuple(v.shape)).astype(np.float32)
        for k, v in net.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    arrays["arg:linear1000_weight"] = np.zeros(
        (10, 4), np.float32
    )  # the ImageNet classifier is dropped
    _write_mxnet(tmp_path / "a1.params", arrays, legacy=legacy)
    state = resnet38_imagenet_state(tmp_path / "a1.params")
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    assert np.array_equal(
        net.b4_3.bn_branch2b1.running_mean.numpy(), arrays["aux:bn4b3_branch2b1_moving_mean"]
    )
    assert np.array_equal(net.bn7.bias.detach().numpy(), arrays["arg:bn7_beta"])
    assert read_mxnet_params(tmp_path / "a1.params")["arg:conv1a_weight"].shape == (4, 3, 3, 3)


def test_mxnet_names_refuse_an_unknown_parameter():
    with pytest.raises(ValueError, match="unrecognised"):
        mxnet_to_torch_names({"arg:fc9_weight": np.zeros(1, np.float32)})


def test_resnet50_loads_local_imagenet_weights_at_output_stride_8(tmp_path):
    reference = torchvision.models.resnet50(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet50.pth")
    net = build_backbone("resnet50", pretrained=str(tmp_path / "resnet50.pth")).train()
    assert torch.equal(net.layer3[0].conv2.weight, reference.layer3[0].conv2.weight)
    assert torch.equal(net.bn1.running_var, reference.bn1.running_var)
    assert (
        not net.bn1.training and not net.bn1.weight.requires_grad
    )  # BN frozen with ImageNet weights
    assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 2048, 8, 8)


def test_build_backbone_refuses_weights_that_do_not_fit(tmp_path):
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="do not fit"):
        build_backbone("resnet50", pretrained=str(tmp_path / "bad.pth"))
    with pytest.raises(ValueError, match="no ImageNet weights"):
        build_backbone("tiny", pretrained=str(tmp_path / "bad.pth"))


# ---- heads ---------------------------------------------------------------------------------
def test_mask_gate_scales_positive_evidence_only_and_leaves_unmasked_types():
    logits = torch.tensor([2.0, -1.0, 2.0, -1.0]).view(
        1, 4, 1, 1
    )  # human, human, none, none channels
    priors = prior_masks_at(torch.full((1, 1, 4, 4), 0.25), torch.zeros(1, 1, 4, 4), (1, 1))
    gated = gate_by_prior_masks(logits, priors, mask_type_index(["human", "human", "none", "none"]))
    assert gated.flatten().tolist() == [0.5, -1.0, 2.0, -1.0]
    with pytest.raises(ValueError, match="unknown prior type"):
        mask_type_index(["hair"])


def test_attention_features_are_zero_without_attention_and_weighted_means_with_it():
    pool = AttentionFeatures(3, 2).eval()
    features = torch.randn(1, 3, 2, 2)
    assert pool(features, torch.zeros(1, 1, 2, 2)).abs().sum() == 0
    attention = torch.zeros(1, 1, 2, 2)
    attention[0, 0, 1, 0] = 3.0
    reduced = pool.reduce(features)[0, :, 1, 0]
    torch.testing.assert_close(pool(features, attention)[0, 0], reduced * 3 / (3 + 1))


def test_model_outputs_and_mask_weighted_cams():
    model = tiny_model().eval()
    images, human, text = (
        torch.randn(2, 3, 64, 64),
        torch.zeros(2, 1, 64, 64),
        torch.zeros(2, 1, 64, 64),
    )
    human[:, :, :32] = 1.0  # top half is a person
    out = model(images, human, text)
    assert out.cam_logits.shape == (2, 4, 8, 8) and out.class_logits.shape == (2, 4)
    assert out.attribute_logits.shape == (2, 4) and out.privacy.shape == (2,)
    cams = model.cams(images, human, text)
    # signed gated logits: CAM inference averages the views before its one ReLU
    torch.testing.assert_close(cams, out.cam_logits)
    assert (cams < 0).any()
    torch.testing.assert_close(out.class_logits, out.cam_logits.mean(dim=(2, 3)))  # eq. 3's GAP
    positive = torch.relu(cams)  # only positive evidence is gated: no CAM outside its mask
    assert (
        positive[:, 1, 4:].sum() == 0 and positive[:, 2].sum() == 0
    )  # human outside people, text nowhere
    unweighted = tiny_model(use_mask_weighting=False).eval()
    assert torch.relu(unweighted.cams(images, human, text)[:, 2]).sum() > 0


def test_param_groups_split_backbone_from_new_layers():
    model = tiny_model()
    backbone, new = model.param_groups()
    assert {id(p) for p in backbone} == {id(p) for p in model.backbone.parameters()}
    assert id(model.cam_head.conv.weight) in {id(p) for p in new}
    assert len(backbone) + len(new) == len(list(model.parameters()))


# ---- crops ---------------------------------------------------------------------------------
def test_crop_boxes_stay_inside_and_l2g_starts_with_the_corners():
    boxes = sample_crop_boxes(3, 6, (160, 120), 64, generator=torch.Generator().manual_seed(0))
    assert boxes.shape == (3, 6, 4)
    assert (
        (boxes[..., :2] >= 0).all()
        and (boxes[..., 2] <= 120).all()
        and (boxes[..., 3] <= 160).all()
    )
    assert ((boxes[..., 2] - boxes[..., 0]) == 64).all()
    corners = sample_crop_boxes(
        1, 6, (160, 120), 64, generator=torch.Generator().manual_seed(0), corners=True
    )
    assert corners[
        0, :4
    ].tolist() == [  # L2G's order: top-left, bottom-left, top-right, bottom-right
        [0, 0, 64, 64],
        [0, 96, 64, 160],
        [56, 0, 120, 64],
        [56, 96, 120, 160],
    ]
    assert (corners[0, 4:, 0] < 56).all() and (corners[0, 4:, 1] < 96).all()  # [0, span)


def test_crops_and_roi_align_cut_the_same_place():
    images = torch.arange(2 * 160 * 160, dtype=torch.float32).view(2, 1, 160, 160)
    boxes = torch.tensor([[[16, 32, 128, 144]], [[0, 48, 112, 160]]])
    crops = cut_crops(images, boxes)
    assert torch.equal(crops[1, 0], images[1, 0, 48:160, 0:112])
    global_map = torch.randn(2, 3, 20, 20)
    aligned = align_to_crops(global_map, boxes, (160, 160), (14, 14))
    # stride-aligned boxes: every bin centre falls on a feature cell, roi_align is an exact slice
    torch.testing.assert_close(aligned[0], global_map[0, :, 4:18, 2:16])
    torch.testing.assert_close(aligned[1], global_map[1, :, 6:20, 0:14])


# ---- the training step ---------------------------------------------------------------------
def _train_cfg(**changes) -> TrainConfig:
    base = dict(
        backbone="tiny",
        pretrained=None,
        train_split="train",
        eval_split="test",
        tiny_width=8,
        input_size=64,
        crop_size=32,
        n_crops=2,
        batch_size=2,
        lr=0.01,
        weight_decay=5e-4,
        momentum=0.9,
        epochs=1,
        lr_decay_epoch=1,
        lr_decay_factor=0.1,
        loss_weights={"image": 10.0, "cropped": 1.0, "privacy": 1.0, "attribute": 1.0},
        use_cropped=True,
        use_privacy=True,
        use_attribute=True,
        use_mask_weighting=True,
        priors="coarse",
        crop_target="paper",
        l2g_bg_threshold=0.001,
        checkpoint_every=1,
        num_threads=0,
        device="cpu",
    )
    return TrainConfig(**{**base, **changes})


def _batch() -> Batch:
    g = torch.Generator().manual_seed(1)
    return Batch(
        torch.randn(2, 3, 64, 64, generator=g),
        torch.rand(2, 1, 64, 64, generator=g),
        torch.rand(2, 1, 64, 64, generator=g),
        torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 1]]),
        torch.tensor([0.7, float("nan")]),
    )


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({}, {"image", "cropped", "privacy", "attribute", "total"}),
        ({"crop_target": "l2g"}, {"image", "cropped", "privacy", "attribute", "total"}),
        ({"use_cropped": False}, {"cropped", "privacy", "attribute", "total"}),
        ({"use_privacy": False, "use_attribute": False}, {"image", "cropped", "total"}),
    ],
)
def test_ensemble_losses_follow_the_ablation_switches(changes, expected):
    cfg = _train_cfg(**changes)
    background = cfg.crop_target == "l2g"
    model_image, model_cropped = (
        tiny_model(background_channel=background),
        tiny_model(background_channel=background),
    )
    losses = ensemble_losses(
        model_image, model_cropped, _batch(), cfg, generator=torch.Generator().manual_seed(0)
    )
    assert set(losses) == expected
    weighted = sum(cfg.loss_weights[k] * v for k, v in losses.items() if k != "total")
    torch.testing.assert_close(losses["total"], weighted)


def test_the_l2g_image_loss_uses_the_saliency_map_when_the_batch_has_one():
    cfg = _train_cfg(crop_target="l2g")
    model_image, model_cropped = (
        tiny_model(background_channel=True),
        tiny_model(background_channel=True),
    )
    batch = _batch()

    def image_loss(saliency):
        with_map = dataclasses.replace(batch, saliency=saliency)
        return ensemble_losses(
            model_image, model_cropped, with_map, cfg, generator=torch.Generator().manual_seed(0)
        )["image"]

    nowhere, everywhere = torch.zeros(2, 1, 64, 64), torch.ones(2, 1, 64, 64)
    assert image_loss(None) != image_loss(nowhere)
    assert image_loss(nowhere) != image_loss(everywhere)


def test_image_loss_trains_model_image_only():
    model_image, model_cropped = tiny_model(), tiny_model()
    losses = ensemble_losses(
        model_image,
        model_cropped,
        _batch(),
        _train_cfg(),
        generator=torch.Generator().manual_seed(0),
    )
    losses["image"].backward()
    assert model_image.cam_head.conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model_cropped.parameters())  # knowledge flows crop -> image


def test_epoch_batches_are_a_seeded_permutation_without_the_last_partial_batch():
    first = epoch_batches(10, 3, seed=0, epoch=0)
    assert len(first) == 3 and all(len(b) == 3 for b in first)
    assert len({i for b in first for i in b}) == 9
    assert first == epoch_batches(10, 3, seed=0, epoch=0) != epoch_batches(10, 3, seed=0, epoch=1)


# ---- saving and inference ------------------------------------------------------------------
def test_load_ensemble_restores_both_networks(tmp_path):
    model_image, model_cropped = tiny_model(), tiny_model()
    meta = {
        "backbone": "tiny",
        "tiny_width": 8,
        "mask_types": MASK_TYPES,
        "background_channel": False,
        "use_mask_weighting": True,
        "input_size": 64,
        "class_names": list("abcd"),
    }
    torch.save(ensemble_checkpoint(model_image, model_cropped, meta), tmp_path / "final.pt")
    loaded_image, loaded_cropped, loaded_meta = load_ensemble(tmp_path / "final.pt")
    assert loaded_meta["class_names"] == list("abcd") and not loaded_image.training
    x, m = torch.randn(1, 3, 64, 64), torch.rand(1, 1, 64, 64)
    torch.testing.assert_close(loaded_image.cams(x, m, m), model_image.eval().cams(x, m, m))
    for a, b in zip(loaded_cropped.state_dict().values(), model_cropped.state_dict().values()):
        assert torch.equal(a, b)
