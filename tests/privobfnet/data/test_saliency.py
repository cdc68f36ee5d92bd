"""Saliency maps placed by hand (L2G's Sal/): checked, recorded in the masks index, read as L2G
reads them, carried by the training batch and used by the l2g crop target's gates."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from ops.params import resolve_profile
from privobfnet.config import ConfigError, parse_config
from privobfnet.data.errors import DataError
from privobfnet.data.manifest import build_manifest
from privobfnet.data.priors import Priors, read_index, write_index, write_mask
from privobfnet.data.saliency import (
    SALIENCY_SOURCES,
    check_saliency_files,
    check_saliency_folder,
    read_saliency,
    saliency_dir,
    saliency_file,
)
from privobfnet.data.splits import SplitData
from privobfnet.training.ensemble import l2g_gates
from tests.conftest import REPO, unmasked_record, with_changes


def test_the_folder_check_says_where_the_maps_come_from(tmp_path):
    folder = saliency_dir(tmp_path / "voc")
    assert folder == tmp_path / "voc" / "Sal"
    with pytest.raises(DataError, match="saliency maps missing") as missing:
        check_saliency_folder(folder, "voc")
    assert str(folder) in str(missing.value) and SALIENCY_SOURCES["voc"] in str(missing.value)
    folder.mkdir(parents=True)
    with pytest.raises(DataError, match=r"no saliency maps \(\*\.png\)"):
        check_saliency_folder(folder, "voc")
    Image.new("L", (4, 3)).save(folder / "2007_000032.png")
    assert check_saliency_folder(folder, "voc") == 1


def test_every_image_needs_a_map_of_its_size_named_after_its_file(tmp_path):
    folder = tmp_path / "Sal"
    folder.mkdir()
    Image.new("L", (30, 20)).save(folder / "COCO_train2014_000000000009.png")
    Image.new("RGB", (30, 20)).save(folder / "b.png")  # any mode: read as L
    Image.new("L", (10, 10)).save(folder / "c.png")
    (folder / "d.png").write_bytes(b"not a png")
    images = [
        ("9", "images/COCO_train2014_000000000009.jpg", 30, 20),
        ("b", "b.jpg", 30, 20),
    ]
    found = check_saliency_files(folder, images, "coco")
    assert found == {"9": folder / "COCO_train2014_000000000009.png", "b": folder / "b.png"}
    bad = images + [("c", "c.jpg", 30, 20), ("d", "d.jpg", 30, 20), ("e", "e.jpg", 30, 20)]
    with pytest.raises(DataError, match="3 of 5 saliency maps missing or unusable") as err:
        check_saliency_files(folder, bad, "coco")
    message = str(err.value)
    assert "c.png: 10x10, the image 30x20" in message
    assert "d.png: unreadable" in message and "e.png: missing" in message


def test_a_map_is_read_as_l2g_reads_it_and_its_size_is_checked(tmp_path):
    path = saliency_file(tmp_path, "x.jpg")
    array = np.zeros((4, 6), np.uint8)
    array[1:3, 2:5] = 100
    array[1, 2] = 200
    Image.fromarray(array, "L").save(path)
    out = read_saliency(path, (4, 6))
    assert out.dtype == np.float32 and out.max() == pytest.approx(1.0)  # L / 255 / its max
    assert out[1, 3] == pytest.approx(0.5)
    with pytest.raises(DataError, match="wrong size"):
        read_saliency(path, (6, 4))
    with pytest.raises(DataError, match="saliency map missing"):
        read_saliency(tmp_path / "nope.png", (4, 6))


def test_the_index_records_the_maps_and_reads_older_indexes(tmp_path):
    rows = [("a", "train"), ("b", "train")]
    write_index(
        tmp_path, rows, None, set(), {"a": tmp_path / "Sal/a.png", "b": tmp_path / "Sal/b.png"}
    )
    priors = read_index(tmp_path)
    assert priors["a"].saliency_path == tmp_path / "Sal/a.png"
    write_index(tmp_path, rows, None, set())
    assert read_index(tmp_path)["b"].saliency_path is None


@pytest.fixture
def salient_split(tmp_path, ci_config):
    """Two 40 x 60 images; the saliency map marks the left half (at 128 of 255)."""
    records, priors = [], {}
    for i in range(2):
        Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(tmp_path / f"{i}.png")
        write_mask(tmp_path / f"{i}_human.png", np.zeros((40, 60), np.uint8))
        sal = np.zeros((40, 60), np.uint8)
        sal[:, :30] = 128
        Image.fromarray(sal, "L").save(tmp_path / f"{i}_sal.png")
        records.append(unmasked_record(str(i), tmp_path / f"{i}.png", 60, 40))
        priors[str(i)] = Priors(
            str(i), tmp_path / f"{i}_human.png", None, None, saliency_path=tmp_path / f"{i}_sal.png"
        )
    manifest = build_manifest(
        records, dataset="synthpriv", class_names=["a0_safe", "a9_face_complete"]
    )

    def split(augment: str, with_saliency: bool = True) -> SplitData:
        cfg = with_changes(ci_config, "train", augment=augment, input_size=32)
        kept = (
            priors
            if with_saliency
            else {k: dataclasses.replace(p, saliency_path=None) for k, p in priors.items()}
        )
        return SplitData(cfg, manifest, kept)

    return split


@pytest.mark.parametrize("augment", ["squash_flip", "l2g"])
def test_the_batch_carries_the_saliency_map_through_the_augmentation(salient_split, augment):
    batch = salient_split(augment).batch(
        [0, 1], torch.device("cpu"), torch.Generator().manual_seed(3)
    )
    assert batch.saliency is not None and batch.saliency.shape == (2, 1, 32, 32)
    assert batch.saliency.max() == pytest.approx(1.0, abs=0.01)  # max-normalised
    columns = batch.saliency[:, 0].mean(dim=1)  # (2, 32): salient on one side, 0 on the other
    for row in columns:
        assert {row[0].item() > 0.5, row[-1].item() > 0.5} == {True, False}
    without = salient_split(augment, with_saliency=False)
    assert (
        without.batch([0, 1], torch.device("cpu"), torch.Generator().manual_seed(3)).saliency
        is None
    )


def test_l2g_gates_put_the_saliency_map_on_the_classes_without_a_prior():
    like = torch.zeros(1, 4, 2, 2)  # C = 3 classes + background
    human = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    text = torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]])
    saliency = torch.tensor([[[[0.0, 0.0], [1.0, 0.5]]]])
    priors = torch.cat([torch.ones_like(human), human, text], dim=1)
    types = torch.tensor([0, 1, 2])  # none, human, text
    fg, bg = l2g_gates(priors, None, types, like=like)  # without saliency: as before
    assert torch.equal(fg, priors) and torch.equal(bg, 1 - torch.maximum(human, text))
    fg, bg = l2g_gates(priors, saliency, types, like=like)
    assert torch.equal(fg[:, 0:1], saliency) and torch.equal(fg[:, 1:], priors[:, 1:])
    assert torch.equal(bg, 1 - torch.maximum(torch.maximum(human, text), saliency))
    fg, bg = l2g_gates(None, saliency, types, like=like)  # L2G's own case: every class by it
    assert torch.equal(fg, saliency.expand(-1, 3, -1, -1)) and torch.equal(bg, 1 - saliency)
    fg, bg = l2g_gates(None, None, types, like=like)
    assert (fg == 1).all() and (bg == 1).all() and fg.shape == (1, 3, 2, 2)


def test_saliency_is_refused_where_nothing_uses_it():
    raw = resolve_profile("default", REPO / "profiles")
    raw["masks"]["saliency"] = True
    with pytest.raises(
        ConfigError, match="masks.saliency: the saliency maps gate L2G's crop target"
    ):
        parse_config(raw)
    raw["train"]["crop_target"] = "l2g"
    assert parse_config(raw).masks.saliency
    for name, wanted in (("paper_voc", True), ("paper_coco", True), ("paper_vispr", False)):
        assert parse_config(resolve_profile(name, REPO / "profiles")).masks.saliency is wanted
