"""read_dataset dispatch, one schema for all data sets, split lists, and image decoding rules."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from privobfnet.config import DataConfig
from privobfnet.data.errors import DataError
from privobfnet.data.images import load_rgb
from privobfnet.data.manifest import COLUMNS, read_manifest, write_manifest
from privobfnet.data.readers import read_dataset, read_split_list
from tests.fixtures.real import make_coco, make_vispr, make_voc

MAX_PIXELS = 89_478_485


def data_cfg(dataset, raw_dir, splits, **changes):
    fields = dict(
        dataset=dataset,
        raw_dir=str(raw_dir),
        manifest_dir="data/manifests",
        splits={s: 1 for s in splits},
        max_image_pixels=MAX_PIXELS,
        allow_grayscale=True,
        privacy_profile="mean",
        privacy_rescale="unit",
        coco_overlap="largest_first",
    )
    return DataConfig(**{**fields, **changes})


@pytest.fixture
def raw(tmp_path):
    raw = tmp_path / "data" / "raw"
    make_vispr(raw / "vispr")
    make_vispr(raw / "synthpriv")
    make_voc(raw / "voc")
    make_coco(raw / "coco", "val2014")
    return raw


def test_dispatch_reads_every_requested_split(raw):
    vispr = read_dataset(data_cfg("vispr", raw, ["train", "val"]))
    assert list(vispr) == ["train", "val"] and len(vispr["train"]) == 2 and len(vispr["val"]) == 1
    synth = read_dataset(data_cfg("synthpriv", raw, ["val"]))
    assert synth["val"].attrs["dataset"] == "synthpriv"
    assert synth["val"]["path"][0].startswith(str(raw / "synthpriv"))
    voc = read_dataset(data_cfg("voc", raw, ["train_aug", "train", "val"]))
    assert [len(voc[s]) for s in ("train_aug", "train", "val")] == [3, 2, 1]
    coco = read_dataset(data_cfg("coco", raw, ["val2014"]))
    assert len(coco["val2014"]) == 2 and coco["val2014"].attrs["skipped"] == 1


def test_paths_stay_relative_to_the_project(raw, monkeypatch):
    monkeypatch.chdir(raw.parent.parent)  # the project root
    frames = {
        name: read_dataset(data_cfg(name, "data/raw", [split]))[split]
        for name, split in (("vispr", "train"), ("voc", "val"), ("coco", "val2014"))
    }
    assert frames["vispr"]["path"][0] == "data/raw/vispr/images/train/2017_10000001.jpg"
    assert frames["vispr"]["mask_path"][0] == "data/raw/vispr/SegmentationClass/2017_10000001.png"
    assert frames["voc"]["path"][0] == "data/raw/voc/VOCdevkit/VOC2012/JPEGImages/2008_000002.jpg"
    assert frames["coco"]["path"][0] == "data/raw/coco/val2014/COCO_val2014_000000000007.jpg"


@pytest.mark.parametrize(
    "dataset, split, split_file",
    [
        ("vispr", "test", "vispr/test.txt"),
        ("synthpriv", "test", "synthpriv/test.txt"),
        ("voc", "trainval", "voc/VOCdevkit/VOC2012/ImageSets/Segmentation/trainval.txt"),
        ("coco", "train2014", "coco/annotations/instances_train2014.json"),
    ],
)
def test_missing_split_names_its_list_file(raw, dataset, split, split_file):
    with pytest.raises(DataError) as err:
        read_dataset(data_cfg(dataset, raw, [split]))
    assert err.value.path == str(raw / split_file)
    assert "missing" in err.value.rule


def test_one_schema_for_every_data_set(raw, tmp_path):
    frames = [
        read_dataset(data_cfg("vispr", raw, ["train"]))["train"],
        read_dataset(data_cfg("voc", raw, ["train"]))["train"],
        read_dataset(data_cfg("coco", raw, ["val2014"]))["val2014"],
    ]
    for df in frames:
        assert list(df.columns) == COLUMNS
        assert df.dtypes.to_dict() == frames[0].dtypes.to_dict()
        assert sorted(df.attrs) == ["class_names", "dataset", "skipped", "source"]
        assert df.attrs["source"].endswith((".txt", ".json"))  # the split's list or annotation file
        assert all(len(row) == len(df.attrs["class_names"]) for row in df["labels"])
        assert all(isinstance(v, int) for row in df["labels"] for v in row)
    # the parquet round trip keeps values, dtypes and attrs
    for i, df in enumerate(frames):
        path = tmp_path / f"m{i}.parquet"
        write_manifest(df, path)
        back = read_manifest(path)
        assert back.dtypes.to_dict() == df.dtypes.to_dict()
        assert back.attrs == df.attrs
        assert back["labels"].tolist() == df["labels"].tolist()
        assert back["mask_path"].isna().tolist() == df["mask_path"].isna().tolist()


def test_split_list_formats_and_rules(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("a\n\n  b  \nc\n")
    assert read_split_list(plain) == ["a", "b", "c"]
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png\n")
    assert read_split_list(pairs) == ["2007_000032"]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="split list is empty") as err:
        read_split_list(empty)
    assert err.value.path == str(empty)
    with pytest.raises(DataError, match="split list missing"):
        read_split_list(tmp_path / "nope.txt")


# --- image decoding rules (images.load_rgb / load_mask), on files a reader may meet (modes: test_images) ---
def test_grayscale_converted_when_allowed_refused_when_not(tmp_path):
    path = tmp_path / "gray.png"
    Image.fromarray(np.full((6, 8), 77, dtype=np.uint8)).save(path)
    rgb = load_rgb(path, max_pixels=MAX_PIXELS, allow_grayscale=True)
    assert rgb.shape == (6, 8, 3) and rgb.dtype == np.uint8 and (rgb == 77).all()
    with pytest.raises(DataError, match="grayscale image") as err:
        load_rgb(path, max_pixels=MAX_PIXELS, allow_grayscale=False)
    assert err.value.path == str(path)


def test_rgb_jpeg_decodes(raw):
    image = raw / "voc" / "VOCdevkit" / "VOC2012" / "JPEGImages" / "2007_000039.jpg"
    assert load_rgb(image, max_pixels=MAX_PIXELS, allow_grayscale=False).shape == (30, 30, 3)
