"""Benchmark (not a test): the ensemble's training speed on a profile, next to the machine's matmul speed.

Prints training images/s, the achieved GFLOP/s of a training step (FLOPs counted with
``torch.utils.flop_counter.FlopCounterMode``: convolutions, matmuls and their backward), a plain
fp32 ``torch.matmul`` GFLOP/s measured in the same process with the same threads, their ratio, and
peak memory. Synthetic batches of the profile's shape: no data set needed.

    .venv/bin/python bench/train.py                  # default profile
    .venv/bin/python bench/train.py --profile ci --steps 5
    python bench/train.py --profile paper_vispr --device cuda
"""
from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as stages/train_ensemble.py, before torch starts OpenMP
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from privobfnet.config import parse_config  # noqa: E402
from privobfnet.data.mask_types import load_mask_types  # noqa: E402
from privobfnet.data.synthpriv import ATTRIBUTE_IDS  # noqa: E402
from privobfnet.models.training import Batch, ensemble_losses  # noqa: E402
from ops.common import resolve_profile  # noqa: E402
from privobfnet.models.ensemble import build_training  # noqa: E402
from privobfnet.trainer import setup_torch  # noqa: E402


def matmul_gflops(n: int = 2048, repeats: int = 10, device: torch.device = torch.device("cpu")) -> float:
    """fp32 n x n matmul throughput, from the median of ``repeats`` timed products after warm-up."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    return 2 * n ** 3 / median_seconds(lambda: a @ b, repeats, device) / 1e9


def median_seconds(fn, repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls (the median resists other processes' bursts)."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synthetic_batch(cfg, n_classes: int, device: torch.device, seed: int) -> Batch:
    """A batch of the profile's shape: random images, masks, labels and scores."""
    g = torch.Generator().manual_seed(seed)
    b, s = cfg.train.batch_size, cfg.train.input_size
    images = torch.randn(b, 3, s, s, generator=g).contiguous(memory_format=torch.channels_last)
    labels = (torch.rand(b, n_classes, generator=g) < 0.2).float()
    human, text = torch.rand(b, 1, s, s, generator=g), torch.rand(b, 1, s, s, generator=g)
    scores = torch.rand(b, generator=g)
    return Batch(images.to(device), human.to(device), text.to(device), labels.to(device), scores.to(device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps (after 3 warm-up steps)")
    parser.add_argument("--device", help="override train.device (e.g. cuda)")
    args = parser.parse_args()
    params = resolve_profile(args.profile, REPO / "profiles")
    if args.device:
        params["train"]["device"] = args.device
    pretrained = params["train"]["pretrained"]
    if pretrained and not (REPO / pretrained).exists():
        print(f"{pretrained} is missing: random initialisation (speed is the same)", file=sys.stderr)
        params["train"]["pretrained"] = None
    cfg = parse_config(params)
    device = setup_torch(device=cfg.train.device, num_threads=cfg.train.num_threads, seed=cfg.seed)
    mask_types = load_mask_types("synthpriv", list(ATTRIBUTE_IDS))
    model_image, model_cropped, optimizer = build_training(cfg.train, mask_types, device)
    batches = [synthetic_batch(cfg, len(mask_types), device, seed) for seed in range(4)]

    def step(i: int) -> None:
        generator = torch.Generator().manual_seed(i)
        losses = ensemble_losses(model_image, model_cropped, batches[i % 4], cfg.train, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()

    with FlopCounterMode(display=False) as counter:
        step(0)
    flops_per_step = counter.get_total_flops()
    for i in range(3):
        step(i)
    indices = iter(range(args.steps))
    seconds = median_seconds(lambda: step(next(indices)), args.steps, device)
    matmul = matmul_gflops(device=device)
    achieved = flops_per_step / seconds / 1e9
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    report = {
        "profile": args.profile, "device": str(device), "threads": torch.get_num_threads(),
        "batch_size": cfg.train.batch_size, "input_size": cfg.train.input_size, "n_crops": cfg.train.n_crops,
        "seconds_per_step": round(seconds, 4), "train_images_per_s": round(cfg.train.batch_size / seconds, 2),
        "gflop_per_step": round(flops_per_step / 1e9, 2), "achieved_gflops": round(achieved, 1),
        "matmul_gflops": round(matmul, 1), "achieved_over_matmul": round(achieved / matmul, 3),
        "peak_rss_mb": round(peak_mb, 1),
        "epoch_estimate_s": round(seconds * (cfg.data.splits[cfg.train.train_split] // cfg.train.batch_size), 1),
    }
    if device.type == "cuda":
        report["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
