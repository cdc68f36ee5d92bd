"""Logging set up once: the levels of -q / default / -v, the environment's level, one handler."""

from __future__ import annotations

import logging

import pytest

from privobfnet.logs import LEVEL_ENV, configure_logging


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    own = {name: logging.getLogger(name).level for name in ("privobfnet", "ops")}
    yield
    root.handlers[:], root.level = handlers, level
    for name, value in own.items():
        logging.getLogger(name).setLevel(value)


def lines(capsys) -> list[str]:
    for name, level in (("ops.fetch", logging.INFO), ("ops.fetch", logging.DEBUG)):
        logging.getLogger(name).log(level, "fetched %s", logging.getLevelName(level))
    logging.getLogger("ops.fetch").warning("checksum missing")
    logging.getLogger("urllib3.connectionpool").info("a library's info line")
    return capsys.readouterr().err.splitlines()


@pytest.mark.parametrize(
    "verbosity, shown",
    [
        (-1, ["checksum missing"]),
        (None, ["fetched INFO", "checksum missing"]),
        (1, ["fetched INFO", "fetched DEBUG", "checksum missing"]),
        (2, ["fetched INFO", "fetched DEBUG", "checksum missing", "a library's info line"]),
    ],
)
def test_verbosity_sets_what_ops_fetch_and_the_libraries_show(
    verbosity, shown, capsys, monkeypatch
):
    monkeypatch.delenv(LEVEL_ENV, raising=False)
    configure_logging(verbosity)
    got = lines(capsys)
    assert [line.split(": ", 1)[1] for line in got] == shown
    assert all(" ops.fetch: " in line or " urllib3" in line for line in got)


def test_the_environment_sets_the_level_when_no_flag_does(capsys, monkeypatch):
    monkeypatch.setenv(LEVEL_ENV, "warning")
    configure_logging()
    assert [line.split(": ", 1)[1] for line in lines(capsys)] == ["checksum missing"]
    configure_logging(0)  # a flag wins over the environment
    assert len(lines(capsys)) == 2
    monkeypatch.setenv(LEVEL_ENV, "LOUD")
    with pytest.raises(ValueError, match="PRIVOBFNET_LOG_LEVEL='LOUD'"):
        configure_logging()


def test_a_second_call_replaces_the_handler(capsys, monkeypatch):
    monkeypatch.delenv(LEVEL_ENV, raising=False)
    configure_logging()
    configure_logging()
    ours = [h for h in logging.getLogger().handlers if type(h).__module__ == "privobfnet.logs"]
    assert len(ours) == 1
    assert len(lines(capsys)) == 2  # each line once
