"""The validate stage: a good data set writes manifests; each kind of bad input fails it, names the
offending file and the rule, and leaves no manifest behind."""

from __future__ import annotations

import json
import os
import runpy
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import ops.params
import ops.tracking
import privobfnet.data.readers
from ops.tracking import STAGE_RUNS
from privobfnet.data.checks import row_checks
from privobfnet.data.errors import DataError
from privobfnet.data.manifest import build_manifest, read_manifest
from stages import validate
from tests.conftest import with_changes
from tests.fixtures.real import truncate_file, write_bomb_png, write_jpeg, write_palette_mask

CLASSES = ["a0_safe", "a9_face_complete", "a17_color"]
W, H = 16, 12
RAW = Path(
    "raw"
)  # relative to the test's cwd, as manifests store paths relative to the project root


def good_mask(value: int = 2) -> np.ndarray:
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[2:8, 3:10] = value
    mask[0, :] = 255
    return mask


def make_dataset() -> dict[str, list[dict]]:
    """train: a JPEG and a PNG with masks, a JPEG without; val: two JPEGs without scores."""
    write_jpeg(RAW / "t1.jpg", W, H, noise=True)
    write_palette_mask(RAW / "t1_mask.png", good_mask(2))  # a9_face_complete, t1's one label
    (RAW / "t2.png").parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (W, H), (10, 200, 30)).save(RAW / "t2.png")
    write_palette_mask(RAW / "t2_mask.png", good_mask(3))
    write_jpeg(RAW / "t3.jpg", W, H)
    write_jpeg(RAW / "v1.jpg", W, H)
    write_jpeg(RAW / "v2.jpg", W, H)

    def record(split, image_id, path, labels, score, mask=None):
        return dict(
            image_id=image_id,
            path=str(RAW / path),
            split=split,
            labels=labels,
            privacy_score=score,
            mask_path=None if mask is None else str(RAW / mask),
            width=W,
            height=H,
        )

    return {
        "train": [
            record("train", "t1", "t1.jpg", [0, 1, 0], 0.75, "t1_mask.png"),
            record("train", "t2", "t2.png", [0, 1, 1], 1.0, "t2_mask.png"),
            record("train", "t3", "t3.jpg", [1, 0, 0], 0.0),
        ],
        "val": [
            record("val", "v1", "v1.jpg", [0, 0, 1], None),
            record("val", "v2", "v2.jpg", [1, 0, 0], None),
        ],
    }


class FakeRun:
    def __init__(self):
        self.logged: list[dict] = []
        self.artifacts: list[str] = []

    def log_metrics(self, metrics):
        self.logged.append(metrics)

    def log_artifact(self, path, artifact_path=None):
        self.artifacts.append(str(path))


@pytest.fixture
def harness(tmp_path, monkeypatch, ci_config):
    """cwd = tmp_path with a good data set; ``run(records, **data_changes)`` runs the stage."""
    monkeypatch.chdir(tmp_path)
    records = make_dataset()
    fake = FakeRun()
    calls = []

    @contextmanager
    def fake_stage_run(stage, cfg, **kwargs):
        calls.append(stage)
        yield fake

    monkeypatch.setattr(validate, "stage_run", fake_stage_run)

    def run(records, *, skipped=None, validate_changes=None, attrs=None, **data_changes):
        manifests = {
            s: build_manifest(r, dataset="synthpriv", class_names=CLASSES)
            for s, r in records.items()
        }
        for split, n in (skipped or {}).items():
            manifests[split].attrs["skipped"] = n
        for split, extra in (attrs or {}).items():
            manifests[split].attrs.update(extra)
        monkeypatch.setattr(validate, "read_dataset", lambda data_cfg: manifests)
        data_changes.setdefault("splits", {"train": 3, "val": 2})
        cfg = with_changes(ci_config, "data", **data_changes)
        return validate.main(with_changes(cfg, "validate", **(validate_changes or {})))

    run.records, run.fake, run.calls, run.cfg = records, fake, calls, ci_config
    return run


def manifest_files(cfg) -> list[Path]:
    return sorted(Path(cfg.data.manifest_dir).glob("*.parquet"))


def failure_block(report: str, rule: str) -> str:
    """The failure line of ``rule`` and its offender lines."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("- FAIL") and rule in line)
    end = next(
        (i for i in range(start + 1, len(lines)) if not lines[i].startswith("  - ")), len(lines)
    )
    return "\n".join(lines[start:end])


def test_good_dataset_passes_and_writes_manifests(harness):
    metrics = harness(harness.records)
    assert metrics["success"] is True and metrics["failed_expectations"] == 0
    assert metrics["splits"]["train"] == {
        "rows": 3,
        "decoded": 3,
        "failed_expectations": 0,
        "success": True,
    }
    assert [p.name for p in manifest_files(harness.cfg)] == ["train.parquet", "val.parquet"]
    train = read_manifest(Path(harness.cfg.data.manifest_dir) / "train.parquet")
    assert train["image_id"].tolist() == ["t1", "t2", "t3"] and train["labels"].tolist()[1] == [
        0,
        1,
        1,
    ]
    assert train.attrs["class_names"] == CLASSES and "file_exists" not in train.columns
    report = Path("reports/validation.md").read_text()
    assert "PASSED" in report and "FAIL" not in report and report.count("| pass |") == 2 * 17
    assert json.loads(Path("reports/metrics/validate.json").read_text()) == metrics
    assert harness.calls == ["validate"] and harness.fake.logged == [metrics]
    assert not list(
        Path(harness.cfg.data.manifest_dir).glob(".*.tmp")
    )  # atomic writes left no temp file
    figure = Path(f"reports/figures/{harness.cfg.data.dataset}_samples.png")
    assert harness.fake.artifacts == [str(figure)]
    assert Image.open(figure).size[0] > 300  # a real rendered grid, not an empty file


def _dup_id(recs):
    recs["train"][1]["image_id"] = "t1"
    return "t2.png", "image_id is unique", "`t1` `raw/t1.jpg`"


def _missing_file(recs):
    os.remove(RAW / "t2.png")
    return "t2.png", "image file exists", "file missing"


def _truncated_jpeg(recs):
    truncate_file(RAW / "t1.jpg", keep=0.9)
    return "t1.jpg", "image decodes", "corrupt or truncated image"


def _jpeg_header_cut(recs):
    truncate_file(RAW / "t3.jpg", keep=0.3)
    return "t3.jpg", "image decodes", "not a readable image"


def _bomb(recs):
    write_bomb_png(RAW / "t2.png", 20000, 20000)
    return "t2.png", "image decodes", "decompression bomb"


def _label_two(recs):
    recs["train"][0]["labels"] = [0, 2, 0]
    return "t1.jpg", "label values are 0 or 1", "labels = [0, 2, 0]"


def _label_length(recs):
    recs["val"][1]["labels"] = [1, 0]
    return "v2.jpg", "multi-hot vector of length 3", "[1, 0]"


def _no_label(recs):
    recs["train"][2]["labels"] = [0, 0, 0]
    return "t3.jpg", "at least one label", "[0, 0, 0]"


def _score(recs):
    recs["train"][1]["privacy_score"] = 1.5
    return "t2.png", "privacy_score is in [0, 1]", "privacy_score = 1.5"


def _mask_size(recs):
    write_palette_mask(RAW / "t1_mask.png", np.zeros((H, W + 4), dtype=np.uint8))
    return "t1_mask.png", "mask has the image's size", "mask is 20x12, image is 16x12"


def _mask_value(recs):
    write_palette_mask(RAW / "t2_mask.png", good_mask(7))
    return "t2_mask.png", "mask has the image's size", "mask label out of range"


def _mask_class_not_labelled(recs):
    write_palette_mask(RAW / "t1_mask.png", good_mask(3))  # a17_color painted, t1 labelled a9 only
    return (
        "t1_mask.png",
        "mask classes are among the image's labels",
        "a17_color (value 3) painted but not labelled",
    )


def _safe_with_another(recs):
    recs["train"][2]["labels"] = [1, 0, 1]
    return "t3.jpg", "a0_safe is not combined with another attribute", "labels = [1, 0, 1]"


def _id_in_two_splits(recs):
    recs["val"][0]["image_id"] = "t3"
    return "t3.jpg", "image id is in no other split", "also in split 'val' (raw/v1.jpg)"


def _mask_missing(recs):
    os.remove(RAW / "t1_mask.png")
    return "t1_mask.png", "mask file exists", "file missing"


def _manifest_size(recs):
    recs["train"][2]["width"] = 99
    return "t3.jpg", "image size equals the manifest", "file is 16x12, manifest says 99x12"


BAD_INPUTS = [
    _dup_id,
    _missing_file,
    _truncated_jpeg,
    _jpeg_header_cut,
    _bomb,
    _label_two,
    _label_length,
    _no_label,
    _score,
    _mask_size,
    _mask_value,
    _mask_class_not_labelled,
    _safe_with_another,
    _id_in_two_splits,
    _mask_missing,
    _manifest_size,
]


@pytest.mark.parametrize("spoil", BAD_INPUTS, ids=lambda f: f.__name__.strip("_"))
def test_bad_input_fails_names_file_and_rule_writes_no_manifest(harness, spoil):
    offending_file, rule, detail = spoil(harness.records)
    with pytest.raises(validate.ValidationFailed) as failure:
        harness(harness.records)
    report = Path("reports/validation.md").read_text()
    for text in (report, failure.value.summary):
        block = failure_block(text, rule)
        assert offending_file in block and detail in block, block
    assert "FAILED" in report and not manifest_files(harness.cfg)
    metrics = json.loads(Path("reports/metrics/validate.json").read_text())
    assert metrics["success"] is False and metrics["failed_expectations"] >= 1
    assert harness.fake.logged == [metrics]


def test_row_count_differs_from_configured_split_size(harness):
    del harness.records["val"][1]
    with pytest.raises(validate.ValidationFailed) as failure:
        harness(harness.records)
    assert "FAIL **row count equals data.splits.val (2)**: 1 rows" in failure.value.summary
    metrics = json.loads(Path("reports/metrics/validate.json").read_text())
    assert (
        metrics["splits"]["val"]["failed_expectations"] == 1
        and metrics["splits"]["train"]["success"]
    )
    assert not manifest_files(harness.cfg)


def test_images_skipped_by_the_reader_count_towards_the_split_size(harness):
    metrics = harness(harness.records, skipped={"val": 1}, splits={"train": 3, "val": 3})
    assert metrics["success"] and len(manifest_files(harness.cfg)) == 2
    assert (
        "row count equals data.splits.val (3) minus 1 images without annotations | pass | 2 rows"
        in Path("reports/validation.md").read_text()
    )


def test_decode_sample_limits_full_decoding_per_split(harness):
    metrics = harness(harness.records, validate_changes={"decode_sample": 1})
    assert metrics["success"] and [s["decoded"] for s in metrics["splits"].values()] == [1, 1]
    metrics = harness(harness.records, validate_changes={"decode_images": False})
    assert metrics["success"] and [s["decoded"] for s in metrics["splits"].values()] == [0, 0]


@pytest.mark.parametrize("allow_grayscale", [True, False])
def test_grayscale_is_converted_only_when_allowed(harness, allow_grayscale):
    Image.new("L", (W, H), 128).save(RAW / "t2.png")
    if allow_grayscale:
        assert harness(harness.records, allow_grayscale=True)["success"]
        assert len(manifest_files(harness.cfg)) == 2
    else:
        with pytest.raises(validate.ValidationFailed) as failure:
            harness(harness.records, allow_grayscale=False)
        assert "t2.png: grayscale image" in failure_block(failure.value.summary, "image decodes")
        assert not manifest_files(harness.cfg)


def test_reader_error_is_a_failed_check_not_a_traceback(harness, monkeypatch):
    def broken_reader(data_cfg):
        raise DataError("raw/annotations/train/t9.json", "annotation is not valid JSON", "line 1")

    monkeypatch.setattr(validate, "read_dataset", broken_reader)
    with pytest.raises(validate.ValidationFailed) as failure:
        validate.main(harness.cfg)
    block = failure_block(failure.value.summary, "annotations are readable")
    assert "raw/annotations/train/t9.json" in block and "annotation is not valid JSON" in block
    assert json.loads(Path("reports/metrics/validate.json").read_text())["success"] is False
    assert not manifest_files(harness.cfg)


def test_command_line_exits_non_zero_with_the_summary(harness, monkeypatch):
    """``python -m stages.validate`` on a bad data set: exit status 1, failures on stderr."""
    harness.records["train"][0]["privacy_score"] = 1.5
    manifests = {
        s: build_manifest(r, dataset="synthpriv", class_names=CLASSES)
        for s, r in harness.records.items()
    }
    cfg = with_changes(harness.cfg, "data", splits={"train": 3, "val": 2})
    monkeypatch.setattr(privobfnet.data.readers, "read_dataset", lambda data_cfg: manifests)
    monkeypatch.setattr(ops.params, "load_params", lambda: cfg)
    monkeypatch.setattr(ops.tracking, "stage_run", validate.stage_run)  # the harness's fake
    with (
        pytest.warns(RuntimeWarning, match="found in sys.modules"),
        pytest.raises(SystemExit) as exit_info,
    ):
        runpy.run_module("stages.validate", run_name="__main__")
    message = str(exit_info.value.code)  # sys.exit(text) prints text to stderr and exits 1
    assert (
        "privacy_score is in [0, 1]" in message
        and "t1.jpg" in message
        and "manifests not written" in message
    )
    assert not manifest_files(cfg)


def test_row_checks_decode_sample_is_deterministic_and_order_free(harness):
    frame = build_manifest(harness.records["train"], dataset="synthpriv", class_names=CLASSES)
    sampled = row_checks(frame, max_pixels=10**6, allow_grayscale=True, decode_sample=1, seed=3)
    assert sampled["decodes"].notna().sum() == 1 and sampled["file_exists"].all()
    chosen = set(sampled.loc[sampled["decodes"].notna(), "image_id"])
    reversed_frame = frame.iloc[::-1].reset_index(drop=True)
    reversed_frame.attrs = frame.attrs
    again = row_checks(
        reversed_frame, max_pixels=10**6, allow_grayscale=True, decode_sample=1, seed=3
    )
    assert set(again.loc[again["decodes"].notna(), "image_id"]) == chosen


def test_row_checks_without_decoding_still_reads_headers(harness):
    os.remove(RAW / "t3.jpg")
    write_bomb_png(RAW / "t2.png", 20000, 20000)
    frame = build_manifest(harness.records["train"], dataset="synthpriv", class_names=CLASSES)
    checked = row_checks(
        frame, max_pixels=10**6, allow_grayscale=True, decode_sample=0, seed=0, decode_images=False
    )
    decodes = checked["decodes"].tolist()
    assert (
        decodes[0] is pd.NA and decodes[1] is False and decodes[2] is False
    )  # unknown, bomb, missing
    assert (
        "decompression bomb" in checked["decode_error"][1]
        and "file missing" in checked["decode_error"][2]
    )
    assert checked["file_exists"].tolist() == [True, True, False]
    assert checked["mask_matches_image"].tolist()[0] is True  # mask size checked from its header
    assert checked["n_labels"].tolist() == [1, 2, 1] and checked["labels_length"].eq(3).all()


def test_mlflow_run_mirrors_metrics_and_is_marked_failed(tmp_path, monkeypatch, ci_config):
    """With the real tracking module: one run, metrics mirrored under the same names, status FAILED."""
    import mlflow

    monkeypatch.chdir(tmp_path)
    records = make_dataset()
    records["train"][2]["labels"] = [0, 0, 0]
    manifests = {
        s: build_manifest(r, dataset="synthpriv", class_names=CLASSES) for s, r in records.items()
    }
    monkeypatch.setattr(validate, "read_dataset", lambda data_cfg: manifests)
    cfg = with_changes(ci_config, "data", splits={"train": 3, "val": 2})
    with pytest.raises(validate.ValidationFailed):
        validate.main(cfg)
    mlflow.set_tracking_uri(cfg.tracking.uri)
    runs = mlflow.search_runs(experiment_names=[cfg.tracking.experiment], filter_string=STAGE_RUNS)
    assert runs["status"].tolist() == ["FAILED"] and runs["tags.privobfnet.stage"].tolist() == [
        "validate"
    ]
    assert runs["metrics.splits.train.failed_expectations"].tolist() == [1.0]
    assert runs["metrics.splits.val.rows"].tolist() == [2.0]


def test_every_image_mode_passes_once_converted(harness):
    Image.new("CMYK", (W, H), (10, 200, 30, 40)).save(RAW / "t1.jpg")  # Adobe-style CMYK JPEG
    Image.new("RGBA", (W, H), (1, 2, 3, 4)).save(RAW / "t2.png")  # a screenshot with alpha
    Image.fromarray(np.full((H, W), 40000, dtype=np.uint16)).save(RAW / "t3.png")
    harness.records["train"][2]["path"] = str(RAW / "t3.png")
    metrics = harness(harness.records)
    assert metrics["success"] and metrics["splits"]["train"]["decoded"] == 3


def test_splits_may_share_ids_only_where_the_data_set_nests_them(harness):
    nested = [dict(r, split="train_aug") for r in harness.records["train"]]
    records = {**harness.records, "train_aug": nested}
    splits = {"train": 3, "val": 2, "train_aug": 3}
    assert harness(records, dataset="voc", splits=splits)[
        "success"
    ]  # VOC's train lies in train_aug
    with pytest.raises(validate.ValidationFailed) as failure:
        harness(records, dataset="synthpriv", splits=splits)
    block = failure_block(failure.value.summary, "image id is in no other split")
    assert (
        "`t1` `raw/t1.jpg`: also in split 'train_aug' (raw/t1.jpg)" in block
        and "3 of 3 rows" in block
    )


def test_a_split_left_empty_after_skipping_fails_naming_its_source(harness):
    records = {**harness.records, "val": []}
    source = "raw/annotations/instances_val2014.json"
    with pytest.raises(validate.ValidationFailed) as failure:
        harness(records, skipped={"val": 2}, attrs={"val": {"source": source}})
    block = failure_block(failure.value.summary, "split has at least one row")
    assert f"`{source}`" in block and "0 rows" in block
    report = Path("reports/validation.md").read_text()
    assert (
        "| row count equals data.splits.val (2) minus 2 images without annotations | pass |"
        in report
    )
    assert not manifest_files(harness.cfg)


@pytest.mark.parametrize("score, passes", [(-0.5, True), (-0.7, False)])
def test_score_range_follows_the_rescale(harness, score, passes):
    harness.records["train"][1]["privacy_score"] = score
    if passes:
        assert harness(harness.records, privacy_rescale="vpa")["success"]
        return
    with pytest.raises(validate.ValidationFailed) as failure:
        harness(harness.records, privacy_rescale="vpa")
    assert "privacy_score = -0.7" in failure_block(
        failure.value.summary, "privacy_score is in [-0.6, 1] or null"
    )
