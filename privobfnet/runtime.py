"""Torch's process settings, set once per stage: threads, determinism, seed; and bf16 autocast."""

from __future__ import annotations

import contextlib

import torch


def setup_torch(
    *, device: str, num_threads: int, seed: int, cudnn_benchmark: bool = False
) -> torch.device:
    """Threads, determinism flags and the seed; returns the device.

    On CPU ``torch.use_deterministic_algorithms`` holds (resumed runs end bit-identical). cuDNN's
    autotuner picks kernels by timing, so ``cudnn_benchmark`` trades run-to-run identity for speed.
    """
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    target = torch.device(device)
    if target.type == "cpu":
        torch.use_deterministic_algorithms(True)
        # deterministic mode also fills every new tensor with NaN (to expose reads of uninitialised
        # memory): ~30% of a lite0 training step on CPU (measured), and no kernel here reads it
        torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.benchmark = cudnn_benchmark and target.type == "cuda"
    torch.manual_seed(seed)
    return target


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast of forward and loss when ``precision`` is "bf16"; fp32: no context at all."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
