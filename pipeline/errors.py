"""The one base class of every error Polyforge raises for bad input or a stage that cannot go on.

Each stage has its own subclass (CleanError, ShardsError, ...) that also derives from the builtin it
stands for (ValueError, RuntimeError), and its message names the file, line or config key at fault.
Catch ``PolyforgeError`` to tell a user's mistake from a bug.
"""

from __future__ import annotations


class PolyforgeError(Exception):
    """A failure Polyforge explains: bad config, bad input file, a source that cannot be fetched."""
