"""The masks stage's work: the mask backends over a data set's images in worker processes,
resumable, and the logs a killed run leaves.

``stages/masks.py`` drives this; the outputs' format is ``privobfnet.data.priors`` (masks, index).
Besides them the stage keeps ``faces.jsonl``, ``lines.jsonl`` (each image's read lines, with
``masks.read_text``) and ``failures.jsonl`` (appended as results come in, sorted by image id once
the run is complete; lines.jsonl then becomes ``lines.parquet``, ``privobfnet.text.lines``) and
``.state.json`` (what a resumed run must match).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import privobfnet.masks
from privobfnet.config import Config, MasksConfig
from privobfnet.data.images import load_rgb
from privobfnet.data.priors import INDEX_FILE, KINDS, mask_file, read_valid_mask, write_mask
from privobfnet.io import atomic_write_text
from privobfnet.masks import configured_backends, coverage, mask_to_uint8
from privobfnet.text.lines import LINES_FILE, line_records


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
    need_lines: bool = False  # its text lines are to be read (none logged yet)


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
    _WORKER["backends"] = configured_backends(
        settings.masks,
        needed=set(settings.needed),
        threads=settings.threads,
        parser_dir=settings.parser_dir,
        cache_dir=settings.cache_dir,
    )
    _WORKER["settings"] = settings


def process_image(task: Task) -> dict:
    """Masks of one image: reuse valid stored ones, compute the rest; errors are returned, not raised."""
    settings, backends = _WORKER["settings"], _WORKER["backends"]
    stored = stored_masks(task, Path(settings.out_dir))
    out, computed = compute_masks(
        task, missing_work(task, stored, backends), backends, settings.max_pixels
    )
    for kind, mask in computed.items():
        write_mask(mask_file(settings.out_dir, kind, task.image_id), mask)
    return with_coverage(out, {**stored, **computed})


def stored_masks(task: Task, out_dir: Path) -> dict[str, np.ndarray | None]:
    """kind -> the valid stored mask of this image, or None (missing, torn or of another size)."""
    return {
        kind: read_valid_mask(mask_file(out_dir, kind, task.image_id), (task.width, task.height))
        for kind in KINDS
    }


def missing_work(task: Task, stored: dict, backends) -> list[str]:
    """What is left to compute for an image: mask kinds without a valid stored mask, and its faces."""
    todo = [k for k in KINDS if stored[k] is None]
    if task.need_lines and "text" not in todo:  # a resumed image whose lines were not logged
        todo.append("text")
    return todo + (["face"] if task.need_faces and "face" in backends else [])


def compute_masks(
    task: Task, todo: list[str], backends, max_pixels: int
) -> tuple[dict, dict[str, np.ndarray]]:
    """Run the backends ``todo`` names on one image -> (result without coverage, kind -> new uint8 mask).

    Writes nothing: the caller stores the masks (a pool worker into out_dir, the stage for a Dask worker).
    """
    out: dict = {"seconds": {}, "coverage": {}, "faces": None, "lines": None, "errors": []}
    computed: dict[str, np.ndarray] = {}
    if todo:
        try:
            image = load_rgb(task.path, max_pixels=max_pixels)
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
                raise ValueError(
                    f"mask shape {result.mask.shape} differs from the image's {image.shape[:2]}"
                )
        except Exception as exc:  # a backend failing on one image must not stop the others
            out["errors"].append((f"{kind}.{backend.name}", f"{type(exc).__name__}: {exc}"))
            continue
        out["seconds"][kind] = time.perf_counter() - start
        if kind == "face":
            out["faces"] = [
                [round(v, 2) for v in box[:4]] + [round(box[4], 4)] for box in result.boxes
            ]
        else:
            computed[kind] = mask_to_uint8(result.mask)
            if kind == "text" and task.need_lines:
                out["lines"] = line_records(task.image_id, result.lines)
    return out, computed


def with_coverage(out: dict, masks: dict[str, np.ndarray | None]) -> dict:
    """The worker result with the coverage of each mask kind the image has (stored or new)."""
    out["coverage"] = {kind: coverage(m) for kind, m in masks.items() if m is not None}
    return out


def run_tasks(
    tasks: list[Task],
    settings: Settings,
    workers: int,
    on_result,
    *,
    worker=process_image,
    initializer=init_worker,
) -> None:
    """``on_result(task, result)`` for every task, over ``workers`` processes (in this one for <= 1).

    A worker process that dies (a native crash) fails the images in flight; a fresh pool goes on.
    """
    if workers <= 1:  # initializer already ran in this process
        for task in tasks:
            on_result(task, worker(task))
        return
    died = {
        "seconds": {},
        "coverage": {},
        "faces": None,
        "lines": None,
        "errors": [("worker", "its process died on this image")],
    }
    queue, context, idle_breaks = deque(tasks), multiprocessing.get_context("spawn"), 0
    while queue:
        answered, broken = 0, False
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=initializer, initargs=(settings,)
        ) as pool:
            running: dict = {}
            while (queue or running) and not broken:
                while (
                    queue and len(running) < 2 * workers
                ):  # few in flight: a crash blames few images
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
    placement = ("workers", "scheduler", "failure_budget")  # where and how many: not what
    settings = {k: v for k, v in asdict(cfg.masks).items() if k not in placement}
    digest.update(
        json.dumps([settings, cfg.data.dataset, cfg.data.raw_dir, needed], sort_keys=True).encode()
    )
    # the backends' code decides the masks' content; this package decides how they are written
    code = sorted(
        [
            *Path(privobfnet.masks.__file__).parent.glob("*.py"),
            *Path(__file__).parent.glob("*.py"),
            *(Path(privobfnet.masks.__file__).parent.parent / "text").glob("read.py"),
        ]
    )
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
        for name in KINDS:
            shutil.rmtree(out_dir / name, ignore_errors=True)
        for name in ("faces.jsonl", "lines.jsonl", LINES_FILE, "failures.jsonl", INDEX_FILE):
            (out_dir / name).unlink(missing_ok=True)
    (out_dir / "failures.jsonl").unlink(missing_ok=True)  # this run's failures only
    atomic_write_text(state_file, json.dumps({"fingerprint": stamp, "complete": False}) + "\n")
    return resume


def write_fallbacks(tasks, failed_ids, out_dir: Path, faces: dict | None) -> None:
    """Within the budget: an all-ones mask (no weighting) wherever a failed image lacks one."""
    by_id = {t.image_id: t for t in tasks}
    for image_id in failed_ids:
        task = by_id[image_id]
        for kind in KINDS:
            path = mask_file(out_dir, kind, image_id)
            if read_valid_mask(path, (task.width, task.height)) is None:
                write_mask(path, np.full((task.height, task.width), 255, np.uint8))
        if faces is not None:
            faces.setdefault(image_id, [])


class ResultLog:
    """Takes each worker result as it comes in: run statistics, and the face, line and failure
    records appended (flushed) to faces.jsonl, lines.jsonl and failures.jsonl, so a killed run keeps
    what it found."""

    def __init__(
        self,
        out_dir: Path,
        stats,
        faces: dict[str, list],
        on_image=None,
        lines: dict[str, list] | None = None,
    ):
        self._faces_log = open(out_dir / "faces.jsonl", "a")
        self._lines_log = open(out_dir / "lines.jsonl", "a")
        self._failures_log = open(out_dir / "failures.jsonl", "a")
        self.stats, self.faces, self._on_image = stats, faces, on_image
        self.lines = {} if lines is None else lines

    def __call__(self, task: Task, result: dict) -> None:
        for record in self.stats.add(task.image_id, task.split, result):
            self._failures_log.write(json.dumps(record) + "\n")
            self._failures_log.flush()
        if result["faces"] is not None:
            self.faces[task.image_id] = result["faces"]
            self._faces_log.write(
                json.dumps({"image_id": task.image_id, "faces": result["faces"]}) + "\n"
            )
            self._faces_log.flush()
        if result.get("lines") is not None:
            self.lines[task.image_id] = result["lines"]
            self._lines_log.write(
                json.dumps({"image_id": task.image_id, "lines": result["lines"]}) + "\n"
            )
            self._lines_log.flush()
        if self._on_image is not None:
            self._on_image()

    def close(self) -> None:
        self._faces_log.close()
        self._lines_log.close()
        self._failures_log.close()

    def __enter__(self) -> "ResultLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sort_jsonl(path: Path) -> None:
    """Rewrite a JSON-lines log in image-id order (workers finish in any order), dropping a torn line."""
    if not path.exists():
        return
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    unique = {
        json.dumps(r, sort_keys=True): r for r in records
    }.values()  # a resumed image logs once
    ordered = sorted(unique, key=lambda r: (r["image_id"], json.dumps(r, sort_keys=True)))
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in ordered))


def worker_threads(workers: int) -> int:
    """Threads per worker process: the machine's cores shared out."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def backend_names() -> dict[str, str]:
    """kind -> name of the backends this process built (``init_worker``)."""
    return {kind: backend.name for kind, backend in _WORKER["backends"].items()}
