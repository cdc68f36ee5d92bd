"""VISPR-layout reader (also SynthPriv's): labels, privacy scores, masks, and every refusal."""

from __future__ import annotations

import json

import pytest

from privobfnet.data.errors import DataError
from privobfnet.data.images import load_mask, load_rgb
from privobfnet.data.readers.vispr import read_attributes, read_vispr_split
from tests.fixtures.real import (
    make_vispr,
    truncate_file,
    write_bomb_png,
    write_jpeg,
    write_vispr_annotation,
)

MAX_PIXELS = 89_478_485


@pytest.fixture
def root(tmp_path):
    return make_vispr(tmp_path / "vispr")


def read(root, split="train", **kwargs):
    kwargs.setdefault("max_pixels", MAX_PIXELS)
    kwargs.setdefault("dataset", "vispr")
    return read_vispr_split(str(root), split, **kwargs)


def test_reads_labels_scores_masks_and_sizes(root):
    train, val = read(root, "train"), read(root, "val")
    assert train.attrs["class_names"] == [
        "a0_safe",
        "a9_face_complete",
        "a17_color",
        "a64_rel_personal",
    ]
    assert train.attrs["dataset"] == "vispr"
    assert list(train["image_id"]) == ["2017_10000001", "2017_10000002"]
    assert list(train["labels"]) == [[0, 1, 1, 0], [1, 0, 0, 0]]
    assert list(val["labels"]) == [[0, 0, 1, 1]]
    # hand-computed in make_vispr's docstring: max over attributes, mean over profiles, (x-1)/4
    assert train["privacy_score"].tolist() == pytest.approx([0.75, 0.0])
    assert val["privacy_score"].tolist() == pytest.approx([2 / 3])
    assert list(zip(train["width"], train["height"])) == [(48, 32), (40, 40)]
    assert list(train["split"]) == ["train", "train"] and list(val["split"]) == ["val"]
    assert train["path"][0] == str(root / "images" / "train" / "2017_10000001.jpg")
    assert train["mask_path"][0] == str(root / "SegmentationClass" / "2017_10000001.png")
    assert train["mask_path"].isna().tolist() == [False, True]
    mask = load_mask(train["mask_path"][0], n_classes=4, max_pixels=MAX_PIXELS)
    assert set(mask.ravel().tolist()) == {0, 2, 3, 255} and mask[10, 10] == 2 and mask[20, 35] == 3


def test_pooling_is_passed_through(root):
    # mean of (a9, a17) per user: 3.5, 2, 2.5 -> 8/3 -> (8/3 - 1) / 4 = 5/12
    train = read(root, pooling="mean")
    assert train["privacy_score"][0] == pytest.approx(5 / 12)


def test_synthpriv_name_is_recorded(root):
    assert read(root, dataset="synthpriv").attrs["dataset"] == "synthpriv"


def test_attributes_keep_file_order_and_reject_bad_idx(root):
    assert [a.attribute_id for a in read_attributes(root / "attributes.tsv")][:2] == [
        "a0_safe",
        "a9_face_complete",
    ]
    text = (root / "attributes.tsv").read_text().replace("\n2\t", "\n7\t")
    (root / "attributes.tsv").write_text(text)
    with pytest.raises(DataError, match="idx must run 0..n-1") as err:
        read(root)
    assert err.value.path.endswith("attributes.tsv")


def _rewrite_json(root, image_id, split="train", **changes):
    path = root / "annotations" / split / f"{image_id}.json"
    record = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            record.pop(key)
        else:
            record[key] = value
    write_vispr_annotation(root, split, image_id, record)
    return path


@pytest.mark.parametrize(
    "changes, rule, detail",
    [
        (
            {"labels": ["a9_face_complete", "a999_bogus"]},
            "unknown attribute id in labels",
            "a999_bogus",
        ),
        ({"labels": None}, "annotation lacks keys", "labels"),
        ({"id": "2017_99999999"}, "annotation id differs from its file name", "2017_99999999"),
        ({"labels": []}, "image has no labels", ""),
        ({"labels": "a0_safe"}, "labels must be a list of attribute ids", ""),
        (
            {"image_path": "../../etc/passwd"},
            "image path must be relative and inside the data set root",
            "..",
        ),
        (
            {"image_path": "/abs/image.jpg"},
            "image path must be relative and inside the data set root",
            "/abs",
        ),
    ],
)
def test_bad_annotation_json_names_file_and_rule(root, changes, rule, detail):
    path = _rewrite_json(root, "2017_10000002", **changes)
    with pytest.raises(DataError) as err:
        read(root)
    assert err.value.path == str(path)
    assert err.value.rule.startswith(rule)
    assert detail in err.value.detail


def test_invalid_json_is_refused(root):
    path = root / "annotations" / "train" / "2017_10000002.json"
    path.write_text('{"id": "2017_10000002", ')
    with pytest.raises(DataError, match="not valid JSON") as err:
        read(root)
    assert err.value.path == str(path)


def test_id_in_split_list_without_json(root):
    (root / "train.txt").write_text("2017_10000001\n2017_10000003\n")
    with pytest.raises(DataError, match="annotation missing for an id in the split list") as err:
        read(root)
    assert err.value.path == str(root / "annotations" / "train" / "2017_10000003.json")


def test_duplicate_id_in_split_list(root):
    (root / "train.txt").write_text("2017_10000001\n2017_10000002\n\n2017_10000001\n")
    with pytest.raises(DataError, match="duplicate image id in split list") as err:
        read(root)
    assert err.value.path == str(root / "train.txt")
    assert "lines 1 and 4" in str(err.value)


def test_missing_image_file(root):
    image = root / "images" / "train" / "2017_10000002.jpg"
    image.unlink()
    with pytest.raises(DataError, match="file missing") as err:
        read(root)
    assert err.value.path == str(image)


def test_decompression_bomb_header_is_refused(root):
    image = root / "images" / "train" / "2017_10000002.jpg"
    write_bomb_png(image)  # a PNG named .jpg: PIL goes by content, so does the guard
    with pytest.raises(DataError, match=r"image too large \(decompression bomb guard\)") as err:
        read(root)
    assert err.value.path == str(image)


def test_max_pixels_from_config_is_enforced(root):
    with pytest.raises(DataError, match="decompression bomb guard") as err:
        read(root, max_pixels=48 * 32 - 1)
    assert err.value.path.endswith("2017_10000001.jpg") and "1536 pixels" in str(err.value)


def test_truncated_image_passes_the_header_read_but_not_decoding(root):
    image = write_jpeg(root / "images" / "train" / "2017_10000001.jpg", 48, 32, noise=True)
    truncate_file(image, keep=0.6)
    train = read(root)  # the reader only reads headers: decoding is the validate stage's job
    assert (train["width"][0], train["height"][0]) == (48, 32)
    with pytest.raises(DataError, match="corrupt or truncated image") as err:
        load_rgb(train["path"][0], max_pixels=MAX_PIXELS)
    assert err.value.path == str(image)
