"""Data-parallel training under torchrun: the process group, each rank's share of a batch, synced batch norm.

torchrun starts one process per device and sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
without them (or with a world of one) a stage runs as one process, exactly as before, and
nothing here touches ``torch.distributed``. ``train.batch_size`` and ``deeplab.batch_size`` are
the *global* batch: every rank draws the same global batch of a step (a function of (seed,
epoch) or (seed, iteration)) with its augmentation, and keeps its contiguous slice of it. So the
data order, the lr schedule and the number of steps do not depend on the world size, and a run
on N ranks trains the model a one-process run trains, up to float rounding (DistributedDataParallel
averages the ranks' gradients; batch norm normalises over the global batch).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, metrics, plots and MLflow."""
        return self.rank == 0

    def rows(self, global_batch: int) -> slice:
        """This rank's contiguous rows of a global batch of ``global_batch`` samples."""
        if global_batch % self.size:
            raise ValueError(
                f"a global batch of {global_batch} does not split over {self.size} ranks"
            )
        per_rank = global_batch // self.size
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    def share(self, items: Sequence[T]) -> list[T]:
        """This rank's slice of one global batch (``rows``)."""
        return list(items[self.rows(len(items))])

    def block(self, n_items: int) -> range:
        """This rank's contiguous block of ``n_items`` items to score (the blocks differ in size by at most 1)."""
        edges = np.linspace(0, n_items, self.size + 1).round().astype(int)
        return range(int(edges[self.rank]), int(edges[self.rank + 1]))


SINGLE = World()


def world_from_env(env: Mapping[str, str] = os.environ) -> World:
    """The world torchrun describes in ``env`` (no ``WORLD_SIZE``: one process)."""
    if "WORLD_SIZE" not in env:
        return SINGLE
    try:
        world = World(
            rank=int(env["RANK"]),
            size=int(env["WORLD_SIZE"]),
            local_rank=int(env.get("LOCAL_RANK", 0)),
        )
    except (KeyError, ValueError) as exc:
        raise RuntimeError(
            f"torchrun's RANK / WORLD_SIZE / LOCAL_RANK are incomplete or not integers: {exc}"
        ) from None
    if not 0 <= world.rank < world.size:
        raise RuntimeError(f"RANK {world.rank} is outside WORLD_SIZE {world.size}")
    return world


@contextmanager
def joined(
    device: str, env: Mapping[str, str] = os.environ
) -> Iterator[tuple[World, torch.device]]:
    """Join torchrun's process group for the block -> (world, this rank's device).

    ``gloo`` on CPU, ``nccl`` on CUDA, where each rank takes GPU ``LOCAL_RANK`` unless ``device``
    names one (``cuda:N``). A world of one joins nothing and returns ``device`` as given.
    """
    world = world_from_env(env)
    target = torch.device(device)
    if not world.distributed:
        yield world, target
        return
    if target.type == "cuda":
        if target.index is None:
            target = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(target)
    dist.init_process_group(
        "nccl" if target.type == "cuda" else "gloo",
        device_id=target if target.type == "cuda" else None,
    )
    try:
        yield world, target
    finally:
        dist.destroy_process_group()


def wrap(
    model: nn.Module, world: World, device: torch.device, *, find_unused_parameters: bool = False
) -> nn.Module:
    """``model`` in DistributedDataParallel (its training batch norm synced first); itself in a world of one.

    Call it on the plain module (the one whose state dict is saved); DDP copies rank 0's weights
    and buffers to every rank here, so all ranks start equal.
    """
    if not world.distributed:
        return model
    sync_batch_norms(model, device)
    # a process group of its own: the ensemble's two DDP models and the synced batch norm all reduce
    # in the same backward pass, and separate groups keep their collectives from interleaving
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters,
        process_group=dist.new_group(),
    )


def sync_batch_norms(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace, in place, every BatchNorm2d that trains (its affine parameters require grad) by a synced one.

    CUDA: ``nn.SyncBatchNorm``. CPU: :class:`GlooSyncBatchNorm2d`, since torch's SyncBatchNorm
    refuses CPU tensors. Frozen batch norm (ImageNet backbones) keeps its running statistics and
    is left alone, so the models' own ``train()`` overrides still find it.
    """
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.BatchNorm2d and any(p.requires_grad for p in child.parameters()):
                synced = (nn.SyncBatchNorm if device.type == "cuda" else GlooSyncBatchNorm2d)(
                    child.num_features,
                    eps=child.eps,
                    momentum=child.momentum,
                    affine=child.affine,
                    track_running_stats=child.track_running_stats,
                    device=device,
                )
                # the very same parameter and buffer tensors: the optimizer already holds the parameters
                for key, tensor in [
                    *child.named_parameters(recurse=False),
                    *child.named_buffers(recurse=False),
                ]:
                    setattr(synced, key, tensor)
                synced.train(child.training)
                setattr(parent, name, synced)
    return model


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose backward all-reduces the gradient: each rank's loss depends on every rank's input."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlooSyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch, on CPU (gloo).

    Per channel the ranks' sums and counts, then their squared deviations from the global mean, are
    all-reduced by an autograd function that all-reduces their gradients on the way back, so the
    backward pass is that of batch norm over the global batch. Eval mode and a world of one
    are plain BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        all_reduce = _SumOverRanks.apply
        channels = x.shape[1]
        count = torch.full((1,), x.numel() // channels, dtype=x.dtype, device=x.device)
        # two passes, as batch norm itself computes them: the mean, then the squared deviations from it
        # (one pass of sums of squares loses digits where the mean is large against the spread)
        sums = all_reduce(torch.cat([x.sum(dim=(0, 2, 3)), count]))
        n = sums[-1]
        mean = sums[:channels] / n  # (C,)
        centred = x - mean.view(1, channels, 1, 1)
        var = (
            all_reduce((centred * centred).sum(dim=(0, 2, 3))) / n
        )  # (C,), biased, as batch norm normalises
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(
                    var.detach() * n / (n - 1).clamp_min(1), factor
                )  # unbiased, as torch keeps it
        shape = (1, channels, 1, 1)
        out = centred * torch.rsqrt(var.view(shape) + self.eps)
        return out * self.weight.view(shape) + self.bias.view(shape) if self.affine else out


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel (any other module as it is)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def mean_over_ranks(values: Mapping[str, torch.Tensor], world: World) -> dict[str, torch.Tensor]:
    """Scalar tensors averaged over the ranks (detached); as given in a world of one."""
    if not world.distributed:
        return dict(values)
    names = list(values)
    stacked = torch.stack([values[name].detach().float() for name in names])
    dist.all_reduce(stacked)
    return dict(zip(names, stacked / world.size))


def sum_over_ranks(array: np.ndarray, world: World, device: torch.device) -> np.ndarray:
    """An integer array (a confusion matrix, a count) summed over the ranks (on ``device``: nccl's); exact."""
    if not world.distributed:
        return array
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)).to(device)
    dist.all_reduce(tensor)
    return tensor.cpu().numpy()


def gather_blocks(part: Any, world: World) -> list[Any]:
    """Every rank's ``part`` (any picklable value), in rank order; ``[part]`` in a world of one."""
    if not world.distributed:
        return [part]
    parts: list[Any] = [None] * world.size
    dist.all_gather_object(parts, part)
    return parts


def from_main(value: Any, world: World) -> Any:
    """Rank 0's ``value`` on every rank (the others pass anything, e.g. None)."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def seed_ranks(seed: int, world: World) -> None:
    """Reseed the global RNG (dropout draws from it) of ranks other than 0 by (seed, rank), so their masks differ.

    Call after the models are built (every rank builds the same initial weights from ``seed``);
    rank 0 keeps the stream a one-process run has.
    """
    if world.rank > 0:
        torch.manual_seed(seed * 1_000_003 + world.rank)
