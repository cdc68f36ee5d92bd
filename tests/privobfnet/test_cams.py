"""The one CAM -> mask procedure: multi-scale + flip, per-class max-normalisation, background
threshold; the pseudo-labels and the obfuscation tool through it."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from privobfnet.cams import (
    attribute_mask,
    class_maps,
    label_map,
    label_masks,
    pseudo_label,
    segmentation_maps,
)
from privobfnet.config import PseudoLabelConfig
from privobfnet.inference import predict
from privobfnet.labels import segmentation_classes
from tests.fixtures.models import SEG, SafeEverywhere, tiny_model

PSEUDO = PseudoLabelConfig(
    scales=[1.0],
    bg_threshold=0.25,
    bg_sweep=[0.25],
    eval_splits=["train"],
    crf=False,
    crf_iterations=10,
    out_dir="unused",
)


def test_cams_to_label_by_hand():
    cams = torch.tensor([[[0.9, 0.1], [0.2, 0.0]], [[0.5, 0.6], [0.1, 0.3]]])  # (C=2, 2, 2)
    # pixel (0,0): class 0 wins (0.9); (0,1): class 1 (0.6); (1,0): all < 0.25 -> bg; (1,1): class 1 (0.3)
    assert label_map(cams, 0.25).tolist() == [[1, 2], [0, 2]]
    assert label_map(cams, 0.95).tolist() == [[0, 0], [0, 0]]


def _stripe_cam_fn(calls):
    """A fake Model-Image: class 0 fires on the image's red channel, class 1 on its blue, at stride 4."""

    def cam_fn(image, human, text):
        calls.append(tuple(image.shape[-2:]))
        pooled = F.avg_pool2d(image, 4)  # (1, 3, h/4, w/4)
        return torch.stack([pooled[:, 0], pooled[:, 2], pooled[:, 1] * 0 - 1.0], dim=1)

    return cam_fn


def test_multiscale_cams_normalise_zero_absent_and_stay_aligned():
    image = torch.zeros(1, 3, 32, 48)
    image[:, 0, :, :20] = 1.0  # red on the left
    image[:, 2, :, 30:] = 1.0  # blue on the right
    masks = torch.zeros(1, 1, 32, 48)
    calls: list[tuple[int, int]] = []
    cams = class_maps(
        _stripe_cam_fn(calls), image, masks, masks, scales=[0.5, 1.0, 2.0], present=[1, 0, 1]
    )
    assert cams.shape == (3, 32, 48)
    assert calls == [
        (16, 24),
        (16, 24),
        (32, 48),
        (32, 48),
        (64, 96),
        (64, 96),
    ]  # each scale twice (flip)
    assert torch.isclose(cams[0].max(), torch.tensor(1.0))
    assert cams[1].abs().max() == 0  # absent from the image-level label
    assert cams[2].max() == 0  # negative CAMs are cut by the ReLU
    label = label_map(cams, 0.25)
    # the flipped passes were flipped back: red stays left, nothing fires on the right
    assert (label[:, :16] == 1).all() and (label[:, 34:] == 0).all()


def test_flip_is_undone_for_an_asymmetric_model():
    image = torch.rand(1, 3, 16, 16)
    masks = torch.zeros(1, 1, 16, 16)

    def cam_fn(img, human, text):  # noqa: E306 - position-dependent: a ramp left to right
        ramp = torch.linspace(0, 1, img.shape[-1]).expand(1, 1, *img.shape[-2:])
        return ramp * img[:, :1]

    cams = class_maps(cam_fn, image, masks, masks, scales=[1.0], present=[1])
    flipped = class_maps(cam_fn, image.flip(-1), masks, masks, scales=[1.0], present=[1])
    assert torch.allclose(cams, flipped.flip(-1), atol=1e-5)
    assert np.isfinite(cams.numpy()).all()


def test_a0_safe_never_takes_a_pseudo_label_pixel(ci_config):
    image = np.zeros((16, 16, 3), np.uint8)
    image[:, :8] = 255  # the face is on the left
    settings = dataclasses.replace(ci_config.pseudo_labels, bg_threshold=0.5, crf=False)
    cams = segmentation_maps(
        SafeEverywhere(),
        image,
        None,
        None,
        seg=SEG,
        scales=[1.0],
        labels=[1, 1, 0],
        device=torch.device("cpu"),
    )
    assert cams.shape == (2, 16, 16)
    label = pseudo_label(image, cams, settings)
    assert set(np.unique(label)) <= {0, 1}  # 0 background, 1 the face: no label for a0_safe
    assert (label[:, :6] == 1).all() and (
        label[:, 10:] == 0
    ).all()  # where only a0_safe fired: background


def test_label_masks_give_pixels_to_the_strongest_detected_attribute():
    attention = torch.tensor([[[0.9, 0.1, 0.5]], [[0.3, 0.8, 0.6]], [[1.0, 1.0, 1.0]]])  # (3, 1, 3)
    present = torch.tensor([True, True, False])[:, None, None]
    masks = label_masks(attention * present, bg_threshold=0.4)
    assert masks[:, 0].tolist() == [
        [True, False, False],
        [False, True, True],
        [False, False, False],
    ]
    assert not label_masks(attention * present, bg_threshold=0.95).any()


def test_pseudo_labels_and_the_tools_masks_come_from_the_same_procedure():
    """One model's CAMs through the pseudo-labels path and through the tool's path (``predict``, as
    ``privobfnet obfuscate`` calls it) give identical label masks, and the tool's per-attribute
    hiding masks contain them: what the pipeline measures is what the tool ships."""
    model = tiny_model().eval()  # 4 attributes: none, human, text, none
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    human = np.zeros((64, 64), np.uint8)
    human[:, :40] = 255
    text = np.zeros((64, 64), np.uint8)
    text[40:52, 8:60] = 255
    tool = predict(
        model, image, human, text, input_size=64, class_threshold=0.0, bg_threshold=0.3
    )  # every attribute counts as found, as the true labels do below
    seg = segmentation_classes([f"a{i}" for i in range(4)], ["none", "human", "text", "none"])
    maps = segmentation_maps(
        model, image, human, text, seg=seg, scales=[1.0], labels=[1, 1, 1, 1], device="cpu"
    )
    settings = dataclasses.replace(PSEUDO, bg_threshold=0.3)
    written = pseudo_label(image, maps, settings)  # what the pseudo_labels stage writes
    assert tool.masks.any() and (written > 0).any()
    np.testing.assert_array_equal(tool.masks, written[None] == np.arange(1, 5)[:, None, None])
    np.testing.assert_allclose(tool.attention, maps.numpy(), rtol=0, atol=1e-6)
    for c in range(4):  # hiding attribute c covers at least the pixels the label map gives it
        assert (attribute_mask(tool.attention, c, 0.3) | ~tool.masks[c]).all()
