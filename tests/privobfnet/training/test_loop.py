"""The training core both training stages share: resume, lr, non-finite losses, the loss curve."""

from __future__ import annotations

import math

import pytest
import torch

from privobfnet.io import json_digest
from privobfnet.models.checkpoints import save_checkpoint
from privobfnet.training.loop import (
    NonFiniteLoss,
    Progress,
    apply_lr,
    final_loss,
    loss_csv,
    loss_values,
    resume,
    training_state,
)

CPU = torch.device("cpu")


def _model_and_optimizer(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    groups = [{"params": [model.weight], "lr_mult": 1.0}, {"params": [model.bias], "lr_mult": 10.0}]
    return model, torch.optim.SGD(groups, lr=0.1, momentum=0.9)


def _step(model, optimizer):
    loss = (
        model(torch.randn(4, 3)).pow(2).mean()
    )  # draws from the global RNG, as the stages' augmentations do
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def test_resume_continues_exactly_where_the_checkpoint_stood(tmp_path):
    path = tmp_path / "last.pt"
    model, optimizer = _model_and_optimizer(0)
    for _ in range(3):
        _step(model, optimizer)
    save_checkpoint(
        path,
        training_state(
            run_fingerprint="abc",
            iteration=3,
            history=[{"step": 3}],
            models={"net": model},
            optimizer=optimizer,
            device=CPU,
        ),
    )
    for _ in range(2):
        _step(model, optimizer)
    expected = model.weight.detach().clone()

    other, other_optimizer = _model_and_optimizer(1)
    start, history = resume(
        path, run_fingerprint="abc", models={"net": other}, optimizer=other_optimizer, device=CPU
    )
    assert (start, history) == (3, [{"step": 3}])
    for _ in range(2):
        _step(other, other_optimizer)
    assert torch.equal(other.weight, expected)  # weights, momentum and RNG all restored


def test_a_checkpoint_of_other_params_is_not_resumed(tmp_path, capsys):
    path = tmp_path / "last.pt"
    model, optimizer = _model_and_optimizer(0)
    save_checkpoint(
        path,
        training_state(
            run_fingerprint="old",
            iteration=5,
            history=[],
            models={"net": model},
            optimizer=optimizer,
            device=CPU,
        ),
    )
    fresh, fresh_optimizer = _model_and_optimizer(2)
    before = fresh.weight.detach().clone()
    assert resume(
        path, run_fingerprint="new", models={"net": fresh}, optimizer=fresh_optimizer, device=CPU
    ) == (0, [])
    assert torch.equal(fresh.weight, before)
    assert "starting over" in capsys.readouterr().out
    assert resume(
        tmp_path / "absent.pt",
        run_fingerprint="new",
        models={},
        optimizer=fresh_optimizer,
        device=CPU,
    ) == (0, [])


def test_fingerprint_is_stable_and_sensitive():
    assert json_digest({"a": 1, "b": [1, 2]}) == json_digest({"b": [1, 2], "a": 1})
    assert json_digest({"a": 1}) != json_digest({"a": 2})


def test_lr_follows_each_groups_multiplier():
    _, optimizer = _model_and_optimizer(0)
    apply_lr(optimizer, 0.5)
    assert [g["lr"] for g in optimizer.param_groups] == [0.5, 5.0]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_loss_names_iteration_and_every_term(bad):
    losses = {"image": torch.tensor(bad), "cropped": torch.tensor(0.5), "total": torch.tensor(bad)}
    with pytest.raises(
        NonFiniteLoss,
        match=rf"iteration 7: non-finite loss \(total={bad}, image={bad}, "
        r"cropped=0.5\).*checkpoints/x/last.pt",
    ):
        loss_values(losses, iteration=7, last_good="checkpoints/x/last.pt")
    assert loss_values(
        {"cropped": torch.tensor(0.25), "total": torch.tensor(1.0)}, iteration=1, last_good="x"
    ) == {"total": 1.0, "cropped": 0.25}


def test_loss_curve_and_final_loss():
    history = [{"step": s, "lr": 0.1, "total": float(s), "image": 0.5} for s in range(1, 41)]
    assert loss_csv(history).splitlines()[:2] == ["step,lr,total,image", "1,0.1,1.0,0.5"]
    assert final_loss(history, total_steps=40) == pytest.approx(
        (39 + 40) / 2
    )  # the last 1/20 of 40 steps
    assert final_loss(history[:3], total_steps=3) == 3.0 and final_loss([], total_steps=10) is None


def test_progress_sends_each_step_and_a_resumed_runs_history(monkeypatch):
    clock = iter([100.0, 107.5])  # the loop's start and end
    monkeypatch.setattr("privobfnet.training.loop.time.perf_counter", lambda: next(clock))
    sent = []
    progress = Progress(
        "test", total=3, start=1, log_step=lambda metrics, step: sent.append((step, metrics))
    )
    progress.replay([{"step": 1, "lr": 0.1, "total": 2.0}])
    progress.update({"step": 2, "epoch": 0, "lr": 0.1, "total": 1.5, "image": 0.2})
    assert progress.close() == 7.5 and progress.steps == 1  # replayed steps are not counted
    assert sent == [
        (1, {"loss.total": 2.0, "lr": 0.1}),
        (2, {"loss.total": 1.5, "loss.image": 0.2, "lr": 0.1}),
    ]


def test_identical_states_give_byte_identical_checkpoint_files(tmp_path):
    model, optimizer = _model_and_optimizer(0)
    state = training_state(
        run_fingerprint="f",
        iteration=1,
        history=[],
        models={"net": model},
        optimizer=optimizer,
        device=CPU,
    )
    save_checkpoint(tmp_path / "a" / "last.pt", state)
    save_checkpoint(tmp_path / "b" / "last.pt", state)
    assert (tmp_path / "a/last.pt").read_bytes() == (tmp_path / "b/last.pt").read_bytes()
