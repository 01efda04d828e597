"""Logging for stages: to the rule's log file and to stderr, one format everywhere.

The convention: every module logs through ``LOG = logging.getLogger(__name__)`` (so records are named
``pipeline.clean``, ``model.train``, ...), and a stage's entry point wraps its work in ``stage_logging(log)``,
which routes the ``pipeline`` and ``model`` loggers to the rule's log file while inside.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ROOTS = ("pipeline", "model")  # the packages whose records a stage log collects


@contextlib.contextmanager
def stage_logging(log_path: str | Path | None = None, level: int = logging.INFO) -> Iterator[logging.Logger]:
    """Send pipeline.* and model.* records to ``log_path`` (a rule's ``log:``) and stderr while inside."""
    loggers = [logging.getLogger(name) for name in ROOTS]
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w", encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT))
    for logger in loggers:
        logger.setLevel(level)
        for handler in handlers:
            logger.addHandler(handler)
    try:
        yield loggers[0]
    finally:
        for logger in loggers:
            for handler in handlers:
                logger.removeHandler(handler)
        for handler in handlers:
            handler.close()
