"""The served deployment's settings: one run at a time, the second one queued or cancelled."""

from __future__ import annotations

import pytest
from prefect.client.schemas.objects import ConcurrencyLimitStrategy

from pipelines.serve import concurrency, main


@pytest.mark.parametrize(
    "on_busy, strategy",
    [
        ("enqueue", ConcurrencyLimitStrategy.ENQUEUE),
        ("cancel", ConcurrencyLimitStrategy.CANCEL_NEW),
    ],
)
def test_one_run_at_a_time_and_what_a_second_run_does(on_busy, strategy):
    limit = concurrency(on_busy)
    assert limit.limit == 1 and limit.collision_strategy == strategy


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--stage-timeout", "0"], "--stage-timeout 0: not a positive number of seconds"),
        (["--on-busy", "drop"], "invalid choice: 'drop'"),
    ],
)
def test_bad_settings_are_refused_before_anything_starts(argv, message, capsys):
    with pytest.raises(SystemExit):
        main(["--no-server", *argv])
    assert message in capsys.readouterr().err
