"""The training core both training stages share: setup, resume/checkpoint, lr, progress, loss curve.

One set of names for both: a checkpoint holds ``fingerprint`` (what must match to resume),
``iteration``, ``history`` (one dict per step: ``step``, ``lr`` and the loss terms, ``total``
among them), ``models`` (name -> state dict), ``optimizer`` and ``rng`` (torch, CUDA). Per-step
metrics go out as ``loss.<term>`` and ``lr`` through a callback the stage gives (asynchronous
MLflow logging); the loss CSV has the history's columns. A non-finite loss stops training with
:class:`NonFiniteLoss` before the step is applied, so the last good checkpoint stays in place.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn
from tqdm import tqdm

from privobfnet.training.distributed import SINGLE, World, from_main, gather_blocks

RESUME_TAG = (
    "privobfnet.resumed_from"  # the MLflow tag: the iteration a run resumed at (0: from scratch)
)
StepLogger = Callable[[Mapping[str, float], int], None]  # (metrics, step) -> None


class NonFiniteLoss(RuntimeError):
    """A loss term became NaN or infinite; the message names the iteration and the terms."""


def apply_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's lr to ``lr`` times its ``lr_mult`` (1 where absent)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)


def training_state(
    *,
    run_fingerprint: str,
    iteration: int,
    history: list[dict],
    models: Mapping[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    world: World = SINGLE,
) -> dict[str, Any]:
    """Everything a resumed run needs to continue exactly where this one stands.

    Under torchrun every rank calls it (it gathers each rank's RNG state, ``rank_rng``); rank 0 saves it.
    """
    state = {
        "fingerprint": run_fingerprint,
        "iteration": iteration,
        "history": history,
        "models": {name: model.state_dict() for name, model in models.items()},
        "optimizer": optimizer.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
        },
    }
    if world.distributed:
        own = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        }
        state["rank_rng"] = gather_blocks(own, world)
    return state


def _matching_state(path: Path, run_fingerprint: str) -> dict[str, Any] | None:
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("fingerprint") != run_fingerprint:
        tqdm.write(f"{path} is from other params or data; starting over")
        return None
    return state


def resume(
    path: str | os.PathLike,
    *,
    run_fingerprint: str,
    models: Mapping[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    world: World = SINGLE,
) -> tuple[int, list[dict]]:
    """Load ``path`` into the models and optimizer if its fingerprint matches -> (iteration, history).

    Under torchrun rank 0 reads the file and sends it to every rank (no shared file system needed);
    each rank gets its own RNG state back when the world size is the checkpoint's.
    """
    path = Path(path)
    state = from_main(_matching_state(path, run_fingerprint) if world.is_main else None, world)
    if state is None:
        return 0, []
    for name, model in models.items():
        model.load_state_dict(state["models"][name])
    optimizer.load_state_dict(state["optimizer"])
    rank_rng = state.get("rank_rng")
    if world.distributed and rank_rng is not None and len(rank_rng) == world.size:
        torch.set_rng_state(rank_rng[world.rank]["torch"])
        if device.type == "cuda" and rank_rng[world.rank]["cuda"] is not None:
            torch.cuda.set_rng_state(rank_rng[world.rank]["cuda"], device)
    else:
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and state["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    if world.is_main:
        tqdm.write(f"{path}: resuming at iteration {state['iteration']}")
    return state["iteration"], list(state["history"])


def loss_values(
    losses: Mapping[str, torch.Tensor], *, iteration: int, last_good: str | os.PathLike
) -> dict[str, float]:
    """The loss terms as floats, ``total`` first; raises :class:`NonFiniteLoss` when any is NaN or infinite."""
    values = {
        name: loss.item()
        for name, loss in sorted(losses.items(), key=lambda item: item[0] != "total")
    }
    bad = {name: value for name, value in values.items() if not math.isfinite(value)}
    if bad:
        terms = ", ".join(f"{name}={value}" for name, value in values.items())
        raise NonFiniteLoss(
            f"iteration {iteration}: non-finite loss ({terms}); training stopped before this "
            f"step was applied; the last good checkpoint is {last_good} (if one was written)"
        )
    return values


class Progress:
    """The progress bar, the per-step metrics and the one training clock of a run."""

    def __init__(
        self,
        desc: str,
        *,
        total: int,
        start: int,
        log_step: StepLogger | None = None,
        show: bool = True,
    ):
        """``show``: draw the bar (under torchrun only rank 0 does)."""
        self._bar = tqdm(
            total=total,
            initial=start,
            desc=desc,
            unit="it",
            mininterval=1.0,
            dynamic_ncols=True,
            disable=not show,
        )
        self._log_step = log_step
        self._started = time.perf_counter()
        self.steps = 0  # steps taken by this process (not counting those a resume skipped)

    def replay(self, history: list[dict]) -> None:
        """Send a resumed run's earlier steps to the step logger, so its curves are whole."""
        for row in history:
            self._emit(row)

    def update(self, row: dict) -> None:
        """One finished step: ``row`` is its history entry (``step``, ``lr``, loss terms)."""
        self._emit(row)
        self.steps += 1
        self._bar.update(1)
        self._bar.set_postfix(loss=f"{row['total']:.3f}", lr=f"{row['lr']:.2e}", refresh=False)

    def _emit(self, row: dict) -> None:
        if self._log_step is not None:
            metrics = {f"loss.{k}": v for k, v in row.items() if k not in ("step", "lr", "epoch")}
            self._log_step({**metrics, "lr": row["lr"]}, row["step"])

    def close(self) -> float:
        """Stop the clock; returns the seconds this process spent in the loop."""
        self._bar.close()
        return time.perf_counter() - self._started


def loss_csv(history: list[dict]) -> str:
    """The loss curve for ``dvc plots``: one row per step, the history's columns."""
    columns = list(dict.fromkeys(key for row in history for key in row)) or ["step", "lr", "total"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return out.getvalue()


FINAL_LOSS_SHARE = (
    20  # final_loss averages the last 1/20 of the steps: one step's loss is too noisy
)


def final_loss(history: list[dict], total_steps: int) -> float | None:
    """Mean total loss over the last ``total_steps // FINAL_LOSS_SHARE`` steps (None before any step)."""
    tail = [row["total"] for row in history[-max(1, total_steps // FINAL_LOSS_SHARE) :]]
    return round(sum(tail) / len(tail), 4) if tail else None
