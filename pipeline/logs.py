"""Logging for stages: to the rule's log file and to stderr, one format everywhere."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def stage_logging(log_path: str | Path | None = None, level: int = logging.INFO) -> Iterator[logging.Logger]:
    """Send pipeline.* log records to ``log_path`` (a rule's ``log:``) and stderr while inside."""
    logger = logging.getLogger("pipeline")
    logger.setLevel(level)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w", encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT))
        logger.addHandler(handler)
    try:
        yield logger
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
