"""An inter-process writer lock on an index folder (``fcntl.flock`` on ``write.lock``).

Two writers, in one process or several, are serialised; the second waits up to ``timeout``
seconds and then gets :class:`~colmax.errors.IndexLockedError`. The kernel drops the lock when
the holder dies, so a killed writer never leaves a stale lock behind.
"""

from __future__ import annotations

import errno
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from colmax.errors import IndexFormatError, IndexLockedError, InvalidInputError

try:  # POSIX only; on other systems the in-process lock still serialises threads.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "FolderLock"]

LOCK_NAME = "write.lock"


class FolderLock:
    """Re-entrant within a thread; exclusive across threads and processes."""

    def __init__(self, folder: Path, timeout: float = 60.0) -> None:
        self.path = folder / LOCK_NAME
        self.timeout = _check_timeout(timeout)
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextmanager
    def hold(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the lock, waiting up to ``timeout`` seconds (default: the lock's own)."""
        timeout = self.timeout if timeout is None else _check_timeout(timeout)
        deadline = time.monotonic() + timeout
        # threading refuses an infinite timeout: -1 is its "wait forever".
        wait = -1 if math.isinf(timeout) else max(timeout, 0.001)
        if not self._thread_lock.acquire(timeout=wait):
            raise IndexLockedError(f"{self.path}: another thread holds the write lock")
        try:
            if self._depth == 0:
                self._acquire_file(deadline, timeout)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._release_file()
        finally:
            self._thread_lock.release()

    def _acquire_file(self, deadline: float, timeout: float) -> None:
        if fcntl is None:
            return
        try:  # never follow a link: it would create or lock a file outside the index
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise IndexFormatError(f"{self.path}: is a symbolic link; refusing it") from None
            raise
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise IndexLockedError(
                        f"{self.path}: another process is writing to this index and did not "
                        f"finish within {timeout:g}s; retry later or raise lock_timeout"
                    ) from None
                time.sleep(0.05)

    def _release_file(self) -> None:
        if self._fd is not None and fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
        self._fd = None


def _check_timeout(timeout: object) -> float:
    """A wait in seconds: a number >= 0 (``inf`` waits forever)."""
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or math.isnan(timeout)
        or timeout < 0
    ):
        raise InvalidInputError(f"lock_timeout must be a number of seconds >= 0, got {timeout!r}")
    return float(timeout)
