"""PASCAL VOC 2012 + SBD reader: labels from the XML, mask fallbacks, splits, and refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from privobfnet.data.errors import DataError
from privobfnet.data.images import load_mask
from privobfnet.data.readers.voc import VOC_CLASSES, parse_annotation, read_voc_split
from tests.fixtures.real import make_voc, voc_xml, write_gray_mask

MAX_PIXELS = 89_478_485


@pytest.fixture
def root(tmp_path):
    return make_voc(tmp_path / "voc")


def voc_dir(root):
    return root / "VOCdevkit" / "VOC2012"


def labelled(df):
    return [[VOC_CLASSES[i] for i, v in enumerate(row) if v] for row in df["labels"]]


def test_classes_in_voc_order():
    assert len(VOC_CLASSES) == 20
    assert (
        VOC_CLASSES[0] == "aeroplane"
        and VOC_CLASSES[14] == "person"
        and VOC_CLASSES[19] == "tvmonitor"
    )


def test_reads_splits_labels_and_sizes(root):
    train = read_voc_split(str(root), "train", max_pixels=MAX_PIXELS)
    val = read_voc_split(str(root), "val", max_pixels=MAX_PIXELS)
    train_aug = read_voc_split(str(root), "train_aug", max_pixels=MAX_PIXELS)
    assert list(train["image_id"]) == ["2007_000032", "2007_000039"]
    assert list(val["image_id"]) == ["2008_000002"]
    # train_aug.txt is written in SBD's "/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png" form
    assert list(train_aug["image_id"]) == ["2007_000032", "2007_000039", "2009_000001"]
    # difficult objects (the person, the cat) count; <part> names (head, hand) are not classes
    assert labelled(train) == [["aeroplane", "person"], ["tvmonitor"]]
    assert labelled(val) == [["cat", "dog"]]
    assert (
        train["labels"][0][0] == 1 and train["labels"][0][14] == 1 and sum(train["labels"][0]) == 2
    )
    assert list(zip(train["width"], train["height"])) == [(50, 40), (30, 30)]
    assert train["privacy_score"].isna().all()
    assert train["path"][1] == str(voc_dir(root) / "JPEGImages" / "2007_000039.jpg")
    assert set(train_aug["split"]) == {"train_aug"}
    assert train.attrs["dataset"] == "voc" and train.attrs["class_names"] == VOC_CLASSES


def test_mask_prefers_sbd_aug_then_voc_then_none(root):
    train = read_voc_split(str(root), "train", max_pixels=MAX_PIXELS)
    val = read_voc_split(str(root), "val", max_pixels=MAX_PIXELS)
    train_aug = read_voc_split(str(root), "train_aug", max_pixels=MAX_PIXELS)
    assert train["mask_path"][0] == str(voc_dir(root) / "SegmentationClassAug" / "2007_000032.png")
    assert pd.isna(train["mask_path"][1])
    assert val["mask_path"][0] == str(voc_dir(root) / "SegmentationClass" / "2008_000002.png")
    assert train_aug["mask_path"][2] == str(
        voc_dir(root) / "SegmentationClassAug" / "2009_000001.png"
    )
    aug = load_mask(train["mask_path"][0], n_classes=20, max_pixels=MAX_PIXELS)  # mode L
    assert (
        aug.shape == (40, 50)
        and aug[10, 10] == 1
        and aug[30, 40] == 15
        and aug[0, 5] == 255
        and aug[39, 0] == 0
    )
    dog = load_mask(
        val["mask_path"][0], n_classes=20, max_pixels=MAX_PIXELS
    )  # palette: indices, not colours
    assert sorted(np.unique(dog).tolist()) == [0, 12]


def test_mask_out_of_range_is_refused(root):
    bad = np.zeros((40, 50), dtype=np.uint8)
    bad[3, 3] = 21  # 20 classes: 21 is neither a class nor void
    path = write_gray_mask(voc_dir(root) / "SegmentationClassAug" / "2007_000032.png", bad)
    with pytest.raises(DataError, match="mask label out of range") as err:
        load_mask(path, n_classes=20, max_pixels=MAX_PIXELS)
    assert err.value.path == str(path) and "[21]" in str(err.value)


def test_unknown_class_names_the_xml(root):
    xml = voc_dir(root) / "Annotations" / "2007_000039.xml"
    xml.write_text(voc_xml("2007_000039.jpg", (30, 30), [("tvmonitor", 0), ("unicorn", 0)]))
    with pytest.raises(DataError, match="unknown VOC class name") as err:
        read_voc_split(str(root), "train", max_pixels=MAX_PIXELS)
    assert err.value.path == str(xml) and "unicorn" in str(err.value)


def test_xml_without_objects_has_no_labels(root):
    xml = voc_dir(root) / "Annotations" / "2008_000002.xml"
    xml.write_text(voc_xml("2008_000002.jpg", (44, 36), []))
    with pytest.raises(DataError, match="image has no labels") as err:
        parse_annotation(xml)
    assert err.value.path == str(xml)


def test_malformed_or_missing_xml(root):
    xml = voc_dir(root) / "Annotations" / "2008_000002.xml"
    xml.write_text("<annotation><object><name>dog</name>")
    with pytest.raises(DataError, match="not valid XML") as err:
        read_voc_split(str(root), "val", max_pixels=MAX_PIXELS)
    assert err.value.path == str(xml)
    xml.unlink()
    with pytest.raises(DataError, match="annotation missing") as err:
        read_voc_split(str(root), "val", max_pixels=MAX_PIXELS)
    assert err.value.path == str(xml)


def test_missing_jpeg_names_the_image(root):
    image = voc_dir(root) / "JPEGImages" / "2009_000001.jpg"
    image.unlink()
    with pytest.raises(DataError, match="file missing") as err:
        read_voc_split(str(root), "train_aug", max_pixels=MAX_PIXELS)
    assert err.value.path == str(image)


def test_duplicate_ids_in_split_list(root):
    split_file = voc_dir(root) / "ImageSets" / "Segmentation" / "val.txt"
    split_file.write_text("2008_000002\n2008_000002\n")
    with pytest.raises(DataError, match="duplicate image id in split list") as err:
        read_voc_split(str(root), "val", max_pixels=MAX_PIXELS)
    assert err.value.path == str(split_file)


def test_missing_split_list_names_the_file(root):
    with pytest.raises(DataError, match="split list missing") as err:
        read_voc_split(str(root), "trainval", max_pixels=MAX_PIXELS)
    assert err.value.path == str(voc_dir(root) / "ImageSets" / "Segmentation" / "trainval.txt")


def test_mask_classes_must_be_among_the_xml_labels(root):
    from privobfnet.data.checks import row_checks, split_overlaps
    from privobfnet.data.readers import SHARED_SPLITS

    def checked(split):
        df = read_voc_split(str(root), split, max_pixels=MAX_PIXELS)
        return row_checks(df, max_pixels=MAX_PIXELS, allow_grayscale=True, decode_sample=0, seed=0)

    good = checked("train_aug")
    assert good["mask_classes_in_labels"].fillna(True).all() and good[
        "mask_classes_in_labels"
    ].isna().tolist() == [False, True, False]  # 039 has no mask: nothing to check
    # 2009_000001 is labelled bird (value 3); paint a cat (value 8) into its SBD mask
    mask = np.full((32, 32), 3, dtype=np.uint8)
    mask[:8, :8] = 8
    write_gray_mask(voc_dir(root) / "SegmentationClassAug" / "2009_000001.png", mask)
    bad = checked("train_aug")
    assert bad["mask_classes_in_labels"].fillna(True).tolist() == [True, True, False]
    error = bad["mask_label_error"][2]
    assert error.startswith(str(voc_dir(root) / "SegmentationClassAug" / "2009_000001.png"))
    assert "mask class not in the image's labels: cat (value 8) painted but not labelled" in error
    # VOC's train lies inside SBD's train_aug by design; val shares nothing with either
    manifests = {
        s: read_voc_split(str(root), s, max_pixels=MAX_PIXELS)
        for s in ("train", "val", "train_aug")
    }
    overlaps = split_overlaps(manifests, allowed=SHARED_SPLITS["voc"])
    assert all(overlaps[s].isna().all() for s in manifests)
    assert (
        split_overlaps(manifests)["train"].notna().all()
    )  # without the design's exception they clash
