"""Segmentation metrics: confusion matrix, mIoU (checked against torchmetrics), pixel accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from privobfnet.data.images import mask_to_image
from privobfnet.evaluation.segmentation import (
    CamScores,
    confusion_matrix,
    miou_from_confusion,
    pixel_accuracy,
    segmentation_scores,
    split_confusion,
)
from tests.fixtures.models import (
    SEG,
    ConstantSegmenter,
)


def test_confusion_matrix_by_hand_rows_are_ground_truth():
    target = np.array([[0, 0, 1], [2, 255, 1]], dtype=np.uint8)
    pred = np.array([[0, 1, 1], [2, 0, 0]], dtype=np.uint8)
    cm = confusion_matrix(pred, target, 3)
    expected = np.array(
        [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    )  # the ignored pixel (pred 0) is not counted
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype == np.int64
    miou, iou = miou_from_confusion(cm)
    # class 0: tp 1, fp 1, fn 1 -> 1/3; class 1: 1/3; class 2: 1/1
    np.testing.assert_allclose(iou, [1 / 3, 1 / 3, 1.0])
    assert miou == pytest.approx((1 / 3 + 1 / 3 + 1) / 3)
    assert pixel_accuracy(cm) == pytest.approx(3 / 5)


def test_torch_and_numpy_agree_and_matrices_accumulate():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 5, size=(2, 16, 16)).astype(np.uint8)
    pred = rng.integers(0, 5, size=(2, 16, 16)).astype(np.uint8)
    whole = confusion_matrix(pred, target, 5)
    summed = confusion_matrix(pred[0], target[0], 5) + confusion_matrix(pred[1], target[1], 5)
    np.testing.assert_array_equal(whole, summed)
    as_torch = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), 5)
    assert isinstance(as_torch, torch.Tensor) and as_torch.dtype == torch.int64
    np.testing.assert_array_equal(as_torch.numpy(), whole)
    assert miou_from_confusion(as_torch)[0] == pytest.approx(miou_from_confusion(whole)[0])


def test_out_of_range_labels_are_refused():
    with pytest.raises(ValueError, match="target has labels outside"):
        confusion_matrix(np.zeros((2, 2), np.uint8), np.full((2, 2), 7, np.uint8), 3)
    with pytest.raises(ValueError, match="pred has labels outside"):
        confusion_matrix(np.full((2, 2), 3, np.uint8), np.zeros((2, 2), np.uint8), 3)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 3), np.uint8), np.zeros((2, 2), np.uint8), 3)


def test_absent_classes_are_left_out_of_the_mean():
    cm = np.zeros((4, 4), dtype=np.int64)
    cm[0, 0], cm[1, 1], cm[1, 2] = 10, 3, 1  # class 3 appears nowhere; class 2 only in predictions
    miou, iou = miou_from_confusion(cm)
    assert np.isnan(iou[3]) and iou[2] == 0.0
    assert miou == pytest.approx((1.0 + 0.75 + 0.0) / 3)
    scores = segmentation_scores(cm, ["bg", "a", "b", "c"])
    assert scores["per_class_iou"] == {"bg": 1.0, "a": 0.75, "b": 0.0, "c": None}
    assert scores["miou"] == pytest.approx(miou)
    empty = segmentation_scores(np.zeros((2, 2), np.int64), ["bg", "a"])
    assert empty["miou"] is None and empty["pixel_accuracy"] is None


@pytest.mark.parametrize("seed", range(5))
def test_miou_matches_torchmetrics_with_ignore_and_absent_classes(seed):
    rng = np.random.default_rng(seed)
    n_classes = 7
    used_gt = rng.choice(n_classes, size=4, replace=False)  # three classes absent from ground truth
    used_pred = rng.choice(n_classes, size=5, replace=False)  # some of those predicted all the same
    target = rng.choice(used_gt, size=(3, 24, 20)).astype(np.uint8)
    pred = np.where(
        rng.random(target.shape) < 0.6, target, rng.choice(used_pred, size=target.shape)
    ).astype(np.uint8)
    target[rng.random(target.shape) < 0.15] = (
        255  # ignore pixels (their predictions must not count)
    )

    cm = sum(confusion_matrix(p, t, n_classes) for p, t in zip(pred, target))
    miou, iou = miou_from_confusion(cm)

    t_pred, t_target = torch.from_numpy(pred).long(), torch.from_numpy(target).long()
    reference = MulticlassJaccardIndex(num_classes=n_classes, ignore_index=255, average="macro")
    per_class = MulticlassJaccardIndex(num_classes=n_classes, ignore_index=255, average="none")
    accuracy = MulticlassAccuracy(num_classes=n_classes, ignore_index=255, average="micro")
    for p, t in zip(t_pred, t_target):  # accumulate image by image, as the stage does
        reference.update(p[None], t[None])
        per_class.update(p[None], t[None])
        accuracy.update(p[None], t[None])
    assert miou == pytest.approx(float(reference.compute()), abs=1e-6)
    present = ~np.isnan(iou)
    assert present.sum() < n_classes  # the case under test: some classes are absent
    np.testing.assert_allclose(iou[present], per_class.compute().numpy()[present], atol=1e-6)
    assert pixel_accuracy(cm) == pytest.approx(float(accuracy.compute()), abs=1e-6)


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
        ConstantSegmenter(SEG.n_labels), manifest, max_pixels=10**6, seg=SEG, device="cpu"
    )
    scores = segmentation_scores(cm, SEG.label_names)
    assert n == 1 and cm.sum() == 7  # the a0_safe pixel is ignored
    assert set(scores["per_class_iou"]) == {"background", "a9_face_complete", "a19_name_full"}
    assert scores["per_class_iou"]["a9_face_complete"] == pytest.approx(3 / 7)
