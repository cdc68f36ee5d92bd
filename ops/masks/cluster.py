"""The masks over a dask.distributed cluster (``masks.scheduler``): workers compute, the caller writes.

Each Dask worker process builds the backends once (``MaskBackends``, a WorkerPlugin: it runs on the
workers present at registration and on every worker that joins or is restarted later). A task sends
one image's ``Task`` and the kinds left to compute; the worker returns the result and the new masks
as arrays. The caller (the stage's process) writes each mask, atomically, as its image comes back,
then hands the result to ``on_result``: so out_dir need not be shared with the workers, the mask
files are encoded by one PIL, and an image is finished (resumable) once its result is back. The
workers read the images (``Task.path``), the simulated parser's PNGs and the model files at the same
paths as the caller: a shared file system or a copy at the same place on every machine.

A worker that dies loses only the images in flight on it: Dask runs them again on another worker;
an image that kills ``distributed.scheduler.allowed-failures`` + 1 workers gets the same "worker
died" failure as with the local pool.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from pathlib import Path

from distributed import Client, WorkerPlugin, as_completed, get_worker
from distributed.client import FutureCancelledError
from distributed.scheduler import KilledWorker

from ops.masks.pool import Settings, Task, compute_masks, missing_work, stored_masks, with_coverage
from privobfnet.data.priors import mask_file, write_mask
from privobfnet.masks import configured_backends

PLUGIN_NAME = "privobfnet-masks"
DIED = ("worker", "its process died on this image")


class MaskBackends(WorkerPlugin):
    """Builds one worker's backends once; tasks run one at a time per worker (the tflite
    interpreters are not thread-safe), each using the worker's ``--nthreads`` threads."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.backends: dict | None = None

    def setup(self, worker) -> None:
        s = self.settings
        self.backends = configured_backends(
            s.masks,
            needed=set(s.needed),
            threads=worker.state.nthreads,
            parser_dir=s.parser_dir,
            cache_dir=s.cache_dir,
        )
        self.lock = threading.Lock()


def remote_masks(task: Task, todo: list[str]) -> tuple[dict, dict]:
    """On a Dask worker: ``compute_masks`` with the worker's backends."""
    plugin: MaskBackends | None = get_worker().plugins.get(PLUGIN_NAME)
    if (
        plugin is None or plugin.backends is None
    ):  # joined later and failed its setup (its log says why)
        raise RuntimeError("this Dask worker could not build the mask backends")
    with plugin.lock:
        return compute_masks(task, todo, plugin.backends, plugin.settings.max_pixels)


def run_tasks_on_dask(
    tasks: list[Task],
    settings: Settings,
    address: str,
    on_result,
    *,
    worker=remote_masks,
    worker_wait_s: float = 120.0,
    per_thread: int = 2,
) -> int:
    """``on_result(task, result)`` for every task, its new masks written first, computed on the
    cluster at ``address``; at most ``per_thread`` images in flight per worker thread.

    Returns the number of Dask workers at the end.
    """
    out_dir = Path(settings.out_dir)
    with Client(address, timeout=30, set_as_default=False) as client:
        try:
            client.wait_for_workers(1, timeout=worker_wait_s)
        except TimeoutError:
            raise RuntimeError(
                f"masks.scheduler: no Dask worker joined {address} within {worker_wait_s:.0f} s"
            ) from None
        client.register_plugin(
            MaskBackends(settings), name=PLUGIN_NAME
        )  # builds them on every worker now
        names = {"human", "text", "face"} - (
            {"face"} if settings.masks.face_backend == "none" else set()
        )
        queue, running, window = (
            deque(tasks),
            as_completed(loop=client.loop),
            _Window(client, per_thread),
        )
        held: dict = {}  # future -> (task, stored masks)
        run = uuid.uuid4().hex[:8]  # keys unique to this run
        while queue or held:
            while queue and len(held) < window():
                task = queue.popleft()
                stored = stored_masks(task, out_dir)
                todo = missing_work(task, stored, names)
                if not todo:  # resumed: nothing left for this image
                    on_result(task, with_coverage(_empty(), stored))
                    continue
                future = client.submit(
                    worker, task, todo, pure=False, key=f"masks-{run}-{task.image_id}"
                )
                held[future] = (task, stored)
                running.add(future)
            if not held:
                continue
            future = next(running)
            task, stored = held.pop(future)
            out, computed = _outcome(future)
            future.release()  # its result lives here now: losing its worker must not recompute it
            for kind, mask in computed.items():
                write_mask(mask_file(out_dir, kind, task.image_id), mask)
            on_result(task, with_coverage(out, {**stored, **computed}))
        return len(client.nthreads())


def _outcome(future) -> tuple[dict, dict]:
    try:
        return future.result()
    except (KilledWorker, FutureCancelledError):
        return {**_empty(), "errors": [DIED]}, {}
    except (
        Exception
    ) as exc:  # compute_masks returns errors: this is the transport or the worker itself
        return {**_empty(), "errors": [("worker", f"{type(exc).__name__}: {exc}")]}, {}


def _empty() -> dict:
    return {"seconds": {}, "coverage": {}, "faces": None, "lines": None, "errors": []}


class _Window:
    """How many images to keep in flight: ``per_thread`` x the cluster's worker threads, re-read every
    few seconds so that workers joining (or leaving) mid-run change it."""

    def __init__(self, client: Client, per_thread: int, every_s: float = 5.0):
        self.client, self.per_thread, self.every_s = client, per_thread, every_s
        self.value, self.read_at = 0, -every_s

    def __call__(self) -> int:
        if time.monotonic() - self.read_at >= self.every_s:
            threads = sum(self.client.nthreads().values())
            self.value, self.read_at = (
                max(self.per_thread, self.per_thread * threads),
                time.monotonic(),
            )
        return self.value
