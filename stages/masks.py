"""Stage `masks`: human and text masks and face boxes for every manifest image (paper section 3.2).

Writes under ``masks.out_dir``: ``human/<id>.png`` and ``text/<id>.png`` (8-bit L, mask * 255,
the image's size), ``index.parquet`` (image_id, split, human_path, text_path, face_boxes as a
JSON string of [[x0, y0, x1, y1, score], ...], fallback), ``faces.jsonl`` and ``failures.jsonl``.
A kind of mask that no class of the data set uses (``load_mask_types``: no ``text`` class on VOC
or COCO) is not computed: its files are all ones (no weighting), backend ``unused`` in the metrics.
face_boxes is null with ``face_backend: none``.

Runs over ``masks.workers`` spawned processes, each building its backends once. Resumable: a
killed run leaves finished masks (written atomically) and face records, and the next run with
the same settings, manifests and code skips every mask that decodes at the right size. A run
after a completed one (DVC re-runs the stage only when something changed) starts afresh.
An image a backend fails on is recorded in failures.jsonl; beyond ``masks.failure_budget`` such
images the stage fails with a summary; within it they get an all-ones mask (no weighting) and
``fallback`` = true in the index.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

import privobfnet.masks
from privobfnet.config import Config, MasksConfig
from privobfnet.data.images import load_rgb
from privobfnet.data.manifest import read_manifest
from privobfnet.data.mask_types import load_mask_types
from privobfnet.data.readers import dataset_root
from privobfnet.masks import configured_backends, coverage, mask_to_uint8
from privobfnet.masks.simulated import PARSER_FOLDER
from privobfnet.masks.summary import MaskRunStats, failure_summary, summarize
from privobfnet.masks.viz import MaskSample, masks_figure
from ops.common import atomic_path, atomic_write_text, load_params, write_metrics
from ops.tracking import project_root, stage_run

PARAM_SECTIONS = ["data", "masks"]
FIGURE_PATH = Path("reports/figures/masks_samples.png")
KINDS = ("human", "text")  # stored mask kinds
CACHE_ENV = "PRIVOBFNET_CACHE_DIR"  # model files (default <project root>/.cache)


class MasksFailed(Exception):
    """More images failed than masks.failure_budget allows; the message lists them."""


@dataclass(frozen=True)
class Settings:
    """What a worker needs (picklable)."""

    masks: MasksConfig
    needed: tuple[str, ...]  # mask kinds some class uses ("human", "text"); the others are all ones
    parser_dir: str | None
    cache_dir: str
    out_dir: str
    threads: int
    max_pixels: int


@dataclass(frozen=True)
class Task:
    """One image to process."""

    image_id: str
    split: str
    path: str
    width: int
    height: int
    need_faces: bool


_WORKER: dict = {}


def _exit_with_parent(parent_pid: int) -> None:
    """A pool worker outlives a killed stage (its queue keeps it waiting): leave when orphaned."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


def init_worker(settings: Settings) -> None:
    """Build this process's backends once."""
    if multiprocessing.parent_process() is not None:  # a pool worker, not the stage itself
        threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    _WORKER["backends"] = configured_backends(settings.masks, needed=set(settings.needed), threads=settings.threads,
                                              parser_dir=settings.parser_dir, cache_dir=settings.cache_dir)
    _WORKER["settings"] = settings


def read_valid_mask(path: Path, size: tuple[int, int]) -> np.ndarray | None:
    """A stored mask if it decodes as 8-bit L of ``size`` (width, height); else None."""
    try:
        with Image.open(path) as png:
            if png.mode != "L" or png.size != size:
                return None
            png.load()
            return np.asarray(png)
    except (OSError, ValueError, SyntaxError):
        return None


def write_mask(path: Path, mask: np.ndarray) -> None:
    """Save a uint8 mask as an L PNG, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(mask, "L").save(tmp, format="PNG")


def process_image(task: Task) -> dict:
    """Masks of one image: reuse valid stored ones, compute the rest; errors are returned, not raised."""
    settings, backends = _WORKER["settings"], _WORKER["backends"]
    out: dict = {"seconds": {}, "coverage": {}, "faces": None, "errors": []}
    size = (task.width, task.height)
    masks = {kind: read_valid_mask(Path(settings.out_dir) / kind / f"{task.image_id}.png", size)
             for kind in KINDS}
    todo = [k for k in KINDS if masks[k] is None]
    todo += ["face"] if task.need_faces and "face" in backends else []
    if todo:
        try:
            image = load_rgb(task.path, max_pixels=settings.max_pixels)
            if image.shape[:2] != (task.height, task.width):
                h, w = image.shape[:2]
                raise ValueError(f"image is {w}x{h}, the manifest says {task.width}x{task.height}")
        except Exception as exc:  # any decode error fails this image only
            out["errors"].append(("image", f"{type(exc).__name__}: {exc}"))
            todo = []
    for kind in todo:
        backend = backends[kind]
        start = time.perf_counter()
        try:
            result = backend(image, image_id=task.image_id)
            if result.mask.shape != image.shape[:2]:
                raise ValueError(f"mask shape {result.mask.shape} differs from the image's {image.shape[:2]}")
        except Exception as exc:  # a backend failing on one image must not stop the others
            out["errors"].append((f"{kind}.{backend.name}", f"{type(exc).__name__}: {exc}"))
            continue
        out["seconds"][kind] = time.perf_counter() - start
        if kind == "face":
            out["faces"] = [[round(v, 2) for v in box[:4]] + [round(box[4], 4)] for box in result.boxes]
        else:
            masks[kind] = mask_to_uint8(result.mask)
            write_mask(Path(settings.out_dir) / kind / f"{task.image_id}.png", masks[kind])
    out["coverage"] = {kind: coverage(m) for kind, m in masks.items() if m is not None}
    return out


def run_tasks(tasks: list[Task], settings: Settings, workers: int, on_result, *, worker=process_image,
              initializer=init_worker) -> None:
    """``on_result(task, result)`` for every task, over ``workers`` processes (in this one for <= 1).

    A worker process that dies (a native crash) fails the images in flight; a fresh pool goes on.
    """
    if workers <= 1:  # initializer already ran in this process
        for task in tasks:
            on_result(task, worker(task))
        return
    died = {"seconds": {}, "coverage": {}, "faces": None, "errors": [("worker", "its process died on this image")]}
    queue, context, idle_breaks = deque(tasks), multiprocessing.get_context("spawn"), 0
    while queue:
        answered, broken = 0, False
        with ProcessPoolExecutor(workers, mp_context=context, initializer=initializer, initargs=(settings,)) as pool:
            running: dict = {}
            while (queue or running) and not broken:
                while queue and len(running) < 2 * workers:  # few in flight: a crash blames few images
                    task = queue.popleft()
                    running[pool.submit(worker, task)] = task
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    task = running.pop(future)
                    try:
                        result = future.result()
                        answered += 1
                    except BrokenProcessPool:
                        broken, result = True, died
                    on_result(task, result)
            for task in running.values():  # in flight when the pool broke
                on_result(task, died)
        idle_breaks = idle_breaks + 1 if broken and not answered else 0
        if idle_breaks >= 2:
            raise RuntimeError("mask worker processes die before finishing any image")


def fingerprint(cfg: Config, needed: tuple[str, ...], manifest_files: list[Path]) -> str:
    """Hash of everything that decides the masks' content: settings, manifests, this code."""
    digest = hashlib.sha256()
    settings = {k: v for k, v in asdict(cfg.masks).items() if k not in ("workers", "failure_budget")}
    digest.update(json.dumps([settings, cfg.data.dataset, cfg.data.raw_dir, needed], sort_keys=True).encode())
    code = sorted(Path(privobfnet.masks.__file__).parent.glob("*.py")) + [Path(__file__)]
    for file in manifest_files + code:
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def prepare_out_dir(out_dir: Path, stamp: str) -> bool:
    """Resume (True) if a killed run with the same fingerprint left outputs; else clear them."""
    state_file = out_dir / ".state.json"
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        state = {}
    resume = state.get("fingerprint") == stamp and not state.get("complete")
    if not resume:  # only what this stage writes: a mistyped out_dir must not lose anything else
        for name in ("human", "text"):
            shutil.rmtree(out_dir / name, ignore_errors=True)
        for name in ("faces.jsonl", "failures.jsonl", "index.parquet"):
            (out_dir / name).unlink(missing_ok=True)
    (out_dir / "failures.jsonl").unlink(missing_ok=True)  # this run's failures only
    atomic_write_text(state_file, json.dumps({"fingerprint": stamp, "complete": False}) + "\n")
    return resume


def read_faces(path: Path) -> dict[str, list]:
    """image_id -> face boxes from faces.jsonl (a torn last line from a killed run is skipped)."""
    faces: dict[str, list] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
                faces[record["image_id"]] = record["faces"]
            except (ValueError, KeyError, TypeError):
                continue
    return faces


def main(cfg: Config) -> dict:
    """Compute (or resume) every image's masks; write index, metrics and figure. Returns the metrics."""
    with stage_run("masks", cfg, PARAM_SECTIONS) as run:
        splits = {s: read_manifest(Path(cfg.data.manifest_dir) / f"{s}.parquet") for s in cfg.data.splits}
        class_names = next(iter(splits.values())).attrs["class_names"]
        needed = tuple(k for k in KINDS if k in load_mask_types(cfg.data.dataset, class_names))
        out_dir, m = Path(cfg.masks.out_dir), cfg.masks
        cache_dir = os.environ.get(CACHE_ENV) or str(project_root() / ".cache")
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp = fingerprint(cfg, needed, [Path(cfg.data.manifest_dir) / f"{s}.parquet" for s in splits])
        resumed = prepare_out_dir(out_dir, stamp)
        faces = read_faces(out_dir / "faces.jsonl") if m.face_backend != "none" else {}
        rows = pd.concat(list(splits.values()), ignore_index=True)
        unsafe = [i for i in rows["image_id"] if Path(str(i)).name != str(i) or str(i).startswith(".")]
        if unsafe:  # ids name the mask files
            raise ValueError(f"image ids unusable as file names: {unsafe[:5]}")
        tasks = [Task(str(r.image_id), str(r.split), str(r.path), int(r.width), int(r.height),
                      m.face_backend != "none" and str(r.image_id) not in faces) for r in rows.itertuples()]
        settings = Settings(
            masks=m, needed=needed, cache_dir=cache_dir, out_dir=str(out_dir),
            parser_dir=str(Path(dataset_root(cfg.data)) / PARSER_FOLDER) if m.human_backend == "simulated" else None,
            threads=max(1, (os.cpu_count() or 1) // max(1, m.workers)), max_pixels=cfg.data.max_image_pixels,
        )  # fmt: skip
        init_worker(settings)  # here too: fetches model files once and fails early on a bad setting

        stats, start = MaskRunStats(), time.perf_counter()
        with open(out_dir / "faces.jsonl", "a") as faces_log, open(out_dir / "failures.jsonl", "a") as failures_log, \
                tqdm(total=len(tasks), desc="masks", unit="img", mininterval=2.0) as bar:
            def on_result(task: Task, result: dict) -> None:  # logs are appended as results come in
                for record in stats.add(task.image_id, task.split, result):
                    failures_log.write(json.dumps(record) + "\n")
                    failures_log.flush()
                if result["faces"] is not None:
                    faces[task.image_id] = result["faces"]
                    faces_log.write(json.dumps({"image_id": task.image_id, "faces": result["faces"]}) + "\n")
                    faces_log.flush()
                bar.update(1)

            run_tasks(tasks, settings, m.workers, on_result)
        names = {kind: backend.name for kind, backend in _WORKER["backends"].items()}
        metrics = summarize(stats, backend_names=names,
                            faces=faces, image_ids=[t.image_id for t in tasks], workers=m.workers, resumed=resumed,
                            wall_seconds=time.perf_counter() - start)
        write_metrics("masks", metrics)
        run.log_metrics(metrics)
        failed = stats.failed_ids
        if len(failed) > m.failure_budget:
            raise MasksFailed(failure_summary(stats.failures, n_failed=len(failed), budget=m.failure_budget,
                                              failures_file=str(out_dir / "failures.jsonl")))
        write_fallbacks(tasks, failed, out_dir, faces if m.face_backend != "none" else None)
        write_index(tasks, out_dir, faces if m.face_backend != "none" else None, set(failed))
        figure = write_figure(cfg, tasks, stats.coverage, needed, out_dir, faces)
        run.log_artifact(figure, "figures")
        atomic_write_text(out_dir / ".state.json", json.dumps({"fingerprint": stamp, "complete": True}) + "\n")
    return metrics


def write_fallbacks(tasks, failed_ids, out_dir: Path, faces: dict | None) -> None:
    """Within the budget: an all-ones mask (no weighting) wherever a failed image lacks one."""
    by_id = {t.image_id: t for t in tasks}
    for image_id in failed_ids:
        task = by_id[image_id]
        for kind in KINDS:
            path = out_dir / kind / f"{image_id}.png"
            if read_valid_mask(path, (task.width, task.height)) is None:
                write_mask(path, np.full((task.height, task.width), 255, np.uint8))
        if faces is not None:
            faces.setdefault(image_id, [])


def write_index(tasks, out_dir: Path, faces: dict | None, failed: set[str]) -> None:
    """index.parquet: one row per image with its mask paths and face boxes."""
    def path(kind: str, image_id: str) -> str:
        return str(out_dir / kind / f"{image_id}.png")

    frame = pd.DataFrame({
        "image_id": [t.image_id for t in tasks],
        "split": [t.split for t in tasks],
        "human_path": pd.array([path("human", t.image_id) for t in tasks], dtype="string"),
        "text_path": pd.array([path("text", t.image_id) for t in tasks], dtype="string"),
        "face_boxes": pd.array([None if faces is None else json.dumps(faces[t.image_id]) for t in tasks],
                               dtype="string"),
        "fallback": [t.image_id in failed for t in tasks],
    })  # fmt: skip
    with atomic_path(out_dir / "index.parquet") as tmp:
        frame.to_parquet(tmp, index=False)


def write_figure(cfg: Config, tasks, coverages: dict, kinds, out_dir: Path, faces: dict, n: int = 6) -> Path:
    """reports/figures/masks_samples.png: images with the most kinds of content, masks overlaid."""
    def richness(t: Task) -> int:
        return sum(coverages.get(t.image_id, {}).get(k, 0) > 0 for k in kinds) + bool(faces.get(t.image_id))

    chosen = sorted(tasks, key=richness, reverse=True)[:n]
    samples = []
    for t in chosen:
        stored = {k: read_valid_mask(out_dir / k / f"{t.image_id}.png", (t.width, t.height)) for k in kinds}
        image = load_rgb(t.path, max_pixels=cfg.data.max_image_pixels)
        samples.append(MaskSample(t.image_id, image, stored.get("human"), stored.get("text"),
                                  faces.get(t.image_id, [])))
    m = cfg.masks
    title = f"human: {m.human_backend}, text: {m.text_backend}, faces: {m.face_backend} ({cfg.data.dataset})"
    with atomic_path(FIGURE_PATH) as tmp:
        masks_figure(samples, backends=title).savefig(tmp, format="png", dpi=120)
    return FIGURE_PATH


if __name__ == "__main__":
    try:
        main(load_params())
    except MasksFailed as failure:
        sys.exit(str(failure))
