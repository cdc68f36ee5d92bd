"""Segmentation classes: attributes without a region (a0_safe) leave pseudo-labels, DeepLab and every mIoU."""

from __future__ import annotations

import numpy as np
import pytest

from privobfnet.data.mask_types import load_mask_types, read_mask_type_table
from privobfnet.data.readers.coco import COCO_CLASSES
from privobfnet.data.readers.voc import VOC_CLASSES
from privobfnet.data.synthpriv import ATTRIBUTE_IDS
from privobfnet.labels import BACKGROUND, SegmentationClasses, segmentation_classes
from tests.fixtures.models import (
    SEG,
)

ATTRIBUTES = ("a0_safe", "a9_face_complete", "a19_name_full")


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
