"""Tests of tools.experiments: the grids as `dvc exp run --temp` commands, run one after another."""

from __future__ import annotations

import shlex

import yaml

from privobfnet.report.rows import grid
from tools.collect_ablation import EVALUATE_METRICS, parse_experiments
from tools.experiments import (
    expected_params,
    main,
    missing_rows,
    run_command,
    run_grid,
    workspace_row,
)

REFERENCE = {
    "seed": 0,
    "deeplab": {"labels": "pseudo", "iterations": 800},
    "train": {
        "use_cropped": True,
        "use_privacy": True,
        "use_attribute": True,
        "use_mask_weighting": True,
        "crop_target": "paper",
        "crop_size": 224,
        "loss_weights": {"image": 10.0, "cropped": 1.0},
    },
}


def finished(params):
    return {"name": "x", "params": params, "metrics": {EVALUATE_METRICS: {"privacy": {}}}}


def test_a_row_is_one_temporary_experiment_with_its_overrides():
    row = {
        "seed": 1,
        "train.crop_target": "l2g",
        "train.loss_weights.image": 1.0,
        "train.use_cropped": False,
    }
    assert run_command(row) == [
        "dvc", "exp", "run", "--temp",
        "-S", "seed=1", "-S", "train.crop_target=l2g", "-S", "train.loss_weights.image=1.0",
        "-S", "train.use_cropped=false",
    ]  # fmt: skip
    params = expected_params(REFERENCE, row)
    assert params["train"]["loss_weights"] == {"image": 1.0, "cropped": 1.0}
    assert params["seed"] == 1 and params["train"]["use_cropped"] is False
    assert REFERENCE["train"]["loss_weights"]["image"] == 10.0  # the reference is left as it was
    # each -S value reads back, as YAML (what DVC's --set-param parses), as the row's value
    for key, value in row.items():
        assert yaml.safe_load(run_command({key: value})[-1].split("=", 1)[1]) == value


def test_only_rows_without_a_finished_experiment_are_missing():
    rows = grid("seeds")
    done = [
        finished(expected_params(REFERENCE, rows[0])),
        finished(expected_params(REFERENCE, rows[4])),
    ]
    unfinished = {
        "name": "y",
        "params": expected_params(REFERENCE, rows[1]),
        "metrics": {EVALUATE_METRICS: None},
    }
    other_configuration = finished({**expected_params(REFERENCE, rows[2]), "profile": "ci"})
    missing = missing_rows(rows, REFERENCE, done + [unfinished, other_configuration])
    assert missing == [row for i, row in enumerate(rows) if i not in (0, 4)]
    assert missing_rows(rows, REFERENCE, []) == rows


def test_rows_the_ablation_file_holds_are_done_where_dvc_lists_none():
    """A clone without the experiment refs: the rows reports/ablation.json collected (parse_experiments' rows)
    count as done; one of another configuration, or of other hypothesis values, does not."""
    rows = grid("hypotheses")
    collected = parse_experiments(
        [
            finished(expected_params(REFERENCE, rows[2])),
            finished({**expected_params(REFERENCE, rows[3]), "profile": "ci"}),
        ]
    )
    assert missing_rows(rows, REFERENCE, [], collected) == [
        row for i, row in enumerate(rows) if i != 2
    ]
    assert missing_rows(rows, REFERENCE, [], []) == rows


def test_dry_run_prints_the_missing_rows_commands_and_runs_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(REFERENCE))
    rows = grid("ablation")
    done = [finished(expected_params(REFERENCE, rows[-1]))]  # the ceiling ran already

    def refuse(command):
        raise AssertionError(f"ran {command}")

    assert (
        run_grid(
            "ablation",
            dry_run=True,
            read_experiments=lambda: done,
            execute=refuse,
            is_clean=lambda: False,
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"ablation: {len(rows) - 1} of {len(rows)} experiments to run"
    assert [shlex.split(line) for line in out[1:]] == [run_command(row) for row in rows[:-1]]


def test_the_rows_run_one_after_another_and_a_failure_does_not_stop_the_others(capsys):
    ran = []

    def execute(command):
        ran.append(command)
        return 1 if len(ran) == 2 else 0

    assert run_grid("hypotheses", run_all=True, execute=execute) == 1
    rows = grid("hypotheses")
    assert [command[2:] for command in ran] == [run_command(row) for row in rows]
    assert all(command[1] == "-m" for command in ran)  # dvc of the running interpreter
    assert capsys.readouterr().err.strip() == f"failed: {shlex.join(run_command(rows[1]))}"


def test_printing_a_grid_and_its_errors(capsys):
    assert main(["seeds"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(grid("seeds")) and lines[0].startswith(
        "-S seed=0 -S train.use_cropped=true"
    )
    assert main(["tables"]) == 2 and "no experiment grid 'tables'" in capsys.readouterr().err


def test_the_row_the_up_to_date_workspace_ran_is_saved_not_run_again(tmp_path, monkeypatch, capsys):
    """`make run` computed the profile's own row: `dvc exp save` records it; a stale workspace runs it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(REFERENCE))
    rows = grid("seeds")
    (own,) = [row for row in rows if expected_params(REFERENCE, row) == REFERENCE]
    assert workspace_row(rows, REFERENCE, lambda: True) is own
    assert workspace_row(rows, REFERENCE, lambda: False) is None
    assert workspace_row([r for r in rows if r is not own], REFERENCE, lambda: True) is None
    for clean in (True, False):
        ran = []
        assert (
            run_grid(
                "seeds",
                read_experiments=lambda: [],
                execute=lambda command, ran=ran: ran.append(command[2:]) or 0,
                is_clean=lambda clean=clean: clean,
            )
            == 0
        )
        expected = [run_command(row) for row in rows]
        if clean:
            expected[rows.index(own)] = ["dvc", "exp", "save", "-n", "seeds-workspace-seed0"]
        assert ran == expected
