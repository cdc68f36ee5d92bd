"""A stage's child process: progress bars collapsed in its log, its process tree stopped when the
caller gives up on it."""

from __future__ import annotations

import sys
import time

import psutil
import pytest

from pipelines.stage_process import StageOutput, child_env, run_logged


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_redraws_of_a_line_become_its_last_state():
    output = StageOutput(progress_every_s=30, clock=Clock())
    assert output.feed("start\n\r 0%|   |\r 50%|#  |\r100%|###|\nend\n") == [
        "start",
        "100%|###|",
        "end",
    ]
    assert output.feed("half a li") == [] and output.feed("ne\n") == ["half a line"]


def test_a_bar_still_being_redrawn_is_logged_at_most_once_per_interval():
    clock = Clock()
    output = StageOutput(progress_every_s=30, clock=clock)
    logged = []
    for step in range(1, 601):  # ten minutes of a bar redrawn every second, never ended
        clock.now = float(step)
        logged += output.feed(f"\rmasks {step}/600")
    assert 10 <= len(logged) <= 21 and logged[0] == "masks 1/600"
    assert output.close() == ["masks 600/600"]


def test_child_env_sets_tqdm_interval_unless_given():
    assert child_env({}, 30)["TQDM_MININTERVAL"] == "30"
    assert child_env({"TQDM_MININTERVAL": "1"}, 30)["TQDM_MININTERVAL"] == "1"


def test_a_child_tqdm_bar_gives_a_bounded_number_of_log_lines():
    script = (
        "import sys; from tqdm import tqdm\n"
        "print('before', flush=True)\n"
        "for _ in tqdm(range(3000), mininterval=0, miniters=1, file=sys.stderr): pass\n"
        "print('after', flush=True)\n"
    )
    lines: list[str] = []
    status = run_logged([sys.executable, "-c", script], {}, lines.append, progress_every_s=3600)
    assert status == 0
    bars = [line for line in lines if "it/s" in line or "3000/3000" in line]
    assert lines[0] == "before" and lines[-1] == "after"
    assert 1 <= len(bars) <= 2 and "3000/3000" in bars[-1]


def test_an_exception_while_it_runs_stops_the_whole_process_tree(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    # a shell that starts a sleeping grandchild, as DVC starts a stage
    script = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "print('started', flush=True)\n"
        "p.wait()\n"
    )

    class GiveUp(Exception):
        pass

    def emit(line: str) -> None:
        if line == "started":
            raise GiveUp  # what a task timeout does to the reading loop

    with pytest.raises(GiveUp):
        run_logged([sys.executable, "-c", script], {}, emit)
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while psutil.pid_exists(grandchild) and time.monotonic() < deadline:
        if psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.1)
    assert (
        not psutil.pid_exists(grandchild)
        or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
    )
