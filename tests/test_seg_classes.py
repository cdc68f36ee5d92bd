"""Segmentation classes: attributes without a region (a0_safe) leave pseudo-labels, DeepLab and every mIoU."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from privobfnet.data.coco import COCO_CLASSES
from privobfnet.data.images import mask_to_image
from privobfnet.data.mask_types import load_mask_types, read_mask_type_table
from privobfnet.data.synthpriv import ATTRIBUTE_IDS
from privobfnet.data.voc import VOC_CLASSES
from privobfnet.deeplab_data import split_confusion
from privobfnet.metrics import segmentation_scores
from privobfnet.models.ensemble import model_meta
from privobfnet.pseudo_labels import (
    CamScores,
    pseudo_label,
    segmentation_cams,
    untrained_model_image,
)
from privobfnet.seg_classes import BACKGROUND, SegmentationClasses, segmentation_classes

ATTRIBUTES = ("a0_safe", "a9_face_complete", "a19_name_full")
SEG = segmentation_classes(ATTRIBUTES, ["no_region", "human", "text"])


@pytest.mark.parametrize("dataset", ["synthpriv", "vispr"])
def test_a0_safe_is_an_attribute_but_no_segmentation_class(dataset):
    attributes = (
        list(ATTRIBUTE_IDS) if dataset == "synthpriv" else list(read_mask_type_table("vispr"))
    )
    seg = segmentation_classes(attributes, load_mask_types(dataset, attributes))
    assert (
        "a0_safe" in attributes
        and "a0_safe" not in seg.classes
        and "a0_safe" not in seg.label_names
    )
    assert seg.classes == tuple(a for a in attributes if a != "a0_safe")
    assert seg.label_names[0] == BACKGROUND and seg.n_labels == len(attributes)


@pytest.mark.parametrize("classes, dataset", [(VOC_CLASSES, "voc"), (COCO_CLASSES, "coco")])
def test_voc_and_coco_keep_every_class_and_the_identity_encoding(classes, dataset):
    seg = segmentation_classes(list(classes), load_mask_types(dataset, list(classes)))
    assert seg.classes == tuple(classes)
    mask = np.array([[0, 1, len(classes)], [255, 2, 3]], np.uint8)
    np.testing.assert_array_equal(seg.from_truth(mask), mask)


def test_truth_to_segmentation_encoding_by_hand():
    assert SEG.classes == ("a9_face_complete", "a19_name_full") and SEG.indices == [1, 2]
    truth = np.array(
        [[0, 1, 2, 3, 255]], np.uint8
    )  # bg, a0_safe (should not occur), face, name, ignore
    assert SEG.from_truth(truth).tolist() == [[0, 255, 1, 2, 255]]


def test_bad_class_lists_are_errors():
    with pytest.raises(ValueError, match="not attributes"):
        SegmentationClasses(ATTRIBUTES, ("a1_age_approx",))
    with pytest.raises(ValueError, match="attribute order"):
        SegmentationClasses(ATTRIBUTES, ("a19_name_full", "a9_face_complete"))
    with pytest.raises(ValueError, match="must start with 'background'"):
        SegmentationClasses.from_label_names(ATTRIBUTES, ["a9_face_complete"])
    assert SegmentationClasses.from_label_names(ATTRIBUTES, SEG.label_names) == SEG


def test_cam_miou_by_hand_has_no_a0_safe_entry():
    truth = SEG.from_truth(
        np.array([[0, 0, 2, 2], [0, 3, 3, 255]], np.uint8)
    )  # -> [[0 0 1 1] [0 2 2 255]]
    label = np.array([[0, 1, 1, 1], [0, 0, 2, 2]], np.uint8)
    scores = CamScores(SEG.classes, sweep=())
    scores.add(label, torch.zeros(2, 2, 4), truth)
    metrics = scores.metrics()
    # background: TP 2, truth 3, pred 3 -> 2/4; face: TP 2, truth 2, pred 3 -> 2/3; name: TP 1, truth 2, pred 1 -> 1/2
    assert metrics["per_class_iou"] == pytest.approx(
        {"background": 0.5, "a9_face_complete": 2 / 3, "a19_name_full": 0.5}
    )
    assert metrics["cam_miou"] == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert "a0_safe" not in metrics["per_class_iou"]


class _SafeEverywhere:
    """A fake Model-Image: a0_safe fires strongest at every pixel, the face on the image's bright pixels."""

    def cams(self, images, human, text):  # (1, 3, h, w) -> (1, 3, h, w)
        b, _, h, w = images.shape
        face = (images[:, :1] > images[:, :1].mean()).float()
        return torch.cat([torch.full((b, 1, h, w), 5.0), face, torch.zeros(b, 1, h, w)], dim=1)


def test_a0_safe_never_takes_a_pseudo_label_pixel(ci_config):
    image = np.zeros((16, 16, 3), np.uint8)
    image[:, :8] = 255  # the face is on the left
    settings = dataclasses.replace(ci_config.pseudo_labels, bg_threshold=0.5, crf=False)
    cams = segmentation_cams(
        _SafeEverywhere(),
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


class _ConstantSegmenter(nn.Module):
    """A fake DeepLab predicting segmentation label 1 everywhere."""

    def __init__(self, n_labels: int):
        super().__init__()
        self.n_labels = n_labels

    def forward(self, x):
        logits = torch.zeros(x.shape[0], self.n_labels, x.shape[2], x.shape[3])
        logits[:, 1] = 1.0
        return logits


def test_deeplab_scoring_reads_truth_in_the_segmentation_encoding(tmp_path):
    import pandas as pd
    from PIL import Image

    truth = np.array(
        [[0, 2, 2, 2], [0, 0, 3, 1]], np.uint8
    )  # attribute encoding; 1 = a0_safe (ignored)
    mask_to_image(truth).save(tmp_path / "m.png")
    Image.fromarray(np.zeros((2, 4, 3), np.uint8)).save(tmp_path / "i.png")
    manifest = pd.DataFrame(
        {"path": [str(tmp_path / "i.png")], "mask_path": [str(tmp_path / "m.png")]}
    )
    cm, n = split_confusion(
        _ConstantSegmenter(SEG.n_labels), manifest, max_pixels=10**6, seg=SEG, device="cpu"
    )
    scores = segmentation_scores(cm, SEG.label_names)
    assert n == 1 and cm.sum() == 7  # the a0_safe pixel is ignored
    assert set(scores["per_class_iou"]) == {"background", "a9_face_complete", "a19_name_full"}
    assert scores["per_class_iou"]["a9_face_complete"] == pytest.approx(3 / 7)


def _tiny_meta() -> dict:
    return model_meta(
        backbone="tiny",
        tiny_width=8,
        mask_types=["no_region", "human", "text"],
        class_names=list(ATTRIBUTES),
        background_channel=False,
        use_mask_weighting=True,
        input_size=32,
    )


def test_masks_only_baseline_is_deterministic_and_stays_inside_the_priors(ci_config):
    device = torch.device("cpu")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    human = np.zeros((64, 64), np.uint8)
    human[:, :24] = 255  # the person is on the left
    text = np.zeros((64, 64), np.uint8)
    text[48:, 32:] = 255  # a text line bottom right
    before = torch.random.get_rng_state()
    first, second = (untrained_model_image(_tiny_meta(), seed=3, device=device) for _ in range(2))
    assert torch.equal(torch.random.get_rng_state(), before)  # the global RNG is untouched
    other = untrained_model_image(_tiny_meta(), seed=4, device=device)
    args = dict(seg=SEG, scales=[1.0], labels=[1, 1, 1], device=device)
    cams = segmentation_cams(first, image, human, text, **args)
    assert torch.equal(cams, segmentation_cams(second, image, human, text, **args))
    assert not torch.equal(cams, segmentation_cams(other, image, human, text, **args))
    label = pseudo_label(
        image, cams, dataclasses.replace(ci_config.pseudo_labels, bg_threshold=0.05, crf=False)
    )
    # mask weighting: the face class only inside the human mask, the name only inside the text mask (up to
    # one cell of the tiny backbone's stride 8 that the bicubic upsampling spreads)
    assert (
        not (label[:, 32:] == 1).any()
        and not (label[:40] == 2).any()
        and not (label[:, :24] == 2).any()
    )
    assert (label == 1).any() and (label == 2).any()


def test_deeplab_training_labels_from_ground_truth_use_the_segmentation_encoding(
    tmp_path, ci_config
):
    from PIL import Image

    from privobfnet.deeplab_data import TrainingSamples
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
