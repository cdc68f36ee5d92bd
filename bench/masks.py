"""Images/s of each mask backend at the default profile's image size (SynthPriv, 160 px), in one
process with one thread per backend (what each of the stage's ``masks.workers`` processes gets on
a 2-core machine).

    .venv/bin/python bench/masks.py [--images 48] [--threads 1]

With ``--stage``: the whole masks stage on ``--images`` default-profile SynthPriv images, run as
one process (masks.workers 1), as the local pool of 2 processes, and on a dask.distributed
LocalCluster of 2 worker processes of 1 thread (masks.scheduler; the cluster is started before
the clock), each from an empty out_dir; figures as ratios against the one-process run.

    .venv/bin/python bench/masks.py --stage [--images 60] [--repeats 1]

Model files come from $PRIVOBFNET_CACHE_DIR or <repo>/.cache (fetched on first use). PaddleOCR is
measured when the `paddle` extra is installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: ops, tools

from ops.params import resolve_profile
from privobfnet.config import parse_config
from privobfnet.data.synthpriv import generate_sample
from privobfnet.masks import build_backend

REPO = Path(__file__).resolve().parents[1]


def bench(backend, images: list[np.ndarray], ids: list[str]) -> float:
    """Seconds per image, after one warm-up call."""
    backend(images[0], image_id=ids[0])
    start = time.perf_counter()
    for image, image_id in zip(images, ids):
        backend(image, image_id=image_id)
    return (time.perf_counter() - start) / len(images)


def bench_stage(n_images: int, repeats: int) -> None:
    """Wall seconds of the masks stage: 1 process, the local pool of 2, a 2-worker LocalCluster."""
    from distributed import LocalCluster

    from privobfnet.data.manifest import write_manifest
    from privobfnet.data.readers import dataset_root, read_dataset
    from privobfnet.data.synthpriv import write_synthpriv
    from stages import masks as stage

    os.environ.setdefault(stage.CACHE_ENV, str(REPO / ".cache"))
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
    ):
        base = Path(tmp)
        params = resolve_profile("default", REPO / "profiles")
        val = max(1, n_images // 5)
        params["data"].update(
            raw_dir=str(base / "raw"),
            manifest_dir=str(base / "manifests"),
            splits={"train": n_images - 2 * val, "val": val, "test": val},
        )
        params["tracking"]["uri"] = f"sqlite:///{base / 'mlflow.db'}"
        cfg = parse_config(params)
        write_synthpriv(Path(dataset_root(cfg.data)), cfg, progress=False)
        Path(cfg.data.manifest_dir).mkdir(parents=True)
        for split, frame in read_dataset(cfg.data).items():
            write_manifest(frame, Path(cfg.data.manifest_dir) / f"{split}.parquet")
        os.chdir(base)  # the stage writes reports/ under the working directory
        runs = [
            ("1 process (workers 1)", {"workers": 1}),
            ("local pool (workers 2)", {"workers": 2}),
            (
                "Dask LocalCluster 2 x 1 thread",
                {"workers": 1, "scheduler": cluster.scheduler_address},
            ),
        ]
        print(
            f"masks stage on {n_images} SynthPriv images of {cfg.synthpriv.image_size} px "
            f"(human: {cfg.masks.human_backend}, text: {cfg.masks.text_backend}, faces: {cfg.masks.face_backend}), "
            f"{os.cpu_count()} cores, load average before: {os.getloadavg()[0]:.2f}"
        )
        print(f"{'run':<32} {'stage s':>8} {'compute s':>9} {'img/s':>6} {'speed-up':>8}")
        reference, computes = None, {name: [] for name, _ in runs}
        for n, (name, masks) in enumerate(runs * repeats):
            params["masks"].update(
                {"workers": 1, "scheduler": None, **masks, "out_dir": str(base / f"masks{n}")}
            )
            start = time.perf_counter()
            stage.main(parse_config(params))
            total = time.perf_counter() - start
            compute = json.loads((base / "reports/runs/masks.json").read_text())["wall_seconds"]
            reference = reference or compute
            computes[name].append(compute)
            print(
                f"{name:<32} {total:>8.1f} {compute:>9.1f} {n_images / compute:>6.1f} {reference / compute:>7.2f}x"
            )
        medians = {name: statistics.median(seconds) for name, seconds in computes.items()}
        one = medians[runs[0][0]]
        print(
            "median compute s over the repeats, speed-up against the median 1-process run: "
            + ", ".join(f"{name}: {m:.1f} s, {one / m:.2f}x" for name, m in medians.items())
        )
        print(
            f"load average after: {os.getloadavg()[0]:.2f} (compute s: the images' part of the stage, "
            f"pool start and model loading included; speed-up against the first row)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--stage", action="store_true", help="time the whole stage: 1 process, 2, Dask"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="with --stage: rounds of the three runs"
    )
    args = parser.parse_args()
    if args.stage:
        bench_stage(args.images, args.repeats)
        return
    cfg = parse_config(resolve_profile("default", REPO / "profiles"))
    m = cfg.masks
    samples = [generate_sample("train", i, cfg) for i in range(args.images)]
    images, ids = [s.image for s in samples], [s.image_id for s in samples]
    cache_dir = os.environ.get("PRIVOBFNET_CACHE_DIR") or REPO / ".cache"
    runs = [
        ("human", "simulated"),
        ("human", "mediapipe"),
        ("text", "rapidocr"),
        ("face", "mediapipe"),
    ]
    if importlib.util.find_spec("paddleocr"):
        runs.insert(3, ("text", "paddleocr"))
    size = cfg.synthpriv.image_size
    print(
        f"{args.images} SynthPriv images of {size} x {size} px, text limit side {m.text_det_limit_side}, "
        f"{args.threads} thread(s)"
    )
    print(f"{'kind':<6} {'backend':<10} {'load s':>7} {'ms/img':>8} {'img/s':>8}")
    per_image = {}
    with tempfile.TemporaryDirectory() as parser_dir:
        for sample in samples:  # the simulated parser reads its PNGs, as on disk after `download`
            Image.fromarray(sample.parser_mask, "L").save(
                Path(parser_dir) / f"{sample.image_id}.png"
            )
        for kind, name in runs:
            start = time.perf_counter()
            backend = build_backend(
                kind,
                name,
                margin_px=m.text_margin_px,
                limit_side=m.text_det_limit_side,
                parser_dir=parser_dir,
                cache_dir=cache_dir,
                threads=args.threads,
            )
            load = time.perf_counter() - start
            seconds = bench(backend, images, ids)
            per_image[(kind, name)] = seconds
            print(f"{kind:<6} {name:<10} {load:>7.2f} {seconds * 1000:>8.1f} {1 / seconds:>8.1f}")
    profile = [("human", m.human_backend), ("text", m.text_backend), ("face", m.face_backend)]
    total = sum(per_image.get(p, 0.0) for p in profile)
    print(
        f"default profile ({', '.join(f'{k}: {n}' for k, n in profile)}): {1 / total:.1f} img/s per process, "
        f"~{m.workers / total:.1f} img/s over masks.workers={m.workers}"
    )


if __name__ == "__main__":
    main()
