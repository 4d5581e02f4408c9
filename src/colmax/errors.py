"""Errors raised by colmax.

Every error colmax raises on bad input is a :class:`ColmaxError`. Most subclasses also derive
from the matching built-in (``ValueError``, ``KeyError``, ``FileNotFoundError``) so callers that
already catch those keep working. Messages say what was wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "ColmaxError",
    "DeadlineExceededError",
    "DimensionMismatchError",
    "DiskFullError",
    "DuplicateIdError",
    "EmptyTextError",
    "EncoderMismatchError",
    "EngineClosedError",
    "FilterError",
    "FilterTimeoutError",
    "IndexFormatError",
    "IndexLockedError",
    "InvalidEmbeddingError",
    "InvalidInputError",
    "ModelLoadError",
    "NoEncoderError",
    "StorageError",
    "UnknownIdError",
]


class ColmaxError(Exception):
    """Base class of every error colmax raises on purpose."""


class InvalidInputError(ColmaxError, ValueError):
    """An argument has the wrong type, length or value (for example ``k <= 0``)."""


class EmptyTextError(InvalidInputError):
    """A text to encode is empty or whitespace only."""


class DuplicateIdError(InvalidInputError):
    """The same id appears more than once in one call."""


class UnknownIdError(ColmaxError, KeyError):
    """One or more ids are not in the index."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class InvalidEmbeddingError(InvalidInputError):
    """A precomputed embedding is malformed: wrong rank, empty, NaN or infinite values."""


class DimensionMismatchError(InvalidEmbeddingError):
    """Vectors do not have the dimension the index was built with."""


class FilterError(InvalidInputError):
    """A metadata filter is malformed or uses an unknown operator."""


class FilterTimeoutError(FilterError):
    """A metadata filter ran longer than :data:`colmax.limits.FILTER_TIMEOUT_S` and was stopped
    (too many conditions for the size of the corpus): simplify it."""


class DeadlineExceededError(ColmaxError, TimeoutError):
    """A call ran past the deadline its caller set (the server's request timeout), or was
    cancelled because the client went away; its work was stopped and nothing was changed."""


class IndexFormatError(ColmaxError, ValueError):
    """A folder is not a colmax index, is damaged, or has an unsupported format version."""


class EncoderMismatchError(ColmaxError, ValueError):
    """The index was built with another model or embedding dimension than the one given."""


class IndexLockedError(ColmaxError, TimeoutError):
    """Another writer holds the index folder's lock and did not release it in time."""


class StorageError(ColmaxError, OSError):
    """Writing to an index folder failed (an I/O error of the disk or file system).

    Raised before the write's commit point: the index is exactly as it was, and the files the
    write had started are already removed. ``errno`` and ``filename`` are those of the
    underlying error when there was one.
    """


class DiskFullError(StorageError):
    """No space left for a write: the disk is full, a quota or a file-size limit was reached
    (``ENOSPC``, ``EDQUOT``, ``EFBIG``, or SQLite's "database or disk is full"). Nothing was
    changed; free space and retry."""


class ModelLoadError(ColmaxError, OSError):
    """A model folder or Hub id could not be loaded as a token encoder."""


class EngineClosedError(ColmaxError, RuntimeError):
    """The engine (or its index) was closed: open the index again to use it."""


class NoEncoderError(ColmaxError, RuntimeError):
    """Text was given to an engine that has no encoder (it was built for precomputed vectors)."""
