"""COCO 2014 reader and mask renderer: polygons + crowd RLE via pycocotools, skips, refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from privobfnet.data.errors import DataError
from privobfnet.data.images import load_mask, voc_palette
from privobfnet.data.readers.coco import (
    COCO_CLASSES,
    load_coco,
    read_coco_split,
    render_semantic_masks,
    semantic_mask,
)
from tests.fixtures.real import make_coco, write_jpeg

MAX_PIXELS = 89_478_485
SPLIT = "val2014"


@pytest.fixture
def root(tmp_path):
    return make_coco(tmp_path / "coco", SPLIT)


def instances(root):
    return root / "annotations" / f"instances_{SPLIT}.json"


def edit_instances(root, edit):
    data = json.loads(instances(root).read_text())
    edit(data)
    instances(root).write_text(json.dumps(data))


def test_eighty_classes_indexed_by_category_id_rank():
    assert len(COCO_CLASSES) == 80
    # ids run 1..90 with gaps: 13 "stop sign" is the 12th category, 90 "toothbrush" the 80th
    assert (
        COCO_CLASSES[0] == "person"
        and COCO_CLASSES[11] == "stop sign"
        and COCO_CLASSES[79] == "toothbrush"
    )


def test_semantic_mask_from_polygon_and_crowd_rle(root):
    coco = load_coco(instances(root))
    mask = semantic_mask(coco, 42)
    assert mask.shape == (30, 40) and mask.dtype == np.uint8
    assert mask[10, 10] == 1  # person polygon (class 0 -> 1)
    assert (
        mask[25, 30] == 3
    )  # crowd car from uncompressed RLE (class 2 -> 3), crowd painted with its class
    assert (
        mask[12, 22] == 1
    )  # overlap: the smaller person stays on top though the crowd comes later in the file
    assert mask[25, 10] == 0 and mask[2, 2] == 0  # background
    assert set(np.unique(mask).tolist()) == {0, 1, 3}
    assert (mask == 3).sum() == 600 - (mask[:, 20:] == 1).sum()
    toothbrush = semantic_mask(coco, 7)
    assert toothbrush.shape == (24, 32) and toothbrush[6, 6] == 80 and toothbrush[20, 20] == 0


def test_render_writes_palette_pngs_atomically_and_respects_overwrite(root):
    assert render_semantic_masks(str(root), SPLIT) == 2  # image 99 has no annotation
    out = root / "SegmentationClass" / SPLIT
    assert sorted(p.name for p in out.iterdir()) == ["42.png", "7.png"]  # no temp files left behind
    with Image.open(out / "42.png") as img:
        assert img.mode == "P" and img.getpalette()[:9] == voc_palette()[:9]
    expected = semantic_mask(load_coco(instances(root)), 42)
    assert np.array_equal(load_mask(out / "42.png", n_classes=80, max_pixels=MAX_PIXELS), expected)
    (out / "7.png").write_bytes(b"stale")
    assert render_semantic_masks(str(root), SPLIT) == 0
    assert (out / "7.png").read_bytes() == b"stale"
    assert render_semantic_masks(str(root), SPLIT, overwrite=True) == 2
    assert load_mask(out / "7.png", n_classes=80, max_pixels=MAX_PIXELS)[6, 6] == 80


def test_reader_labels_skips_and_mask_paths(root):
    before = read_coco_split(str(root), SPLIT, max_pixels=MAX_PIXELS)
    assert before["mask_path"].isna().all()  # not rendered yet
    assert before.attrs["skipped"] == 1 and before.attrs["dataset"] == "coco"
    assert list(before["image_id"]) == ["7", "42"]
    labels = [[i for i, v in enumerate(row) if v] for row in before["labels"]]
    assert labels == [[79], [0, 2]]  # the crowd car counts as a label
    assert list(zip(before["width"], before["height"])) == [(32, 24), (40, 30)]
    assert before["path"][1] == str(root / SPLIT / "COCO_val2014_000000000042.jpg")
    assert before["privacy_score"].isna().all() and set(before["split"]) == {SPLIT}
    render_semantic_masks(root, SPLIT)  # a Path, as the download stage passes it
    after = read_coco_split(str(root), SPLIT, max_pixels=MAX_PIXELS)
    assert list(after["mask_path"]) == [
        str(root / "SegmentationClass" / SPLIT / f"{i}.png") for i in (7, 42)
    ]
    assert not pd.isna(after["mask_path"]).any()


def test_unknown_category_names_the_instances_file(root):
    edit_instances(
        root, lambda d: d["annotations"][2].update(category_id=12)
    )  # 12 is a gap in COCO's ids
    with pytest.raises(DataError, match="unknown category id in annotation") as err:
        read_coco_split(str(root), SPLIT, max_pixels=MAX_PIXELS)
    assert err.value.path == str(instances(root)) and "annotation 103: 12" in str(err.value)


def test_annotation_of_an_unknown_image(root):
    edit_instances(root, lambda d: d["annotations"][0].update(image_id=5))
    with pytest.raises(DataError, match="annotation refers to an image not in the file") as err:
        render_semantic_masks(str(root), SPLIT)
    assert err.value.path == str(instances(root))


def test_categories_must_be_cocos_eighty(root):
    edit_instances(root, lambda d: d["categories"].pop())
    with pytest.raises(DataError, match="categories differ from COCO's 80") as err:
        read_coco_split(str(root), SPLIT, max_pixels=MAX_PIXELS)
    assert err.value.path == str(instances(root)) and "toothbrush" in str(err.value)


def test_image_size_must_match_the_annotation_file(root):
    image = write_jpeg(root / SPLIT / "COCO_val2014_000000000007.jpg", 33, 24)
    with pytest.raises(DataError, match="image size differs from its annotation file") as err:
        read_coco_split(str(root), SPLIT, max_pixels=MAX_PIXELS)
    assert err.value.path == str(image) and "33x24 on disk, 32x24" in str(err.value)


def test_missing_image_and_missing_split(root):
    image = root / SPLIT / "COCO_val2014_000000000042.jpg"
    image.unlink()
    with pytest.raises(DataError, match="file missing") as err:
        read_coco_split(str(root), SPLIT, max_pixels=MAX_PIXELS)
    assert err.value.path == str(image)
    with pytest.raises(DataError, match="split annotation file missing") as err:
        read_coco_split(str(root), "train2014", max_pixels=MAX_PIXELS)
    assert err.value.path == str(root / "annotations" / "instances_train2014.json")


@pytest.mark.parametrize(
    "content",
    ["[1, 2, 3]", '{"images": [', '{"images": [{"file_name": "x.jpg"}], "annotations": []}'],
)
def test_not_a_coco_file(root, content):
    instances(root).write_text(content)
    with pytest.raises(DataError, match="not a COCO annotation file") as err:
        load_coco(instances(root))
    assert err.value.path == str(instances(root))


# --- where instances overlap: the documented default and the file-order option ---------------------
# COCO's format page gives no paint order for semantic masks; pixel [12, 22] of image 42 lies in
# both the person (300 px, listed first) and the crowd car (600 px, listed second).
@pytest.mark.parametrize(
    "car_first, largest_first, file_order",
    [(False, 1, 3), (True, 1, 1)],  # values: person 1, car 3
)
def test_overlap_rule_decides_who_is_on_top(root, car_first, largest_first, file_order):
    if car_first:
        edit_instances(root, lambda d: d["annotations"].reverse())
    coco = load_coco(instances(root))
    assert semantic_mask(coco, 42)[12, 22] == largest_first
    assert semantic_mask(coco, 42, "largest_first")[12, 22] == largest_first
    assert semantic_mask(coco, 42, "file_order")[12, 22] == file_order
    # outside the overlap both rules agree
    for rule in ("largest_first", "file_order"):
        mask = semantic_mask(coco, 42, rule)
        assert mask[10, 10] == 1 and mask[25, 30] == 3 and mask[25, 10] == 0
    with pytest.raises(ValueError, match="unknown overlap rule"):
        semantic_mask(coco, 42, "smallest_last")


def test_each_overlap_rule_renders_into_its_own_folder_and_the_reader_follows(root):
    assert render_semantic_masks(root, SPLIT, overlap="file_order") == 2
    assert not (root / "SegmentationClass").exists()
    out = root / "SegmentationClassFileOrder" / SPLIT
    assert load_mask(out / "42.png", n_classes=80, max_pixels=MAX_PIXELS)[12, 22] == 3
    default = read_coco_split(str(root), SPLIT, max_pixels=MAX_PIXELS)
    assert default["mask_path"].isna().all()  # the largest_first masks are not rendered yet
    chosen = read_coco_split(str(root), SPLIT, max_pixels=MAX_PIXELS, overlap="file_order")
    assert list(chosen["mask_path"]) == [str(out / f"{i}.png") for i in (7, 42)]
    assert chosen.attrs["source"] == str(instances(root))
