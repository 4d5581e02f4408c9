"""What a network client is told about an error (plain Python: the HTTP and MCP doors share it).

Server-side conditions (a full disk, a damaged folder, a model that will not load) get a fixed
public message and a status; their details, paths included, go to the log only. Any other
:class:`~colmax.errors.ColmaxError` is the client's own mistake and keeps its message, with the
index's and the model's folder names replaced by ``<server path>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from colmax.errors import (
    ColmaxError,
    DeadlineExceededError,
    DiskFullError,
    EncoderMismatchError,
    IndexFormatError,
    IndexLockedError,
    ModelLoadError,
    StorageError,
)

if TYPE_CHECKING:
    from colmax.engine import Engine

__all__ = ["SERVER_FAULTS", "PathScrubber", "server_fault"]

#: Server-side conditions: status and the message a client gets (the details, paths included,
#: go to the log only; ``""``: the error's own message, scrubbed). Checked in order: the first
#: class that matches wins.
SERVER_FAULTS: tuple[tuple[type[ColmaxError], int, str], ...] = (
    (DeadlineExceededError, 503, ""),  # its own message: the deadline, or the disconnect
    (
        DiskFullError,
        507,
        "the index's disk is full: nothing was written; retry once space is freed",
    ),
    (IndexLockedError, 503, "another process is writing to the index; retry shortly"),
    (StorageError, 503, "the index could not be written (I/O error): nothing was changed"),
    (IndexFormatError, 500, "the index folder is damaged or unreadable; see the server log"),
    (EncoderMismatchError, 500, "the index and its model do not match; see the server log"),
    (ModelLoadError, 500, "the model could not be loaded; see the server log"),
)


def server_fault(exc: ColmaxError) -> tuple[int, str] | None:
    """``(status, public message)`` for a server-side condition, else ``None`` (an empty
    message: send the error's own, scrubbed).

    Examples:
        >>> server_fault(IndexLockedError("x"))[0]
        503
        >>> server_fault(ColmaxError("bad filter")) is None
        True
    """
    for cls, status, public in SERVER_FAULTS:
        if isinstance(exc, cls):
            return status, public
    return None


class PathScrubber:
    """Replaces the folder names a client must not learn (the index's and the model's).

    Args:
        engine: the engine served.
    """

    def __init__(self, engine: Engine) -> None:
        found: set[str] = set()
        for value in (engine.path, getattr(engine.encoder, "name", None)):
            if value is None or not Path(str(value)).is_absolute():
                continue
            path = Path(str(value))
            found |= {str(path), str(path.resolve()), str(path.parent), str(path.resolve().parent)}
        self.paths = sorted((p for p in found if p not in ("/", "")), key=len, reverse=True)

    def __call__(self, message: str) -> str:
        """``message`` with every private folder name replaced by ``<server path>``."""
        for path in self.paths:
            message = message.replace(path, "<server path>")
        return message
