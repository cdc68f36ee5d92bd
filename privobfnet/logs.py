"""Logging, set up once per process: every stage's entry and the ``privobfnet`` command call
``configure_logging``; everything else only asks ``logging.getLogger(__name__)``.

The project's own loggers (``privobfnet``, ``ops``, ``stages``, ``pipelines``, ``tools``) log at
the chosen level; the libraries underneath (MLflow, DVC, urllib3, ...) stay at WARNING unless
``verbosity`` is 2 or more, so INFO means the project's own lines.
"""

from __future__ import annotations

import logging
import os
import sys

# read by the stages (which take no arguments) and by the command when neither -v nor -q is given
LEVEL_ENV = "PRIVOBFNET_LOG_LEVEL"
OWN_LOGGERS = ("privobfnet", "ops", "stages", "pipelines", "tools")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%H:%M:%S"
LEVELS = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}


def level_for(verbosity: int | None) -> int:
    """-1 (quiet): WARNING, 0: INFO, 1 or more: DEBUG; None: ``$PRIVOBFNET_LOG_LEVEL`` or INFO."""
    if verbosity is not None:
        return LEVELS[max(-1, min(1, verbosity))]
    name = os.environ.get(LEVEL_ENV, "").strip().upper()
    if not name:
        return logging.INFO
    level = logging.getLevelName(name)
    if not isinstance(level, int):
        raise ValueError(
            f"${LEVEL_ENV}={name!r}: not a logging level (DEBUG, INFO, WARNING, ERROR)"
        )
    return level


class _OurHandler(logging.StreamHandler):
    """The one handler ``configure_logging`` installs (found again and replaced on a second call).

    It writes to whatever ``sys.stderr`` is when a record comes (as logging's own last-resort
    handler does), so a replaced stderr (pytest's capture, a redirect) is followed.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(verbosity: int | None = None) -> int:
    """One stderr handler on the root logger and the levels above; returns the project's level.

    Safe to call twice (the handler is replaced, not added again); handlers others installed
    (pytest's, MLflow's own) are left alone.
    """
    level = level_for(verbosity)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(handler)
    handler = _OurHandler()
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if (verbosity or 0) >= 2 else max(level, logging.WARNING))
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level)
    return level
