"""privobfnet.training.distributed: each rank's share of a batch, torchrun's environment, synced batch norm on CPU."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from privobfnet.training.distributed import (
    GlooSyncBatchNorm2d,
    World,
    sync_batch_norms,
    world_from_env,
)


def test_ranks_split_a_global_batch_into_contiguous_equal_rows():
    keys = list(range(12))
    shares = [World(rank=r, size=3).share(keys) for r in range(3)]
    assert shares == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert World().share(keys) == keys and World().rows(5) == slice(0, 5)
    with pytest.raises(ValueError, match="a global batch of 10 does not split over 4 ranks"):
        World(rank=0, size=4).rows(10)


def test_eval_blocks_cover_the_split_once():
    assert [list(World(rank=r, size=3).block(8)) for r in range(3)] == [
        [0, 1, 2],
        [3, 4],
        [5, 6, 7],
    ]
    for n_items, size in [(2, 4), (7, 2), (10, 3), (0, 2)]:
        blocks = [list(World(rank=r, size=size).block(n_items)) for r in range(size)]
        assert sum(blocks, []) == list(range(n_items))  # in rank order, each item once
        assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_world_comes_from_torchruns_environment():
    assert world_from_env({}) == World() and not world_from_env({}).distributed
    world = world_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert world == World(rank=3, size=4, local_rank=1) and world.distributed and not world.is_main
    with pytest.raises(RuntimeError, match="RANK 4 is outside WORLD_SIZE 4"):
        world_from_env({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(RuntimeError, match="incomplete or not integers"):
        world_from_env({"WORLD_SIZE": "2"})


def test_only_batch_norm_that_trains_is_synced_and_keeps_its_parameters():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    model[2][0].requires_grad_(False)  # frozen, as ImageNet backbones keep it
    weight = model[1].weight
    sync_batch_norms(model, torch.device("cpu"))
    assert (
        type(model[1]) is GlooSyncBatchNorm2d and model[1].weight is weight
    )  # the optimizer's tensor
    assert type(model[2][0]) is nn.BatchNorm2d


def _rank(rank: int, init_file: str, x: torch.Tensor, target: torch.Tensor, out: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(0)
    bn = GlooSyncBatchNorm2d(3)
    rows = World(rank=rank, size=2).rows(x.shape[0])
    part = x[rows].clone().requires_grad_(True)
    y = bn(part)
    # each rank's loss is its part of the global loss; the global one is their sum
    (y * target[rows]).sum().backward()
    grads = [bn.weight.grad.clone(), bn.bias.grad.clone()]
    for grad in grads:
        dist.all_reduce(grad)
    out[rank] = {
        "y": y.detach(),
        "x_grad": part.grad,
        "weight_grad": grads[0],
        "bias_grad": grads[1],
        "running_mean": bn.running_mean.clone(),
        "running_var": bn.running_var.clone(),
    }
    dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes: ~10 s of imports
def test_synced_batch_norm_over_two_ranks_is_batch_norm_over_the_global_batch(tmp_path):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 5, 5, generator=g) * 3 + 2  # (B, C, H, W), a mean away from 0
    target = torch.randn(4, 3, 5, 5, generator=g)
    reference = nn.BatchNorm2d(3)
    xr = x.clone().requires_grad_(True)
    reference_y = reference(xr)
    (reference_y * target).sum().backward()
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        out = manager.dict()
        procs = [
            ctx.Process(target=_rank, args=(r, str(tmp_path / "init"), x, target, out))
            for r in range(2)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        assert [p.exitcode for p in procs] == [0, 0]
        out = dict(out)
    y = torch.cat([out[0]["y"], out[1]["y"]])
    x_grad = torch.cat([out[0]["x_grad"], out[1]["x_grad"]])
    torch.testing.assert_close(y, reference_y.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x_grad, xr.grad, atol=1e-5, rtol=1e-5)
    for rank in (0, 1):
        torch.testing.assert_close(
            out[rank]["weight_grad"], reference.weight.grad, atol=1e-4, rtol=1e-5
        )
        torch.testing.assert_close(
            out[rank]["bias_grad"], reference.bias.grad, atol=1e-4, rtol=1e-5
        )
        torch.testing.assert_close(
            out[rank]["running_mean"], reference.running_mean, atol=1e-6, rtol=1e-5
        )
        torch.testing.assert_close(
            out[rank]["running_var"], reference.running_var, atol=1e-6, rtol=1e-5
        )
