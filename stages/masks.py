"""Stage `masks`: human and text masks and face boxes for every manifest image (paper section 3.2).

Writes under ``masks.out_dir``: ``human/<id>.png`` and ``text/<id>.png`` (8-bit L, mask * 255,
the image's size), ``index.parquet`` (image_id, split, human_path, text_path, face_boxes as a
JSON string of [[x0, y0, x1, y1, score], ...], fallback, saliency_path), ``faces.jsonl`` and
``failures.jsonl``; with ``masks.read_text`` every detected line is also recognised and
``lines.parquet`` holds them (polygon, text, confidence, word boxes: ``privobfnet.text.lines``).
With ``masks.saliency``, every image's placed saliency map is checked (before any mask is
computed) and its path recorded in the index.
A kind of mask that no class of the data set uses (``load_mask_types``: no ``text`` class on VOC
or COCO) is not computed: its files are all ones (no weighting), backend ``unused`` in the metrics.
face_boxes is null with ``face_backend: none``.

Runs over ``masks.workers`` spawned processes, each building its backends once, or, with
``masks.scheduler`` (tcp://host:port), on that dask.distributed cluster's workers
(``ops.masks.cluster``; this process then writes the masks as they come back). Resumable: a
killed run leaves finished masks (written atomically) and face records, and the next run with
the same settings, manifests and code skips every mask that decodes at the right size. A run
after a completed one (DVC re-runs the stage only when something changed) starts afresh.
An image a backend fails on is recorded in failures.jsonl; beyond ``masks.failure_budget`` such
images the stage fails with a summary; within it they get an all-ones mask (no weighting) and
``fallback`` = true in the index.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ops.masks.cluster import run_tasks_on_dask
from ops.masks.pool import (
    MasksFailed,
    ResultLog,
    Settings,
    Task,
    backend_names,
    fingerprint,
    init_worker,
    prepare_out_dir,
    run_tasks,
    sort_jsonl,
    worker_threads,
    write_fallbacks,
)
from ops.masks.summary import MaskRunStats, failure_summary, summarize
from ops.outputs import MASKS_SCHEDULER_ENV, figure, write_metrics
from ops.params import load_params
from ops.tracking import stage_run
from privobfnet.config import SCHEDULER_PATTERN, Config
from privobfnet.data.images import load_rgb
from privobfnet.data.manifest import read_manifest
from privobfnet.data.mask_types import load_mask_types
from privobfnet.data.priors import (
    KINDS,
    read_faces_log,
    read_lines_log,
    read_valid_mask,
    write_index,
)
from privobfnet.data.readers import dataset_root
from privobfnet.data.saliency import check_saliency_files, saliency_dir
from privobfnet.data.synthpriv import PARSER_FOLDER
from privobfnet.io import atomic_path, atomic_write_text
from privobfnet.logs import configure_logging
from privobfnet.masks.assets import default_cache_dir
from privobfnet.text.lines import LINES_FILE, write_lines
from privobfnet.viz import MaskSample, masks_figure

FIGURE_PATH = figure("masks_samples")


def main(cfg: Config) -> dict:
    """Compute (or resume) every image's masks; write index, metrics and figure. Returns the metrics."""
    out_dir, masks = Path(cfg.masks.out_dir), cfg.masks
    scheduler = os.environ.get(MASKS_SCHEDULER_ENV) or masks.scheduler
    if scheduler is not None and not SCHEDULER_PATTERN.fullmatch(scheduler):
        raise ValueError(
            f"${MASKS_SCHEDULER_ENV}: {scheduler!r} is not a Dask scheduler address tcp://host:port"
        )
    with stage_run("masks", cfg) as run:
        # ---- what to compute -------------------------------------------------------------------
        splits = {
            s: read_manifest(Path(cfg.data.manifest_dir) / f"{s}.parquet") for s in cfg.data.splits
        }
        run.log_manifests(
            cfg.data.manifest_dir, cfg.data.dataset, {split: "masks" for split in splits}
        )
        class_names = next(iter(splits.values())).attrs["class_names"]
        needed = tuple(k for k in KINDS if k in load_mask_types(cfg.data.dataset, class_names))
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp = fingerprint(
            cfg, needed, [Path(cfg.data.manifest_dir) / f"{s}.parquet" for s in splits]
        )
        resumed = prepare_out_dir(out_dir, stamp)
        faces = read_faces_log(out_dir / "faces.jsonl") if masks.face_backend != "none" else {}
        reading = masks.read_text and "text" in needed
        lines = read_lines_log(out_dir / "lines.jsonl") if reading else {}
        rows = pd.concat(list(splits.values()), ignore_index=True)
        unsafe = [
            i for i in rows["image_id"] if Path(str(i)).name != str(i) or str(i).startswith(".")
        ]
        if unsafe:  # ids name the mask files
            raise ValueError(f"image ids unusable as file names: {unsafe[:5]}")
        tasks = [
            Task(
                str(r.image_id),
                str(r.split),
                str(r.path),
                int(r.width),
                int(r.height),
                masks.face_backend != "none" and str(r.image_id) not in faces,
                reading and str(r.image_id) not in lines,
            )
            for r in rows.itertuples()
        ]
        saliency = (
            check_saliency_files(
                saliency_dir(dataset_root(cfg.data)),
                [(t.image_id, t.path, t.width, t.height) for t in tasks],
                cfg.data.dataset,
            )
            if masks.saliency
            else None
        )
        parser_dir = (
            str(Path(dataset_root(cfg.data)) / PARSER_FOLDER)
            if "simulated" in (masks.human_backend, masks.face_backend)
            else None
        )
        cache_dir = default_cache_dir()
        settings = Settings(
            masks=masks,
            needed=needed,
            cache_dir=cache_dir,
            out_dir=str(out_dir),
            parser_dir=parser_dir,
            threads=worker_threads(masks.workers),
            max_pixels=cfg.data.max_image_pixels,
        )
        init_worker(settings)  # here too: fetches model files once and fails early on a bad setting
        # ---- run -------------------------------------------------------------------------------
        start, workers = time.perf_counter(), masks.workers
        with (
            tqdm(total=len(tasks), desc="masks", unit="img", mininterval=2.0) as bar,
            ResultLog(out_dir, MaskRunStats(), faces, on_image=bar.update, lines=lines) as results,
        ):
            if scheduler is None:
                run_tasks(tasks, settings, masks.workers, results)
            else:  # the same results from a Dask cluster's workers; this process writes the masks
                workers = run_tasks_on_dask(tasks, settings, scheduler, results)
        stats = results.stats
        metrics, run_facts = summarize(
            stats,
            backend_names=backend_names(),
            faces=faces,
            resumed=resumed,
            image_ids=[task.image_id for task in tasks],
            workers=workers,
            wall_seconds=time.perf_counter() - start,
        )
        run_facts["scheduler"] = scheduler
        metrics["saliency_maps"] = 0 if saliency is None else len(saliency)
        metrics["text_lines"] = line_counts(lines) if reading else None
        write_metrics("masks", metrics, run_facts)
        run.log_metrics(metrics)
        run.log_metrics(run_facts)
        failed = stats.failed_ids
        if len(failed) > masks.failure_budget:
            raise MasksFailed(
                failure_summary(
                    stats.failures,
                    n_failed=len(failed),
                    budget=masks.failure_budget,
                    failures_file=str(out_dir / "failures.jsonl"),
                )
            )
        # ---- write -----------------------------------------------------------------------------
        write_fallbacks(tasks, failed, out_dir, faces if masks.face_backend != "none" else None)
        write_index(
            out_dir,
            [(t.image_id, t.split) for t in tasks],
            faces if masks.face_backend != "none" else None,
            set(failed),
            saliency,
        )
        for log in ("faces.jsonl", "lines.jsonl", "failures.jsonl"):
            sort_jsonl(out_dir / log)
        write_lines(
            out_dir / LINES_FILE,
            [row for t in tasks for row in lines.get(t.image_id, [])],
        )
        run.log_artifact(
            write_figure(cfg, tasks, stats.coverage, needed, out_dir, faces), "figures"
        )
        atomic_write_text(
            out_dir / ".state.json", json.dumps({"fingerprint": stamp, "complete": True}) + "\n"
        )
    return metrics


def line_counts(lines: dict[str, list]) -> dict:
    """How many lines were read, how many hold text, their mean confidence (the masks metrics)."""
    rows = [row for records in lines.values() for row in records]
    read = [row for row in rows if row["text"]]
    return {
        "images": len(lines),
        "lines": len(rows),
        "lines_read": len(read),
        "mean_confidence": round(float(np.mean([r["score"] for r in read])), 4) if read else None,
    }


def write_figure(
    cfg: Config, tasks, coverages: dict, kinds, out_dir: Path, faces: dict, n: int = 6
) -> Path:
    """reports/figures/masks_samples.png: images with the most kinds of content, masks overlaid."""

    def richness(task: Task) -> int:
        return sum(coverages.get(task.image_id, {}).get(kind, 0) > 0 for kind in kinds) + bool(
            faces.get(task.image_id)
        )

    chosen = sorted(tasks, key=richness, reverse=True)[:n]
    samples = []
    for task in chosen:
        stored = {
            kind: read_valid_mask(
                out_dir / kind / f"{task.image_id}.png", (task.width, task.height)
            )
            for kind in kinds
        }
        image = load_rgb(task.path, max_pixels=cfg.data.max_image_pixels)
        samples.append(
            MaskSample(
                task.image_id,
                image,
                stored.get("human"),
                stored.get("text"),
                faces.get(task.image_id, []),
            )
        )
    masks = cfg.masks
    title = (
        f"human: {masks.human_backend}, text: {masks.text_backend}, faces: {masks.face_backend} "
        f"({cfg.data.dataset})"
    )
    with atomic_path(FIGURE_PATH) as tmp:
        masks_figure(samples, backends=title).savefig(tmp, format="png", dpi=120)
    return FIGURE_PATH


if __name__ == "__main__":
    configure_logging()
    try:
        main(load_params())
    except MasksFailed as failure:
        sys.exit(str(failure))
