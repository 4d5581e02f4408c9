"""I/O failures of a write to an index folder, as :class:`~colmax.errors.StorageError`.

A full disk shows up as ``OSError`` (``ENOSPC``; ``EDQUOT`` for a quota; ``EFBIG`` past a
file-size limit) from file writes, and as ``sqlite3.OperationalError`` ("database or disk is
full", or "disk I/O error" when SQLite's own write hit ``EFBIG``) from the database. Callers of
colmax see one :class:`~colmax.errors.DiskFullError` or :class:`~colmax.errors.StorageError`
(both ``ColmaxError`` and ``OSError``), which the server turns into 507 / 503.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from colmax.errors import ColmaxError, DiskFullError, StorageError

__all__ = ["storage_errors", "wrap_io_error"]

#: errno values that mean "no room for this write".
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_SQLITE_FULL = 13
_SQLITE_IOERR = 10


def wrap_io_error(exc: BaseException, what: str, folder: Path | None = None) -> BaseException:
    """``exc`` as a :class:`StorageError` (:class:`DiskFullError` when space ran out), or
    ``exc`` itself when it is not an I/O failure (a ColmaxError, a bug).

    ``folder`` (the index folder) becomes the error's ``filename`` when the failure names
    no file itself.
    """
    if isinstance(exc, ColmaxError):
        return exc
    if isinstance(exc, OSError):
        full = exc.errno in FULL_ERRNOS
        reason = exc.strerror or str(exc)
        cls = DiskFullError if full else StorageError
        hint = "free space and retry" if full else "check the disk"
        message = f"{what} failed, nothing was changed ({reason}); {hint}"
        return cls(exc.errno, message, exc.filename or _name(folder))
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        text = str(exc)
        full = primary == _SQLITE_FULL or "disk is full" in text
        if full or primary == _SQLITE_IOERR or "disk I/O error" in text:
            cls = DiskFullError if full else StorageError
            message = f"{what} failed, nothing was changed (the database: {text})"
            return cls(errno.ENOSPC if full else errno.EIO, message, _name(folder))
    return exc


def _name(folder: Path | None) -> str | None:
    return str(folder) if folder is not None else None


@contextmanager
def storage_errors(what: str, folder: Path | None = None) -> Iterator[None]:
    """Re-raise I/O failures inside the block as :func:`wrap_io_error` describes them.

    Args:
        what: the operation, for the message (``"adding documents"``).
        folder: the index folder, named by the error when the failure names no file.
    """
    try:
        yield
    except (OSError, sqlite3.OperationalError) as exc:
        wrapped = wrap_io_error(exc, what, folder)
        if wrapped is exc:
            raise
        raise wrapped from exc
