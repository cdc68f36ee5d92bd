"""Images/s of each mask backend at the default profile's image size (SynthPriv, 160 px), in one
process with one thread per backend (what each of the stage's ``masks.workers`` processes gets on
a 2-core machine).

    .venv/bin/python bench/masks.py [--images 48] [--threads 1]

Model files come from $PRIVOBFNET_CACHE_DIR or <repo>/.cache (fetched on first use). PaddleOCR is
measured when the `paddle` extra is installed.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from privobfnet.config import parse_config
from privobfnet.data.synthpriv import generate_sample
from privobfnet.masks import build_backend
from ops.common import resolve_profile

REPO = Path(__file__).resolve().parents[1]


def bench(backend, images: list[np.ndarray], ids: list[str]) -> float:
    """Seconds per image, after one warm-up call."""
    backend(images[0], image_id=ids[0])
    start = time.perf_counter()
    for image, image_id in zip(images, ids):
        backend(image, image_id=image_id)
    return (time.perf_counter() - start) / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    cfg = parse_config(resolve_profile("default", REPO / "profiles"))
    m = cfg.masks
    samples = [generate_sample("train", i, cfg) for i in range(args.images)]
    images, ids = [s.image for s in samples], [s.image_id for s in samples]
    cache_dir = os.environ.get("PRIVOBFNET_CACHE_DIR") or REPO / ".cache"
    runs = [("human", "simulated"), ("human", "mediapipe"), ("text", "rapidocr"), ("face", "mediapipe")]
    if importlib.util.find_spec("paddleocr"):
        runs.insert(3, ("text", "paddleocr"))
    size = cfg.synthpriv.image_size
    print(f"{args.images} SynthPriv images of {size} x {size} px, text limit side {m.text_det_limit_side}, "
          f"{args.threads} thread(s)")
    print(f"{'kind':<6} {'backend':<10} {'load s':>7} {'ms/img':>8} {'img/s':>8}")
    per_image = {}
    with tempfile.TemporaryDirectory() as parser_dir:
        for sample in samples:  # the simulated parser reads its PNGs, as on disk after `download`
            Image.fromarray(sample.parser_mask, "L").save(Path(parser_dir) / f"{sample.image_id}.png")
        for kind, name in runs:
            start = time.perf_counter()
            backend = build_backend(kind, name, margin_px=m.text_margin_px, limit_side=m.text_det_limit_side,
                                    parser_dir=parser_dir, cache_dir=cache_dir, threads=args.threads)
            load = time.perf_counter() - start
            seconds = bench(backend, images, ids)
            per_image[(kind, name)] = seconds
            print(f"{kind:<6} {name:<10} {load:>7.2f} {seconds * 1000:>8.1f} {1 / seconds:>8.1f}")
    profile = [("human", m.human_backend), ("text", m.text_backend), ("face", m.face_backend)]
    total = sum(per_image.get(p, 0.0) for p in profile)
    print(f"default profile ({', '.join(f'{k}: {n}' for k, n in profile)}): {1 / total:.1f} img/s per process, "
          f"~{m.workers / total:.1f} img/s over masks.workers={m.workers}")


if __name__ == "__main__":
    main()
