"""SynthPriv: determinism, ground truth consistency, the simulated parser, the on-disk layout."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from privobfnet.config import FaceNoise, ParserNoise
from privobfnet.data import synthpriv
from privobfnet.data.images import load_mask, load_rgb
from privobfnet.data.readers.vispr import read_user_profiles
from privobfnet.data.synthpriv import (
    ATTRIBUTE_IDS,
    ATTRIBUTES,
    generate_sample,
    min_region_pixels,
    user_preferences,
    write_synthpriv,
)
from tests.conftest import with_changes

VISPR_GROUPS = {
    "Safe",
    "Personal Description",
    "Documents",
    "Health",
    "Employment",
    "Personal Life",
    "Relationship",
    "Whereabouts",
    "Internet",
    "Automobile",
}


def tiny(cfg, **splits):
    """cfg with a few images per split."""
    splits = splits or {"train": 5, "val": 3}
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, splits=splits))


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_attribute_table_covers_the_three_mask_types():
    ids = [a.attribute_id for a in ATTRIBUTES]
    assert ids[0] == "a0_safe" and len(ids) >= 11 and len(set(ids)) == len(ids)
    assert {a.mask_type for a in ATTRIBUTES[1:]} == {"human", "text", "none"}
    assert all(a.group in VISPR_GROUPS and 1 <= a.base_sensitivity <= 5 for a in ATTRIBUTES)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ATTRIBUTES[1].mask_type = "text"


def test_same_seed_same_sample_and_other_seed_differs(ci_config):
    a, b = generate_sample("train", 3, ci_config), generate_sample("train", 3, ci_config)
    for field in ("image", "class_mask", "parser_mask", "person_mask"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert (a.labels, a.people_boxes, a.image_id) == (b.labels, b.people_boxes, "train_00003")
    other_seed = generate_sample(
        "train", 3, dataclasses.replace(ci_config, seed=ci_config.seed + 1)
    )
    other_split = generate_sample("val", 3, ci_config)
    assert not np.array_equal(a.image, other_seed.image) and not np.array_equal(
        a.image, other_split.image
    )
    assert a.image.shape == (96, 96, 3) and a.image.dtype == np.uint8


def test_labels_match_masks(ci_config):
    floor = min_region_pixels(ci_config.synthpriv.image_size)
    for index in range(30):
        sample = generate_sample("train", index, ci_config)
        assert sample.class_mask.dtype == np.uint8 and sample.class_mask.shape == (96, 96)
        values = set(np.unique(sample.class_mask).tolist()) - {0}
        assert 1 not in values  # a0_safe has no region
        if sample.labels == (0,):
            assert values == set()
        else:
            assert values == {i + 1 for i in sample.labels}
            for i in sample.labels:
                assert (sample.class_mask == i + 1).sum() >= floor
        assert list(sample.labels) == sorted(set(sample.labels))
        for x0, y0, x1, y1 in sample.people_boxes:
            assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 96
            assert sample.person_mask[y0:y1, x0:x1].any()


def test_safe_images_have_only_a0_safe_and_background(ci_config):
    cfg = with_changes(ci_config, "synthpriv", safe_fraction=1.0)
    for index in range(10):
        sample = generate_sample("train", index, cfg)
        assert sample.label_ids == ("a0_safe",)
        assert not sample.class_mask.any()
        assert sample.image.std() > 5  # distractors and a textured backdrop, not a blank frame
    nothing_private = with_changes(
        ci_config, "synthpriv", safe_fraction=0.0, max_people=0, max_text_items=0, max_objects=0
    )
    assert generate_sample("train", 0, nothing_private).labels == (0,)


def test_every_attribute_appears_in_200_images(ci_config):
    seen = set()
    for index in range(200):
        seen.update(generate_sample("train", index, ci_config).label_ids)
    assert seen == set(ATTRIBUTE_IDS)


def test_simulated_parser_is_exact_without_noise_and_imperfect_with_it(ci_config):
    quiet = with_changes(ci_config, "synthpriv", parser_noise=ParserNoise(0.0, 0.0, 0.0, 0.0))
    noisy = with_changes(ci_config, "synthpriv", parser_noise=ParserNoise(2.0, 0.15, 0.1, 0.05))
    inter = union = with_people = 0
    for index in range(30):
        exact, rough = (
            generate_sample("train", index, quiet),
            generate_sample("train", index, noisy),
        )
        np.testing.assert_array_equal(exact.image, rough.image)  # noise never changes the scene
        np.testing.assert_array_equal(exact.parser_mask, exact.person_mask.astype(np.uint8) * 255)
        assert set(np.unique(rough.parser_mask).tolist()) <= {0, 255}
        with_people += bool(exact.person_mask.any())
        inter += np.logical_and(rough.parser_mask > 0, exact.person_mask).sum()
        union += np.logical_or(rough.parser_mask > 0, exact.person_mask).sum()
    assert with_people >= 10
    assert 0.5 < inter / union < 1.0


def test_faces_span_group_photos_to_portraits(ci_config):
    cfg = with_changes(ci_config, "synthpriv", image_size=320)
    widths = []
    for index in range(60):
        sample = generate_sample("train", index, cfg)
        face = sample.class_mask == ATTRIBUTE_IDS.index("a9_face_complete") + 1
        if face.any():
            cols = np.nonzero(face.any(axis=0))[0]
            widths.append((cols.max() + 1 - cols.min()) / 320)
    assert len(widths) >= 15
    assert min(widths) < 0.08 and max(widths) > 0.25  # group photos and close portraits


def test_simulated_face_detector_is_exact_without_noise_and_imperfect_with_it(ci_config):
    cfg = with_changes(ci_config, "synthpriv", image_size=320)
    quiet = with_changes(cfg, "synthpriv", face_noise=FaceNoise(0.0, 0.0, 0.0, 0.0, 0.0))
    noisy = with_changes(cfg, "synthpriv", face_noise=FaceNoise(0.3, 10.0, 0.4, 0.5, 0.1))
    exact = rough = complete = 0
    for index in range(40):
        clean, loose = (
            generate_sample("train", index, quiet),
            generate_sample("train", index, noisy),
        )
        np.testing.assert_array_equal(clean.image, loose.image)  # noise never changes the scene
        face = np.isin(clean.class_mask, [ATTRIBUTE_IDS.index("a9_face_complete") + 1])
        complete += bool(face.any())
        for x0, y0, x1, y1, score in clean.face_boxes:  # each box holds a drawn face's pixels
            assert 0.6 <= score <= 0.99 and 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 320
        exact += len(clean.face_boxes)
        rough += len(loose.face_boxes)
        boxes_mask = np.zeros((320, 320), bool)
        for x0, y0, x1, y1, _ in clean.face_boxes:
            # PIL's ellipse includes its x1 / y1 pixel: one pixel of slack
            boxes_mask[int(y0) : int(y1) + 2, int(x0) : int(x1) + 2] = True
        assert not (face & ~boxes_mask).any()  # every complete face lies in a box
    assert complete >= 10 and exact >= complete
    assert rough != exact


def test_user_preferences():
    prefs = user_preferences(30, seed=0)
    assert prefs.shape == (30, len(ATTRIBUTES)) and np.issubdtype(prefs.dtype, np.integer)
    assert prefs.min() >= 1 and prefs.max() <= 5
    assert (prefs[:, 0] == 1).all() and len(np.unique(prefs[:, 1:])) > 2
    np.testing.assert_array_equal(prefs, user_preferences(30, seed=0))
    assert not np.array_equal(prefs, user_preferences(30, seed=1))
    with pytest.raises(ValueError):
        user_preferences(0, seed=0)


def test_write_synthpriv_layout(ci_config, tmp_path):
    cfg = tiny(ci_config)
    root = tmp_path / "raw" / "synthpriv"
    stats = write_synthpriv(root, cfg, progress=False)
    assert stats["images"] == 8 and sum(stats["label_counts"].values()) >= 8
    assert sorted(p.name for p in root.parent.iterdir()) == ["synthpriv"]  # no temp folders left
    assert (root / "attributes.tsv").read_text().splitlines()[
        0
    ] == "idx\tattribute_id\tgroup\tdescription"
    # VPA's layout: no header, one row per attribute but a0_safe: id, description, 30 float ratings
    profiles_file = root / "user_studies" / "user_profiles.tsv"
    profiles = [line.split("\t") for line in profiles_file.read_text().splitlines()]
    assert [row[0] for row in profiles] == list(ATTRIBUTE_IDS[1:]) and all(
        len(row) == 2 + 30 for row in profiles
    )
    assert profiles[0][1] == ATTRIBUTES[1].description and all(
        "." in v for row in profiles for v in row[2:]
    )
    read_back = read_user_profiles(profiles_file, list(ATTRIBUTE_IDS))
    np.testing.assert_array_equal(
        read_back, user_preferences(30, cfg.seed)
    )  # a0_safe read back as 1
    assert not (root / "user_profiles.tsv").exists()
    meta = json.loads((root / "synthpriv.json").read_text())
    assert meta["seed"] == cfg.seed and meta["synthpriv"]["image_size"] == 96
    for split, n in cfg.data.splits.items():
        ids = (root / f"{split}.txt").read_text().split()
        assert ids == [f"{split}_{i:05d}" for i in range(n)]
        for index, image_id in enumerate(ids):
            record = json.loads((root / "annotations" / split / f"{image_id}.json").read_text())
            sample = generate_sample(split, index, cfg)
            assert record == {
                "id": image_id,
                "image_path": f"images/{split}/{image_id}.jpg",
                "labels": list(sample.label_ids),
            }
            image = load_rgb(root / record["image_path"], max_pixels=10**6)
            assert (
                image.shape == (96, 96, 3) and np.abs(image.astype(int) - sample.image).mean() < 6
            )
            mask_png = root / "SegmentationClass" / f"{image_id}.png"
            mask = load_mask(mask_png, n_classes=len(ATTRIBUTES), max_pixels=10**6)
            np.testing.assert_array_equal(mask, sample.class_mask)
            parser = Image.open(root / "SimulatedHumanParser" / f"{image_id}.png")
            assert parser.mode == "L"
            np.testing.assert_array_equal(np.asarray(parser), sample.parser_mask)
            faces = json.loads((root / "SimulatedFaceDetector" / f"{image_id}.json").read_text())
            assert faces == [list(box) for box in sample.face_boxes]


def test_write_is_byte_identical_and_replaces_the_old_root(ci_config, tmp_path):
    cfg = tiny(ci_config, train=4)
    first, second = tmp_path / "a" / "synthpriv", tmp_path / "b" / "synthpriv"
    second.mkdir(parents=True)
    (second / "stale.txt").write_text("from an older run")
    write_synthpriv(first, cfg, progress=False)
    write_synthpriv(second, cfg, progress=False)
    assert tree_digest(first) == tree_digest(second)
    assert not (second / "stale.txt").exists()
    assert sorted(p.name for p in second.parent.iterdir()) == ["synthpriv"]


def test_a_failed_write_keeps_the_old_data_set(ci_config, tmp_path, monkeypatch):
    root = tmp_path / "synthpriv"
    write_synthpriv(root, tiny(ci_config, train=2), progress=False)
    before = tree_digest(root)
    calls = []

    def failing(split, index, cfg):
        calls.append(index)
        if index == 2:
            raise RuntimeError("killed")
        return generate_sample(split, index, cfg)

    monkeypatch.setattr(synthpriv, "generate_sample", failing)
    with pytest.raises(RuntimeError):
        write_synthpriv(root, tiny(ci_config, train=5), progress=False)
    assert calls == [0, 1, 2] and tree_digest(root) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthpriv"]


def test_written_data_set_reads_back(ci_config):
    readers = pytest.importorskip("privobfnet.data.readers")
    cfg = tiny(ci_config, train=6, val=4)
    write_synthpriv(Path(cfg.data.raw_dir) / "synthpriv", cfg, progress=False)
    manifests = readers.read_dataset(cfg.data)
    assert set(manifests) == {"train", "val"}
    for split, df in manifests.items():
        assert list(df.attrs["class_names"]) == list(ATTRIBUTE_IDS)
        assert df["privacy_score"].between(0, 1).all()
        for index, row in enumerate(df.itertuples()):
            sample = generate_sample(split, index, cfg)
            assert row.image_id == sample.image_id
            assert [i for i, v in enumerate(row.labels) if v] == list(sample.labels)
            assert (row.privacy_score == 0.0) == (sample.labels == (0,))
            assert Path(row.mask_path).is_file()


def test_samples_figure(ci_config, tmp_path):
    from matplotlib.figure import Figure

    from privobfnet.viz import samples_figure

    samples = [generate_sample("train", i, ci_config) for i in range(3)]
    fig = samples_figure(samples, ATTRIBUTE_IDS)
    assert isinstance(fig, Figure) and len(fig.axes) == 2 * 6
    titles = [ax.get_title() for ax in fig.axes]
    assert any(ATTRIBUTE_IDS[samples[0].labels[-1]] in t for t in titles)
    fig.savefig(tmp_path / "samples.png")
    assert Image.open(tmp_path / "samples.png").size[0] > 500


def test_samples_know_the_strings_they_drew(ci_config):
    kinds = {a.attribute_id for a in synthpriv.ATTRIBUTES if a.mask_type == "text"}
    with_text = 0
    for index in range(30):
        sample = synthpriv.generate_sample("test", index, ci_config)
        assert {a for a, _ in sample.texts if a} <= set(sample.label_ids)  # visible lines only
        assert all(text.strip() for _, text in sample.texts)
        assert kinds & set(sample.label_ids) <= {
            a for a, _ in sample.texts
        }  # and every text label has one
        with_text += bool(sample.texts)
    assert with_text >= 10


_TEXT_DIGEST = """
import hashlib
import numpy as np
from privobfnet.data.synthpriv import TEXT_ATTRIBUTES, text
digest = hashlib.sha256()
for seed in range(3000):
    rng = np.random.default_rng(seed)
    for attribute in TEXT_ATTRIBUTES:
        digest.update(repr(text.private_text(rng, attribute)).encode())
    digest.update(text.ordinary_text(rng).encode())
print(digest.hexdigest())
"""


def test_text_is_the_same_under_any_hash_seed():
    """Faker's it_IT cities come from a set: unsorted, a seeded city() follows PYTHONHASHSEED."""
    digests = set()
    for hash_seed in ("0", "1"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", _TEXT_DIGEST],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        digests.add(done.stdout.strip())
    assert len(digests) == 1
