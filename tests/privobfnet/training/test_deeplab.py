"""Tests of deeplab."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from privobfnet.data.errors import DataError
from privobfnet.data.images import mask_to_image
from privobfnet.models.deeplabv2 import (
    ASPP_LR_MULT,
    build_deeplab,
)
from privobfnet.training.deeplab import (
    PAD_RGB,
    batch_keys,
    msc_loss,
    optimizer_param_groups,
    poly_lr,
    random_scale_crop_flip,
    segmentation_loss,
    training_label_paths,
)
from tests.conftest import with_changes
from tests.fixtures.models import (
    SEG,
    deeplab_config,
    labelled_pattern,
)


def test_label_sources(tmp_path, ci_config):
    manifest = pd.DataFrame({"image_id": ["a", "b"], "mask_path": ["m/a.png", None]})
    pseudo = tmp_path / "pseudo"
    cfg = with_changes(ci_config, "pseudo_labels", out_dir=str(pseudo))
    with pytest.raises(DataError, match="pseudo-label missing"):
        training_label_paths(cfg, manifest)
    pseudo.mkdir()
    for image_id in "ab":
        (pseudo / f"{image_id}.png").write_bytes(b"")
    assert training_label_paths(cfg, manifest) == [str(pseudo / "a.png"), str(pseudo / "b.png")]
    truth = with_changes(cfg, "deeplab", labels="ground_truth")
    with pytest.raises(DataError, match="lack masks"):
        training_label_paths(truth, manifest)
    assert training_label_paths(truth, manifest.iloc[:1]) == ["m/a.png"]


def test_deeplab_training_labels_from_ground_truth_use_the_segmentation_encoding(
    tmp_path, ci_config
):
    from PIL import Image

    from privobfnet.training.deeplab import TrainingSamples
    from tests.conftest import with_changes

    truth = np.zeros((16, 16), np.uint8)
    truth[:8, :8], truth[8:, 8:], truth[:8, 8:] = (
        2,
        3,
        1,
    )  # face, name, and an a0_safe block (ignored)
    mask_to_image(truth).save(tmp_path / "m.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "i.png")
    cfg = with_changes(ci_config, "deeplab", scale_range=[1.0, 1.0], crop_size=16)
    for ground_truth, expected in ((True, {0: 64, 1: 64, 2: 64, 255: 64}), (False, None)):
        samples = TrainingSamples(
            [str(tmp_path / "i.png")],
            [str(tmp_path / "m.png")],
            cfg=cfg,
            seg=SEG,
            ground_truth=ground_truth,
        )
        if (
            expected is None
        ):  # a pseudo-label holds segmentation labels already: 3 is out of range for 2 classes
            with pytest.raises(Exception, match="out of range"):
                samples[(0, 0, 0, 0)]
            continue
        _, label = samples[(0, 0, 0, 0)]
        values, counts = np.unique(label.numpy(), return_counts=True)
        assert dict(zip(values.tolist(), counts.tolist())) == expected


def test_param_groups_give_the_aspp_ten_times_the_rate():
    model = build_deeplab(deeplab_config(), n_classes=3)
    body, head = optimizer_param_groups(model, weight_decay=1e-4)
    assert body["lr_mult"] == 1.0 and head["lr_mult"] == ASPP_LR_MULT == 10.0
    assert {id(p) for p in head["params"]} == {id(p) for p in model.aspp.parameters()}
    assert len(body["params"]) + len(head["params"]) == len(list(model.parameters()))


def test_poly_lr_by_hand():
    assert poly_lr(0.01, 0, 100, 0.9) == pytest.approx(0.01)
    assert poly_lr(0.01, 50, 100, 0.9) == pytest.approx(0.01 * 0.535887, rel=1e-5)  # 0.5 ** 0.9
    assert poly_lr(0.01, 99, 100, 0.9) == pytest.approx(0.01 * 0.0158489, rel=1e-5)  # 0.01 ** 0.9
    assert poly_lr(2.5e-4, 10, 20, 1.0) == pytest.approx(1.25e-4)


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


def test_deeplab_pytorch_groups_give_aspp_biases_twenty_times_without_weight_decay():
    model = build_deeplab(deeplab_config(), n_classes=3)
    body, weights, biases = optimizer_param_groups(
        model, weight_decay=5e-4, scheme="deeplab_pytorch"
    )
    assert (body["lr_mult"], body["weight_decay"]) == (1.0, 5e-4)
    assert (weights["lr_mult"], weights["weight_decay"]) == (10.0, 5e-4)
    assert (biases["lr_mult"], biases["weight_decay"]) == (20.0, 0.0)
    assert {id(p) for p in biases["params"]} == {id(b.bias) for b in model.aspp.branches}
    grouped = [id(p) for g in (body, weights, biases) for p in g["params"]]
    assert len(grouped) == len(set(grouped)) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="unknown DeepLab optimizer scheme"):
        optimizer_param_groups(model, weight_decay=5e-4, scheme="adam")


def test_scale_choices_draw_only_the_listed_factors():
    image = np.zeros((40, 40, 3), np.uint8)
    label = np.zeros((40, 40), np.uint8)
    sizes = set()
    for seed in range(40):
        out, _ = random_scale_crop_flip(
            image,
            label,
            rng=np.random.default_rng(seed),
            scale_range=(0.5, 1.5),
            crop_size=80,  # larger than any rescaled image: the pad shows the scaled size
            scale_choices=(0.5, 1.0, 1.5),
        )
        sizes.add(
            int((out != PAD_RGB).any(axis=2).any(axis=1).sum())
        )  # rows (flips are left-right)
    assert sizes == {20, 40, 60}


def test_msc_loss_scores_every_output_against_labels_resized_by_nearest_neighbour():
    labels = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255], [2, 2, 255, 255]]])
    full = torch.zeros(1, 3, 4, 4)
    half = torch.zeros(1, 3, 2, 2)
    half[0, 0, 0, 0] = half[0, 1, 0, 1] = half[0, 2, 1, 0] = 10.0  # right where labels say
    # the half-size output is compared with the labels at 2 x 2 (nearest: [[0, 1], [2, 255]])
    expected = torch.nn.functional.cross_entropy(
        full, labels.long(), ignore_index=255
    ) + torch.nn.functional.cross_entropy(
        half, torch.tensor([[[0, 1], [2, 255]]]), ignore_index=255
    )  # summed, as deeplab-pytorch's loop sums them
    assert msc_loss([full, half], labels).item() == pytest.approx(expected.item())
    assert msc_loss([half], labels).item() < 1e-3  # confident and right: no loss
