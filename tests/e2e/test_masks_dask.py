"""The masks stage on a dask.distributed LocalCluster (masks.scheduler): the same bytes as the local
pool, and a worker killed mid-run loses no finished image."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import dask
import pytest
from distributed import Client, LocalCluster

from ops.masks.cluster import DIED, run_tasks_on_dask
from ops.masks.pool import Settings, Task
from ops.outputs import MASKS_SCHEDULER_ENV
from privobfnet.config import parse_config
from privobfnet.data.manifest import write_manifest
from privobfnet.data.readers import dataset_root, read_dataset
from privobfnet.data.synthpriv import write_synthpriv
from privobfnet.masks.assets import CACHE_ENV
from stages import masks as stage
from tests.conftest import ci_params

SPLITS = {"train": 6, "val": 3, "test": 3}  # a handful of images: the cluster is what is tested
N_IMAGES = sum(SPLITS.values())


@pytest.fixture(scope="module")
def small_synthpriv(tmp_path_factory) -> Path:
    """A 12-image SynthPriv and its manifests (never modified)."""
    base = tmp_path_factory.mktemp("synthpriv")
    cfg = parse_config(ci_params(base, data={"splits": SPLITS}))
    write_synthpriv(Path(dataset_root(cfg.data)), cfg, progress=False)
    for split, frame in read_dataset(cfg.data).items():
        Path(cfg.data.manifest_dir).mkdir(parents=True, exist_ok=True)
        write_manifest(frame, Path(cfg.data.manifest_dir) / f"{split}.parquet")
    return base


@pytest.fixture(scope="module")
def local_cluster():
    """Two worker processes of one thread each, as `dask worker --nworkers 2 --nthreads 1` starts; an
    image that kills two workers fails (allowed-failures 1: the default 3 only makes the test longer)."""
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as local,
    ):
        yield local


@pytest.fixture
def cluster(local_cluster):
    """The module's cluster with both workers up (a test before may have killed one)."""
    with Client(local_cluster.scheduler_address) as client:
        client.wait_for_workers(2, timeout=60)
    return local_cluster


def run_stage(data_base: Path, workdir: Path, **masks) -> dict[str, bytes]:
    """The stage in ``workdir`` (relative out_dir, as in the pipeline) -> its files' bytes by path."""
    workdir.mkdir(exist_ok=True)
    os.chdir(workdir)
    params = ci_params(data_base, data={"splits": SPLITS})
    params["tracking"]["uri"] = f"sqlite:///{workdir.parent / 'mlflow.db'}"
    params["masks"].update({"workers": 1, "out_dir": "masks", **masks})
    stage.main(parse_config(params))
    files = sorted(
        p for p in workdir.rglob("*") if p.is_file() and not {"runs", "mlartifacts"} & set(p.parts)
    )
    return {str(p.relative_to(workdir)): p.read_bytes() for p in files}


def run_facts(workdir: Path) -> dict:
    return json.loads((workdir / "reports/runs/masks.json").read_text())


@pytest.fixture
def in_tmp(tmp_path, monkeypatch, model_cache):
    monkeypatch.chdir(tmp_path)  # restored after the test; run_stage changes directory
    monkeypatch.setenv(CACHE_ENV, str(model_cache))
    return tmp_path


@pytest.fixture(scope="module")
def local_outputs(small_synthpriv, model_cache, tmp_path_factory) -> dict[str, bytes]:
    """What the local pool (masks.scheduler null) writes: the reference."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("local"))
        patch.setenv(CACHE_ENV, str(model_cache))
        return run_stage(small_synthpriv, Path.cwd() / "local")


def test_the_stage_on_a_local_cluster_writes_the_local_pools_bytes(
    small_synthpriv, cluster, local_outputs, in_tmp
):
    local = local_outputs
    on_dask = run_stage(small_synthpriv, in_tmp / "dask", scheduler=cluster.scheduler_address)
    assert len([name for name in local if name.startswith("masks/text/")]) == N_IMAGES
    assert {
        "masks/index.parquet",
        "masks/faces.jsonl",
        "reports/metrics/masks.json",
        "reports/figures/masks_samples.png",
    } <= set(local)
    assert sorted(on_dask) == sorted(local)
    assert [name for name in local if local[name] != on_dask[name]] == []
    facts = run_facts(in_tmp / "dask")
    assert facts["scheduler"] == cluster.scheduler_address and facts["workers"] == 2
    assert facts["computed"] == N_IMAGES and facts["resumed"] is False
    with Client(cluster.scheduler_address) as client:  # the models were built once per worker
        loaded = client.run(
            lambda dask_worker: sorted(dask_worker.plugins["privobfnet-masks"].backends)
        )
    assert list(loaded.values()) == [["face", "human", "text"]] * 2


class StageKilled(Exception):
    """Stands for the stage's own process dying."""


def test_a_worker_killed_mid_run_loses_no_finished_image(
    small_synthpriv, cluster, local_outputs, in_tmp, monkeypatch
):
    """Kill one worker after 4 images came back, then the stage itself after 8; the next run
    computes only the 4 left, and the outputs are the local pool's."""
    local, original_log = local_outputs, stage.ResultLog
    client = Client(cluster.scheduler_address)
    worker_pids = list(client.run(os.getpid).values())
    logged: list[str] = []

    class KillingLog(original_log):
        def __call__(self, task, result):
            super().__call__(task, result)
            logged.append(task.image_id)
            if len(logged) == 4:
                os.kill(worker_pids[0], signal.SIGKILL)  # its nanny starts a fresh worker
            if len(logged) == 8:
                raise StageKilled

    monkeypatch.setattr(stage, "ResultLog", KillingLog)
    with pytest.raises(StageKilled):
        run_stage(small_synthpriv, in_tmp / "dask", scheduler=cluster.scheduler_address)
    assert (
        len(set(logged)) == 8
    )  # each image came back once, the lost worker's in-flight ones included
    face_log = (in_tmp / "dask/masks/faces.jsonl").read_text().splitlines()
    faces_logged = [json.loads(line)["image_id"] for line in face_log]
    assert sorted(faces_logged) == sorted(logged)
    assert all((in_tmp / "dask/masks/text" / f"{image_id}.png").exists() for image_id in logged)

    monkeypatch.setattr(stage, "ResultLog", original_log)
    client.wait_for_workers(2, timeout=60)
    assert worker_pids[0] not in client.run(os.getpid).values()
    client.close()
    mtimes = {i: (in_tmp / "dask/masks/text" / f"{i}.png").stat().st_mtime_ns for i in logged}
    on_dask = run_stage(small_synthpriv, in_tmp / "dask", scheduler=cluster.scheduler_address)
    facts = run_facts(in_tmp / "dask")
    assert (
        facts["resumed"] is True and facts["computed"] == N_IMAGES - 8
    )  # the finished 8 were not redone
    assert all(
        (in_tmp / "dask/masks/text" / f"{i}.png").stat().st_mtime_ns == mtimes[i] for i in logged
    )
    assert [name for name in local if local[name] != on_dask.get(name)] == [] and sorted(
        on_dask
    ) == sorted(local)


def crash_or_echo(task: Task, todo: list[str]) -> tuple[dict, dict]:
    """A Dask task that kills its worker process (like a native crash) on the image called 'crash'."""
    if task.image_id == "crash":
        os._exit(3)
    return {"seconds": {"text": 0.0}, "coverage": {}, "faces": None, "errors": []}, {}


def test_an_image_that_kills_its_workers_fails_alone(
    small_synthpriv, cluster, model_cache, tmp_path
):
    cfg = parse_config(ci_params(small_synthpriv, data={"splits": SPLITS}))
    settings = Settings(
        masks=cfg.masks,
        needed=("human", "text"),
        parser_dir=str(tmp_path),
        cache_dir=str(model_cache),
        out_dir=str(tmp_path),
        threads=1,
        max_pixels=cfg.data.max_image_pixels,
    )
    tasks = [
        Task(name, "train", "unused", 4, 4, False)
        for name in ["crash"] + [f"ok{i}" for i in range(7)]
    ]
    results: dict[str, list] = {}
    run_tasks_on_dask(
        tasks,
        settings,
        cluster.scheduler_address,
        lambda task, result: results.setdefault(task.image_id, []).append(result),
        worker=crash_or_echo,
    )
    assert sorted(results) == sorted(t.image_id for t in tasks) and all(
        len(r) == 1 for r in results.values()
    )
    assert results["crash"][0]["errors"] == [DIED]
    # Dask blames every image processing on a worker that dies: one that shared a worker with the
    # culprit at each of its deaths fails with it (as with the local pool, few: those in flight)
    assert all(r[0]["errors"] in ([], [DIED]) for r in results.values())
    assert sum(r[0]["errors"] == [] for r in results.values()) >= len(tasks) - 3


def test_a_scheduler_without_workers_fails_naming_it(tmp_path):
    settings = Settings(
        masks=None,
        needed=(),
        parser_dir=None,
        cache_dir="unused",
        out_dir=str(tmp_path),
        threads=1,
        max_pixels=1,
    )
    with LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as empty:
        with pytest.raises(
            RuntimeError, match=f"no Dask worker joined {empty.scheduler_address} within 1 s"
        ):
            run_tasks_on_dask(
                [Task("a", "train", "unused", 1, 1, False)],
                settings,
                empty.scheduler_address,
                lambda task, result: None,
                worker_wait_s=1,
            )


def test_a_bad_scheduler_in_the_environment_is_refused(small_synthpriv, in_tmp, monkeypatch):
    monkeypatch.setenv(MASKS_SCHEDULER_ENV, "127.0.0.1:8786")
    with pytest.raises(
        ValueError, match=r"\$PRIVOBFNET_MASKS_SCHEDULER: '127.0.0.1:8786' is not a Dask scheduler"
    ):
        run_stage(small_synthpriv, in_tmp / "bad")
