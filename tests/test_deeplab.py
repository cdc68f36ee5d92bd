"""DeepLabV2 model, its training helpers (poly lr, augmentation, batch order) and prediction."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torchvision

from privobfnet.config import DeeplabConfig
from privobfnet.models.deeplabv2 import (
    ASPP,
    ASPP_LR_MULT,
    build_deeplab,
    checkpoint_payload,
    load_deeplab,
    load_resnet101_weights,
    optimizer_param_groups,
    resnet101_body,
)
from privobfnet.segmentation import (
    PAD_RGB,
    batch_keys,
    images_to_tensor,
    poly_lr,
    predict_segmentation,
    random_scale_crop_flip,
    segmentation_loss,
)


def deeplab_config(**changes) -> DeeplabConfig:
    base = DeeplabConfig(
        backbone="tiny",
        pretrained=None,
        labels="pseudo",
        train_split="train",
        eval_split="val",
        tiny_width=8,
        scale_range=[0.7, 1.3],
        checkpoint_every=10,
        crop_size=32,
        batch_size=2,
        iterations=10,
        lr=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        poly_power=0.9,
        num_threads=0,
        device="cpu",
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    """A torchvision ResNet-101 state dict on disk (random weights standing in for ImageNet's)."""
    torch.manual_seed(1)
    reference = torchvision.models.resnet101(weights=None)
    with torch.no_grad():  # statistics unlike a fresh BN's, so loading them is visible
        reference.bn1.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("weights") / "resnet101-imagenet.pth"
    torch.save(reference.state_dict(), path)
    return path, reference


@pytest.fixture(scope="module")
def pretrained_deeplab(imagenet_file):
    """DeepLabV2-ResNet-101 built from the weights file (building one takes seconds, so shared)."""
    return build_deeplab(
        deeplab_config(backbone="resnet101", pretrained=str(imagenet_file[0])), n_classes=4
    )


# ---- model -------------------------------------------------------------------------------------
def test_aspp_has_four_dilated_branches_whose_outputs_are_summed():
    torch.manual_seed(0)
    aspp = ASPP(6, 3)
    assert [b.dilation for b in aspp.branches] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    assert [b.padding for b in aspp.branches] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    assert all(b.kernel_size == (3, 3) for b in aspp.branches)
    x = torch.randn(2, 6, 9, 11)
    out = aspp(x)
    assert out.shape == (2, 3, 9, 11)
    torch.testing.assert_close(out, sum(b(x) for b in aspp.branches))
    # a single pixel's response reaches exactly +-rate away, nowhere in between (dilated, not dense)
    impulse = torch.zeros(1, 6, 61, 61)
    impulse[0, :, 30, 30] = 1.0
    with torch.no_grad():
        for b in aspp.branches:
            b.bias.zero_()
        touched = aspp(impulse).abs().sum(dim=(0, 1)) > 0
    rows = sorted(set(torch.nonzero(touched)[:, 0].tolist()))
    assert rows == sorted({30 + s * r for r in (6, 12, 18, 24) for s in (-1, 0, 1)})


@pytest.mark.parametrize("height,width", [(64, 96), (65, 71)])
def test_tiny_deeplab_has_output_stride_8(height, width):
    model = build_deeplab(deeplab_config(), n_classes=5).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, height, width))
    assert out.shape == (2, 5, -(-height // 8), -(-width // 8))


def test_resnet101_variant_builds_dilated_and_runs_without_weights():
    model = build_deeplab(deeplab_config(backbone="resnet101"), n_classes=4).eval()
    body = model.body
    assert body.layer3[0].conv2.stride == (1, 1) and body.layer3[1].conv2.dilation == (2, 2)
    assert body.layer4[0].conv2.stride == (1, 1) and body.layer4[1].conv2.dilation == (4, 4)
    assert model.aspp.branches[0].in_channels == 2048
    with torch.no_grad():
        out = model(torch.rand(1, 3, 33, 41))
    assert out.shape == (1, 4, 5, 6)  # ceil(33 / 8), ceil(41 / 8)
    # no ImageNet statistics to keep: batch norm must learn, or 101 layers go unnormalised
    assert not model.freeze_bn and all(
        p.requires_grad for bn in model.batch_norms() for p in bn.parameters()
    )


def test_resnet101_loads_imagenet_weights_from_a_local_file(imagenet_file, pretrained_deeplab):
    path, reference = imagenet_file
    body = pretrained_deeplab.body
    torch.testing.assert_close(
        body.layer4[2].conv3.weight, reference.layer4[2].conv3.weight, rtol=0, atol=0
    )
    torch.testing.assert_close(body.bn1.running_var, reference.bn1.running_var, rtol=0, atol=0)
    broken = {k: v for k, v in reference.state_dict().items() if not k.startswith("layer3.5.")}
    broken_path = path.with_name("broken.pth")
    torch.save(broken, broken_path)
    with pytest.raises(
        RuntimeError, match="layer3.5"
    ):  # a partial file is refused, not half-loaded
        load_resnet101_weights(resnet101_body(), broken_path)


def test_tiny_backbone_refuses_pretrained_weights():
    with pytest.raises(ValueError, match="from scratch"):
        build_deeplab(deeplab_config(pretrained="data/weights/x.pth"), n_classes=3)


def test_pretrained_resnet101_batch_norm_is_frozen_and_tiny_batch_norm_learns(pretrained_deeplab):
    model = pretrained_deeplab.train()
    bns = model.batch_norms()
    assert bns and all(not bn.training for bn in bns) and model.aspp.training
    assert all(not p.requires_grad for bn in bns for p in bn.parameters())
    before = bns[0].running_mean.clone()
    model(torch.rand(2, 3, 24, 24) * 5)  # a train-mode forward must not touch the frozen statistics
    torch.testing.assert_close(bns[0].running_mean, before, rtol=0, atol=0)
    grouped = {id(p) for g in optimizer_param_groups(model, weight_decay=0.0) for p in g["params"]}
    assert not grouped & {id(p) for bn in bns for p in bn.parameters()}

    tiny = build_deeplab(deeplab_config(), n_classes=3).train()
    tiny_bn = tiny.batch_norms()[0]
    assert tiny_bn.training and tiny_bn.weight.requires_grad
    tiny(torch.rand(2, 3, 24, 24))
    assert tiny_bn.running_mean.abs().sum() > 0


def test_param_groups_give_the_aspp_ten_times_the_rate():
    model = build_deeplab(deeplab_config(), n_classes=3)
    body, head = optimizer_param_groups(model, weight_decay=1e-4)
    assert body["lr_mult"] == 1.0 and head["lr_mult"] == ASPP_LR_MULT == 10.0
    assert {id(p) for p in head["params"]} == {id(p) for p in model.aspp.parameters()}
    assert len(body["params"]) + len(head["params"]) == len(list(model.parameters()))


def test_checkpoint_round_trip(tmp_path):
    cfg = deeplab_config()
    model = build_deeplab(cfg, n_classes=3)
    path = tmp_path / "final.pt"
    torch.save(
        checkpoint_payload(model, cfg, class_names=["background", "a", "b"], iteration=10), path
    )
    loaded, meta = load_deeplab(path, "cpu")
    assert meta["class_names"] == ["background", "a", "b"] and meta["config"]["tiny_width"] == 8
    assert not loaded.training
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(loaded(x), model.eval()(x))


# ---- training helpers --------------------------------------------------------------------------
def test_poly_lr_by_hand():
    assert poly_lr(0.01, 0, 100, 0.9) == pytest.approx(0.01)
    assert poly_lr(0.01, 50, 100, 0.9) == pytest.approx(0.01 * 0.535887, rel=1e-5)  # 0.5 ** 0.9
    assert poly_lr(0.01, 99, 100, 0.9) == pytest.approx(0.01 * 0.0158489, rel=1e-5)  # 0.01 ** 0.9
    assert poly_lr(2.5e-4, 10, 20, 1.0) == pytest.approx(1.25e-4)


def labelled_pattern(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """An asymmetric block label map and an image whose red channel is 10 x the label."""
    label = np.zeros((height, width), np.uint8)
    label[: height // 2, : width // 3] = 1
    label[height // 2 :, width // 2 :] = 2
    label[2:6, -5:-1] = 3
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = label * 10
    image[..., 1] = np.arange(width, dtype=np.uint8)[None, :]
    return image, label


def test_augmentation_keeps_image_and_label_aligned_and_pads_with_ignore():
    image, label = labelled_pattern(40, 30)
    flips = set()
    for seed in range(12):
        out_image, out_label = random_scale_crop_flip(
            image, label, rng=np.random.default_rng(seed), scale_range=[1.0, 1.0], crop_size=48
        )
        assert (
            out_image.shape == (48, 48, 3)
            and out_label.shape == (48, 48)
            and out_image.flags.writeable
        )
        valid = out_label != 255
        assert valid.sum() == 40 * 30  # the whole image fits: every pixel kept, the rest padded
        np.testing.assert_array_equal(out_image[..., 0][valid], out_label[valid] * 10)
        np.testing.assert_array_equal(
            out_image[~valid], np.broadcast_to(PAD_RGB, out_image[~valid].shape)
        )
        columns = out_image[..., 1][valid].reshape(40, 30)[0]
        flips.add(bool(columns[0] > columns[-1]))
    assert flips == {True, False}  # both orientations happened, and alignment held in each


def test_augmentation_scales_and_crops_without_breaking_alignment():
    image, label = labelled_pattern(80, 60)
    for seed in range(8):
        out_image, out_label = random_scale_crop_flip(
            image, label, rng=np.random.default_rng(seed), scale_range=[0.5, 2.0], crop_size=32
        )
        assert out_image.shape == (32, 32, 3)
        assert set(np.unique(out_label)) <= {
            0,
            1,
            2,
            3,
            255,
        }  # nearest neighbour: no blended labels
        valid = out_label != 255
        agree = (
            np.abs(out_image[..., 0][valid].astype(int) - out_label[valid].astype(int) * 10) <= 2
        )
        assert agree.mean() > 0.9  # bilinear edges may blend, nothing else may
    same = [
        random_scale_crop_flip(
            image, label, rng=np.random.default_rng(3), scale_range=[0.5, 2.0], crop_size=32
        )
        for _ in range(2)
    ]
    np.testing.assert_array_equal(same[0][0], same[1][0])  # seeded: reproducible


def test_batch_keys_walk_each_epoch_through_a_fresh_permutation():
    keys = [
        k for it in range(5) for k in batch_keys(n_images=10, batch_size=4, iteration=it, seed=7)
    ]
    assert sorted(k[0] for k in keys[:10]) == list(range(10))
    assert sorted(k[0] for k in keys[10:20]) == list(range(10))
    assert [k[0] for k in keys[:10]] != [k[0] for k in keys[10:20]]
    assert batch_keys(n_images=10, batch_size=4, iteration=3, seed=7) == keys[12:16]
    assert batch_keys(n_images=10, batch_size=4, iteration=3, seed=8) != keys[12:16]
    assert len({k[1:] for k in keys}) == len(keys)  # every sample has its own augmentation seed


def test_loss_ignores_255_and_upsamples_logits():
    logits = torch.zeros(1, 3, 2, 2)
    logits[:, 1] = 5.0  # confident class 1 everywhere
    labels = torch.full((1, 16, 16), 255, dtype=torch.uint8)
    labels[0, :8] = 1
    assert segmentation_loss(logits, labels) == pytest.approx(
        float(-torch.log_softmax(logits[0, :, 0, 0], 0)[1])
    )
    labels[0, 8:] = 0
    assert segmentation_loss(logits, labels) > 1.0


def test_predict_segmentation_returns_a_full_size_label_map():
    model = build_deeplab(deeplab_config(), n_classes=4).train()
    image = np.random.default_rng(0).integers(0, 255, size=(37, 45, 3), dtype=np.uint8)
    pred = predict_segmentation(model, image, "cpu")
    assert pred.shape == (37, 45) and pred.dtype == np.uint8 and pred.max() < 4
    assert model.training  # the caller's mode is restored
    with torch.no_grad():
        model.aspp.branches[1].bias[2] = 100.0  # class 2 wins everywhere
    assert (predict_segmentation(model, image, "cpu") == 2).all()


def test_images_to_tensor_scales_to_unit_range_channels_last():
    images = torch.tensor([[[[0, 128, 255]]]], dtype=torch.uint8)  # (1, 1, 1, 3)
    x = images_to_tensor(images, "cpu")
    assert x.shape == (1, 3, 1, 1)
    torch.testing.assert_close(x.flatten(), torch.tensor([0.0, 128 / 255, 1.0]))
