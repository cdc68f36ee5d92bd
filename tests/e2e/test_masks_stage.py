"""The masks stage on the ci profile's SynthPriv: outputs, resume after a kill, bad input, worker
crashes, and the stage inside the DVC pipeline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ops.tracking import STAGE_RUNS
from privobfnet.config import parse_config
from privobfnet.data.errors import DataError
from privobfnet.data.manifest import read_manifest, write_manifest
from privobfnet.data.readers import dataset_root, read_dataset
from privobfnet.masks.assets import CACHE_ENV
from privobfnet.text.lines import read_lines
from stages import masks as stage
from tests.conftest import ci_params

N_IMAGES = 40  # ci profile: 24 + 8 + 8


def stage_params(data_base: Path, tmp_path: Path, **masks) -> dict:
    params = ci_params(data_base)
    params["tracking"]["uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params["masks"].update({"workers": 1, "out_dir": str(tmp_path / "masks"), **masks})
    return params


@pytest.fixture
def in_tmp(tmp_path, monkeypatch, model_cache):
    monkeypatch.chdir(tmp_path)  # reports/ are written relative to the working directory
    monkeypatch.setenv(CACHE_ENV, str(model_cache))
    return tmp_path


def index_of(out_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(out_dir / "index.parquet")


def run_facts(workdir: Path) -> dict:
    """What the last run wrote beside its metrics: counts of this run, seconds, whether it resumed."""
    return json.loads((workdir / "reports/runs/masks.json").read_text())


def test_stage_writes_masks_index_metrics_and_figure(synthpriv_data, in_tmp):
    cfg = parse_config(stage_params(synthpriv_data, in_tmp))
    metrics = stage.main(cfg)
    out = in_tmp / "masks"
    index = index_of(out)
    assert list(index.columns) == [
        "image_id",
        "split",
        "human_path",
        "text_path",
        "face_boxes",
        "fallback",
        "saliency_path",
    ]
    assert index["saliency_path"].isna().all()  # masks.saliency off
    assert len(index) == N_IMAGES and sorted(index["split"].unique()) == ["test", "train", "val"]
    parser_dir = Path(dataset_root(cfg.data)) / "SimulatedHumanParser"
    for row in index.itertuples():
        human, text = np.asarray(Image.open(row.human_path)), np.asarray(Image.open(row.text_path))
        assert human.shape == text.shape == (96, 96) and human.dtype == np.uint8
        assert (human == np.asarray(Image.open(parser_dir / f"{row.image_id}.png"))).all()
        assert set(np.unique(text)) <= {0, 255}
        assert all(
            len(box) == 5 and 0 <= box[0] < box[2] <= 96 for box in json.loads(row.face_boxes)
        )
    assert not index["fallback"].any()
    assert set(metrics["backends"]) == {"human.simulated", "text.rapidocr", "face.mediapipe"}
    facts = run_facts(in_tmp)
    assert facts["computed"] == N_IMAGES and metrics["failed"] == 0 and facts["resumed"] is False
    assert facts["backends"]["text.rapidocr"]["images_per_s"] > 0 and "seconds" not in json.dumps(
        metrics
    )
    assert 0 < metrics["backends"]["text.rapidocr"]["coverage"] < 0.6
    assert json.loads((in_tmp / "reports/metrics/masks.json").read_text()) == metrics
    lines = read_lines(out / "lines.parquet")  # every detected line, read (masks.read_text)
    assert set(lines) <= set(index["image_id"]) and metrics["text_lines"]["images"] == N_IMAGES
    assert sum(map(len, lines.values())) == metrics["text_lines"]["lines"] > 0
    assert any(line.text and line.words for image_lines in lines.values() for line in image_lines)
    assert (in_tmp / stage.FIGURE_PATH).stat().st_size > 20_000
    mlflow.set_tracking_uri(cfg.tracking.uri)
    (run,) = mlflow.search_runs(
        experiment_names=["privobfnet"], filter_string=STAGE_RUNS, output_format="list"
    )
    assert (
        run.info.run_name == "masks"
        and run.data.metrics["backends.text.rapidocr.images"] == N_IMAGES
    )


def test_killed_run_resumes_and_a_finished_one_starts_afresh(synthpriv_data, in_tmp):
    cfg = parse_config(stage_params(synthpriv_data, in_tmp))
    stage.main(cfg)
    out, before = in_tmp / "masks", index_of(in_tmp / "masks")
    ids = list(before["image_id"])
    # what a kill leaves: the run never marked complete, some masks missing, one half-written,
    # the face log's last line torn
    state = json.loads((out / ".state.json").read_text())
    (out / ".state.json").write_text(json.dumps({**state, "complete": False}))
    for image_id in ids[:3]:
        (out / "text" / f"{image_id}.png").unlink()
    damaged = out / "human" / f"{ids[5]}.png"
    damaged.write_bytes(damaged.read_bytes()[:40])
    face_log = (out / "faces.jsonl").read_text().splitlines()
    torn_id = json.loads(face_log[-1])["image_id"]
    (out / "faces.jsonl").write_text("\n".join(face_log[:-1]) + "\n" + face_log[-1][:15])
    untouched = out / "text" / f"{ids[10]}.png"
    stamp = untouched.stat().st_mtime_ns

    stage.main(cfg)
    assert run_facts(in_tmp)["resumed"] is True
    assert run_facts(in_tmp)["computed"] == len({*ids[:3], ids[5], torn_id})
    assert untouched.stat().st_mtime_ns == stamp  # valid masks are not rewritten
    assert np.asarray(Image.open(damaged)).shape == (96, 96)
    pd.testing.assert_frame_equal(index_of(out), before)

    stage.main(cfg)  # after a completed run: DVC re-runs only on change, so start afresh
    assert run_facts(in_tmp)["resumed"] is False and run_facts(in_tmp)["computed"] == N_IMAGES
    assert untouched.stat().st_mtime_ns != stamp


def test_a_resumed_run_reads_the_lines_it_had_not_logged(synthpriv_data, in_tmp):
    cfg = parse_config(stage_params(synthpriv_data, in_tmp))
    stage.main(cfg)
    out = in_tmp / "masks"
    before = read_lines(out / "lines.parquet")
    state = json.loads((out / ".state.json").read_text())
    (out / ".state.json").write_text(json.dumps({**state, "complete": False}))
    log = (out / "lines.jsonl").read_text().splitlines()
    (out / "lines.jsonl").write_text("\n".join(log[:-2]) + "\n")  # two images' lines lost
    stage.main(cfg)
    assert run_facts(in_tmp)["resumed"] is True and run_facts(in_tmp)["computed"] == 2
    after = read_lines(out / "lines.parquet")
    assert {k: [line.text for line in v] for k, v in after.items()} == {
        k: [line.text for line in v] for k, v in before.items()
    }


def test_two_runs_with_two_workers_write_byte_identical_outputs(
    synthpriv_data, tmp_path, monkeypatch, model_cache
):
    """Workers finish in any order; what the stage writes must not depend on it."""
    monkeypatch.setenv(CACHE_ENV, str(model_cache))
    outputs = []
    for run in ("first", "second"):
        workdir = tmp_path / run
        workdir.mkdir()
        monkeypatch.chdir(workdir)
        params = stage_params(synthpriv_data, tmp_path, workers=2)
        params["masks"]["out_dir"] = (
            "masks"  # relative, as in the pipeline: the index stores these paths
        )
        stage.main(parse_config(params))
        files = sorted(
            p
            for p in workdir.rglob("*")
            if p.is_file() and not {"runs", "mlartifacts"} & set(p.parts)
        )
        outputs.append({str(p.relative_to(workdir)): p.read_bytes() for p in files})
    first, second = outputs
    assert {"masks/index.parquet", "masks/faces.jsonl", "reports/metrics/masks.json"} <= set(first)
    assert len([name for name in first if name.startswith("masks/text/")]) == N_IMAGES
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []
    face_ids = [
        json.loads(line)["image_id"] for line in first["masks/faces.jsonl"].decode().splitlines()
    ]
    assert face_ids == sorted(face_ids) and len(face_ids) == N_IMAGES


def test_changed_settings_do_not_resume(synthpriv_data, in_tmp):
    stage.main(parse_config(stage_params(synthpriv_data, in_tmp, text_margin_px=0)))
    out = in_tmp / "masks"
    state = json.loads((out / ".state.json").read_text())
    (out / ".state.json").write_text(json.dumps({**state, "complete": False}))  # killed ...
    narrow = {p.name: np.asarray(Image.open(p)) for p in (out / "text").iterdir()}
    stage.main(
        parse_config(stage_params(synthpriv_data, in_tmp, text_margin_px=3))
    )  # ... then edited
    assert run_facts(in_tmp)["resumed"] is False and run_facts(in_tmp)["computed"] == N_IMAGES
    wide = {p.name: np.asarray(Image.open(p)) for p in (out / "text").iterdir()}
    assert sum(int((wide[n] > 0).sum()) for n in wide) > sum(
        int((narrow[n] > 0).sum()) for n in narrow
    )


def test_placed_saliency_maps_are_checked_first_then_recorded(synthpriv_data, in_tmp):
    params = stage_params(synthpriv_data, in_tmp, saliency=True)
    params["train"]["crop_target"] = "l2g"
    params["data"]["raw_dir"] = str(in_tmp / "raw")
    params["data"]["manifest_dir"] = str(in_tmp / "manifests")
    shutil.copytree(Path(ci_params(synthpriv_data)["data"]["raw_dir"]), in_tmp / "raw")
    cfg = parse_config(params)
    Path(cfg.data.manifest_dir).mkdir()
    sal = Path(dataset_root(cfg.data)) / "Sal"
    sal.mkdir()
    frames = read_dataset(cfg.data)
    rows = pd.concat(list(frames.values()))
    for row in rows.itertuples():
        Image.new("L", (int(row.width), int(row.height)), 200).save(
            sal / f"{Path(row.path).stem}.png"
        )
    for split, frame in frames.items():  # manifests naming the copied images
        write_manifest(frame, Path(cfg.data.manifest_dir) / f"{split}.parquet")
    missing = sal / f"{Path(rows['path'].iloc[5]).stem}.png"
    missing.unlink()
    with pytest.raises(DataError, match=f"1 of {N_IMAGES} saliency maps missing") as err:
        stage.main(cfg)
    assert missing.name in str(err.value)
    assert not (in_tmp / "masks" / "human").exists() or not any(
        (in_tmp / "masks" / "human").iterdir()
    )
    Image.new("L", (int(rows["width"].iloc[5]), int(rows["height"].iloc[5])), 9).save(missing)
    metrics = stage.main(cfg)
    assert metrics["saliency_maps"] == N_IMAGES
    index = index_of(in_tmp / "masks")
    recorded = {Path(p).name for p in index["saliency_path"]}
    assert recorded == {f"{Path(p).stem}.png" for p in rows["path"]}


def bad_copy(synthpriv_data: Path, tmp_path: Path) -> tuple[dict, str, str]:
    """A copy of the data set with one truncated image and one image's parser output deleted."""
    params = stage_params(synthpriv_data, tmp_path)
    params["data"]["raw_dir"] = str(tmp_path / "raw")
    params["data"]["manifest_dir"] = str(tmp_path / "manifests")
    shutil.copytree(Path(ci_params(synthpriv_data)["data"]["raw_dir"]), tmp_path / "raw")
    cfg = parse_config(params)
    frames = read_dataset(cfg.data)
    truncated, unparsed = frames["train"]["image_id"].iloc[2], frames["val"]["image_id"].iloc[1]
    image = Path(frames["train"]["path"].iloc[2])
    image.write_bytes(image.read_bytes()[:300])
    (Path(dataset_root(cfg.data)) / "SimulatedHumanParser" / f"{unparsed}.png").unlink()
    for split, frame in frames.items():
        Path(cfg.data.manifest_dir).mkdir(parents=True, exist_ok=True)
        write_manifest(frame, Path(cfg.data.manifest_dir) / f"{split}.parquet")
    return params, truncated, unparsed


def test_bad_input_fails_the_stage_then_falls_back_within_budget(synthpriv_data, in_tmp):
    params, truncated, unparsed = bad_copy(synthpriv_data, in_tmp)
    out = in_tmp / "masks"
    with pytest.raises(stage.MasksFailed) as failure:
        stage.main(parse_config(params))
    message = str(failure.value)
    assert "2 image(s) failed, masks.failure_budget allows 0" in message
    assert (
        f"{truncated} (train) image:" in message and f"{unparsed} (val) human.simulated:" in message
    )
    records = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert {(r["image_id"], r["backend"]) for r in records} == {
        (truncated, "image"),
        (unparsed, "human.simulated"),
    }
    assert len(list((out / "text").iterdir())) == N_IMAGES - 1  # finished masks are kept
    assert not (out / "index.parquet").exists()
    assert json.loads((in_tmp / "reports/metrics/masks.json").read_text())["failed"] == 2

    params["masks"]["failure_budget"] = 2
    metrics = stage.main(parse_config(params))  # resumes: only the two failed images are retried
    assert run_facts(in_tmp)["resumed"] is True and metrics["failed"] == 2
    index = index_of(out).set_index("image_id")
    assert set(index.index[index["fallback"]]) == {truncated, unparsed}
    assert (np.asarray(Image.open(index.loc[truncated, "human_path"])) == 255).all()  # no weighting
    assert (np.asarray(Image.open(index.loc[unparsed, "human_path"])) == 255).all()
    assert (np.asarray(Image.open(index.loc[unparsed, "text_path"])) != 255).any()  # its OCR worked
    assert index.loc[truncated, "face_boxes"] == "[]"


def test_a_mask_kind_no_class_uses_is_all_ones_not_computed(synthpriv_data, in_tmp, monkeypatch):
    """VOC and COCO have no text class: their text masks are placeholders, no OCR runs."""
    monkeypatch.setattr(
        stage, "load_mask_types", lambda dataset, names: ["none"] * (len(names) - 1) + ["human"]
    )
    metrics = stage.main(parse_config(stage_params(synthpriv_data, in_tmp, face_backend="none")))
    index = index_of(in_tmp / "masks")
    assert index["face_boxes"].isna().all() and index["human_path"].notna().all()
    assert all((np.asarray(Image.open(p)) == 255).all() for p in index["text_path"])
    assert set(metrics["backends"]) == {"human.simulated", "text.unused"}
    assert metrics["backends"]["text.unused"]["coverage"] == 1.0


def echo_or_crash(task: stage.Task) -> dict:
    """A worker that dies (like a native crash) on the image called 'crash'."""
    if task.image_id == "crash":
        os._exit(3)
    return {"seconds": {"text": 0.0}, "coverage": {}, "faces": None, "errors": []}


def no_setup(settings) -> None:
    """An initializer with nothing to build."""


def test_a_dying_worker_fails_only_the_images_it_held():
    tasks = [
        stage.Task(name, "train", "unused", 1, 1, False)
        for name in ["crash"] + [f"ok{i}" for i in range(11)]
    ]
    results: dict[str, dict] = {}
    stage.run_tasks(
        tasks,
        None,
        2,
        lambda task, result: results.setdefault(task.image_id, result),
        worker=echo_or_crash,
        initializer=no_setup,
    )
    assert set(results) == {t.image_id for t in tasks}
    assert results["crash"]["errors"] == [("worker", "its process died on this image")]
    assert (
        sum(not r["errors"] for r in results.values()) >= len(tasks) - 4
    )  # at most 2 x workers in flight


def test_masks_stage_runs_in_the_pipeline(project, model_cache, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(model_cache))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")

    def dvc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "dvc", *args], capture_output=True, text=True, env=env
        )

    done = dvc("repro", "masks")
    assert done.returncode == 0, done.stdout + done.stderr
    index = pd.read_parquet(project / "data/masks/index.parquet")
    manifests = pd.concat(
        [read_manifest(project / f"data/manifests/{s}.parquet") for s in ("train", "val", "test")]
    )
    assert sorted(index["image_id"]) == sorted(manifests["image_id"])
    assert all((project / p).is_file() for p in [*index["human_path"], *index["text_path"]])
    metrics, facts = (
        json.loads((project / "reports/metrics/masks.json").read_text()),
        run_facts(project),
    )
    assert facts["workers"] == 2 and facts["computed"] == N_IMAGES and metrics["failed"] == 0
    assert "masks" not in dvc("status", "masks").stdout.replace(
        "Data and pipelines are up to date", ""
    )
