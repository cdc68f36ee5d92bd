"""One stage's `dvc repro` as a child process: its output as log lines, progress bars collapsed,
and the whole process tree stopped when the caller gives up on it (a timeout, a cancelled run).

A progress bar (tqdm) on a pipe redraws itself with carriage returns, so read line by line every
refresh would be one log line. ``StageOutput`` keeps a ``\\r``-redrawn line to its last state and
passes on a bar still being redrawn at most once per ``progress_every_s``; the child is also
started with ``TQDM_MININTERVAL`` at that interval (bars that set no interval of their own redraw
no more often), so a stage's log holds a bounded number of progress lines.
"""

from __future__ import annotations

import codecs
import os
import queue
import subprocess
import threading
import time
from typing import Callable

import psutil

PROGRESS_EVERY_S = 30.0  # a bar still being redrawn is logged at most this often
POLL_S = 0.5  # how often the reading loop wakes up (a timeout can only interrupt running code)
STOP_GRACE_S = 10.0  # after SIGTERM, before SIGKILL


class StageOutput:
    """Turns a child's output chunks into log lines, carriage-return redraws collapsed."""

    def __init__(
        self,
        progress_every_s: float = PROGRESS_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._every, self._clock = progress_every_s, clock
        self._partial = ""  # text after the last newline
        self._last_progress = -float("inf")

    @staticmethod
    def _last_draw(line: str) -> str | None:
        """A line's final state: the text after its last carriage return that is not blank."""
        if "\r" not in line:
            return line
        drawn = [part for part in line.split("\r") if part.strip()]
        return drawn[-1] if drawn else None

    def feed(self, text: str) -> list[str]:
        """The complete lines in ``text`` (with what came before), plus a bar's latest state when due."""
        *complete, self._partial = (self._partial + text).split("\n")
        lines = [drawn for line in complete if (drawn := self._last_draw(line)) is not None]
        if "\r" in self._partial:
            latest = self._last_draw(self._partial)
            self._partial = "\r" + (latest or "")  # only the latest redraw is kept
            now = self._clock()
            if latest is not None and now - self._last_progress >= self._every:
                lines.append(latest)
                self._last_progress = now
        return lines

    def close(self) -> list[str]:
        """What is left after the last newline (a bar that never ended its line)."""
        rest, self._partial = self._last_draw(self._partial), ""
        return [rest] if rest else []


def child_env(env: dict[str, str], progress_every_s: float = PROGRESS_EVERY_S) -> dict[str, str]:
    """``env`` with tqdm's default redraw interval raised to ``progress_every_s`` (tqdm reads
    ``TQDM_*`` variables as its defaults), unless it is already set."""
    return {"TQDM_MININTERVAL": f"{progress_every_s:g}", **env}


def _read_chunks(stream, chunks: queue.Queue) -> None:
    """The reader thread: raw chunks of ``stream``, decoded as UTF-8, then None at its end."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while data := os.read(stream.fileno(), 65536):
        chunks.put(decoder.decode(data))
    chunks.put(decoder.decode(b"", final=True))
    chunks.put(None)


def stop_tree(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """Stop ``proc`` and every process under it: SIGTERM the descendants first (DVC then sees its
    stage end and releases its lock), then ``proc``; SIGKILL whatever is left after ``grace_s``."""
    if proc.poll() is not None:
        return
    try:
        parent = psutil.Process(proc.pid)
        descendants = parent.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for child in descendants:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            pass
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.terminate()
    _, alive = psutil.wait_procs([parent, *descendants], timeout=grace_s)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait()


def run_logged(
    cmd: list[str],
    env: dict[str, str],
    emit: Callable[[str], None],
    progress_every_s: float = PROGRESS_EVERY_S,
) -> int:
    """Run ``cmd``, pass its stdout and stderr to ``emit`` line by line (``StageOutput``), return
    its exit status. An exception while it runs (a timeout, a cancelled run) stops its process
    tree before it propagates."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=child_env(env, progress_every_s),
    )
    assert proc.stdout is not None
    chunks: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_read_chunks, args=(proc.stdout, chunks), daemon=True)
    reader.start()
    output = StageOutput(progress_every_s)
    try:
        while (chunk := _next_chunk(chunks)) is not None:
            for line in output.feed(chunk):
                emit(line)
        for line in output.close():
            emit(line)
        return proc.wait()
    finally:
        stop_tree(proc)
        reader.join(timeout=STOP_GRACE_S)
        proc.stdout.close()


def _next_chunk(chunks: queue.Queue) -> str | None:
    """The next chunk, waiting in short steps: a timeout raised into this thread lands between them."""
    while True:
        try:
            return chunks.get(timeout=POLL_S)
        except queue.Empty:
            continue
