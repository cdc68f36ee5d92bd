"""Benchmark (not a test): the paper profiles' two trainings on one CUDA device, on synthetic tensors.

Measures, with the paper_voc profile's shapes, (1) the ensemble (ResNet-38 Model-Image at 448 px
plus Model-Cropped on 6 crops of 320, batch 4) and (2) DeepLabV2-ResNet-101 (321 px crops,
batch 10, frozen batch norm as trained from ImageNet weights): training images/s, the achieved
TFLOP/s of a step (FLOPs counted with ``torch.utils.flop_counter.FlopCounterMode``, with
bench/train.py's grouped-convolution fix) and its ratio to a bf16 / fp32 8192^2 matmul measured
in the same process, and peak memory. From the measured step times it prints the estimated wall
time of each paper profile's full training on one device (and on N, assuming linear scaling,
which is an upper bound). Random weights, frozen as the ImageNet-initialised networks train
(ResNet-38's conv1a, b2 and batch norm; ResNet-101's batch norm): speed does not depend on the
values, so no weight file is needed. Without CUDA it says so and exits 0.

    python bench/gpu.py                       # fp32, channels_last, 10 timed steps each
    python bench/gpu.py --precision bf16 --cudnn-benchmark --steps 20
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.train import FLOP_FORMULAS, median_seconds, synthetic_batch
from ops.params import resolve_profile
from privobfnet.config import parse_config
from privobfnet.data.mask_types import load_mask_types
from privobfnet.data.readers.voc import VOC_CLASSES
from privobfnet.models import backbones
from privobfnet.models.deeplabv2 import build_deeplab
from privobfnet.runtime import autocast, setup_torch
from privobfnet.training.deeplab import (
    optimizer_param_groups,
    segmentation_loss,
)
from privobfnet.training.ensemble import (
    build_training,
    ensemble_losses,
)

PROFILES = ("paper_voc", "paper_coco", "paper_vispr")
WARMUP_STEPS = 3


def matmul_tflops(dtype: torch.dtype, device: torch.device, n: int = 8192) -> float:
    a, b = (
        torch.randn(n, n, device=device, dtype=dtype),
        torch.randn(n, n, device=device, dtype=dtype),
    )
    for _ in range(3):
        a @ b
    return 2 * n**3 / median_seconds(lambda: a @ b, 10, device) / 1e12


def timed(step, steps: int, device: torch.device) -> tuple[float, int, float]:
    """(median seconds per step, FLOPs of one step, peak GiB) of ``step(i)``."""
    with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter:
        step(0)
    for i in range(WARMUP_STEPS):
        step(i)
    torch.cuda.reset_peak_memory_stats(device)
    indices = iter(range(steps))
    seconds = median_seconds(lambda: step(next(indices)), steps, device)
    return seconds, counter.get_total_flops(), torch.cuda.max_memory_allocated(device) / 2**30


def ensemble_step_fn(cfg, device: torch.device):
    mask_types = load_mask_types("voc", VOC_CLASSES)
    train = cfg.train
    model_image, model_cropped, optimizer = build_training(train, mask_types, device)
    batches = [synthetic_batch(cfg, len(mask_types), device, seed) for seed in range(4)]
    if not train.channels_last:
        batches = [dataclasses.replace(b, images=b.images.contiguous()) for b in batches]

    def step(i: int) -> None:
        with autocast(device, train.precision):
            losses = ensemble_losses(
                model_image,
                model_cropped,
                batches[i % 4],
                train,
                generator=torch.Generator().manual_seed(i),
            )
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()

    return step


def deeplab_step_fn(cfg, device: torch.device):
    deeplab = cfg.deeplab
    memory_format = torch.channels_last if deeplab.channels_last else torch.contiguous_format
    n_labels = len(VOC_CLASSES) + 1
    model = build_deeplab(deeplab, n_classes=n_labels, load_pretrained=False).to(
        device, memory_format=memory_format
    )
    optimizer = torch.optim.SGD(
        optimizer_param_groups(model, weight_decay=deeplab.weight_decay),
        lr=deeplab.lr,
        momentum=deeplab.momentum,
    )
    g = torch.Generator().manual_seed(0)
    b, s = deeplab.batch_size, deeplab.crop_size
    images = torch.rand(b, 3, s, s, generator=g).to(device).contiguous(memory_format=memory_format)
    labels = torch.randint(0, n_labels, (b, s, s), generator=g).to(device)
    model.train()

    def step(_: int) -> None:
        with autocast(device, deeplab.precision):
            loss = segmentation_loss(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=10, help="timed steps per training (after 3 warm-up steps)"
    )
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--cudnn-benchmark", action="store_true")
    parser.add_argument(
        "--gpus", type=int, default=8, help="also estimate the wall time on this many GPUs"
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(
            "bench/gpu.py: no CUDA device here (torch.cuda.is_available() is False); nothing measured"
        )
        return 0
    gpu = {
        "precision": args.precision,
        "channels_last": not args.no_channels_last,
        "cudnn_benchmark": args.cudnn_benchmark,
        "device": "cuda",
    }
    params = resolve_profile("paper_voc", REPO / "profiles")
    for section in ("train", "deeplab"):
        params[section].update(gpu)
    # the profile's pretrained path stays (it decides what is frozen); only reading the file is skipped:
    # build_backbone then freezes ResNet-38 as trained and keeps its random weights
    backbones.resnet38_imagenet_state = lambda path: None
    cfg = parse_config(params)
    device = setup_torch(device="cuda", num_threads=0, seed=0, cudnn_benchmark=args.cudnn_benchmark)
    peak = {
        "fp32": matmul_tflops(torch.float32, device),
        "bf16": matmul_tflops(torch.bfloat16, device),
    }

    results = {}
    for name, build, batch in (
        ("ensemble", ensemble_step_fn, cfg.train.batch_size),
        ("deeplab", deeplab_step_fn, cfg.deeplab.batch_size),
    ):
        seconds, flops, peak_gib = timed(build(cfg, device), args.steps, device)
        results[name] = {
            "batch": batch,
            "seconds_per_step": round(seconds, 4),
            "images_per_s": round(batch / seconds, 2),
            "tflop_per_step": round(flops / 1e12, 3),
            "achieved_tflops": round(flops / seconds / 1e12, 2),
            "achieved_over_matmul": round(flops / seconds / 1e12 / peak[args.precision], 3),
            "peak_memory_gib": round(peak_gib, 2),
        }
        torch.cuda.empty_cache()
    results["ensemble"].update(
        input_size=cfg.train.input_size, n_crops=cfg.train.n_crops, crop_size=cfg.train.crop_size
    )
    results["deeplab"]["crop_size"] = cfg.deeplab.crop_size

    estimates = {}
    for profile in PROFILES:
        p = parse_config(resolve_profile(profile, REPO / "profiles"))
        ensemble_steps = p.train.epochs * (p.data.splits[p.train.train_split] // p.train.batch_size)
        hours = (
            ensemble_steps * results["ensemble"]["seconds_per_step"]
            + p.deeplab.iterations * results["deeplab"]["seconds_per_step"]
        ) / 3600
        estimates[profile] = {
            "ensemble_steps": ensemble_steps,
            "deeplab_steps": p.deeplab.iterations,
            "hours_one_gpu": round(hours, 2),
            f"hours_{args.gpus}_gpus_linear": round(hours / args.gpus, 2),
        }
    print(
        json.dumps(
            {
                "gpu": torch.cuda.get_device_name(device),
                "torch": torch.__version__,
                **gpu,
                "matmul_tflops": {k: round(v, 1) for k, v in peak.items()},
                "trainings": results,
                "estimated_training_wall_time": estimates,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
