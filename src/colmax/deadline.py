"""Stopping a call's work early: a deadline and a cancel flag for the current call, checked by
colmax's long-running loops (SQLite filter queries, encoding batches, scoring).

A door sets one around the work it runs for a client (the HTTP server: the request timeout,
and the client disconnecting); the engine's loops call :func:`check`. The deadline lives in a
context variable, so it follows the call into worker threads started with the context copied
(``anyio.to_thread.run_sync`` does) and never leaks into other calls.

Examples:
    >>> with deadline(60.0):
    ...     check()  # well within the minute: nothing happens
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from colmax.errors import DeadlineExceededError

__all__ = ["Deadline", "check", "current", "deadline"]


@dataclass
class Deadline:
    """When the current call must stop, and a flag that stops it at once.

    Attributes:
        expires: ``time.monotonic()`` value after which work stops.
        seconds: the time it was given (for messages).
        cancelled: set by another thread (the client went away) to stop the work now.
    """

    expires: float
    seconds: float
    cancelled: threading.Event = field(default_factory=threading.Event)

    def exceeded(self) -> bool:
        """Whether the work should stop now."""
        return self.cancelled.is_set() or time.monotonic() > self.expires

    def error(self) -> DeadlineExceededError:
        """The error to raise once :meth:`exceeded`."""
        if self.cancelled.is_set():
            return DeadlineExceededError("the call was cancelled (the client went away)")
        return DeadlineExceededError(
            f"the call took longer than its {self.seconds:g} s deadline and was stopped"
        )


_CURRENT: ContextVar[Deadline | None] = ContextVar("colmax_deadline", default=None)


@contextmanager
def deadline(seconds: float, cancelled: threading.Event | None = None) -> Iterator[Deadline]:
    """Give the work inside the block ``seconds`` (and stop it when ``cancelled`` is set).

    An enclosing deadline that expires sooner still applies.
    """
    outer = _CURRENT.get()
    mine = Deadline(time.monotonic() + seconds, seconds, cancelled or threading.Event())
    if outer is not None and outer.expires < mine.expires:
        mine.expires, mine.seconds = outer.expires, outer.seconds
    if outer is not None and outer.cancelled.is_set():
        mine.cancelled.set()
    token = _CURRENT.set(mine)
    try:
        yield mine
    finally:
        _CURRENT.reset(token)


def current() -> Deadline | None:
    """The deadline of the current call, or ``None`` (no limit)."""
    return _CURRENT.get()


def check() -> None:
    """Raise :class:`~colmax.errors.DeadlineExceededError` when the current call's deadline
    has passed or it was cancelled; otherwise return at once (also with no deadline)."""
    now = _CURRENT.get()
    if now is not None and now.exceeded():
        raise now.error()
