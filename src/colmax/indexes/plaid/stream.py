"""Token sources read in chunks: the inputs of a bounded-memory build.

A build of tens of millions of token vectors cannot hold them all as floats (25 M tokens at dim
384 are 38 GB of float32). A :class:`TokenSource` hands them out a run of whole documents at a
time, so the build keeps one chunk of floats plus the codes it has written:

- :class:`ArraySource`: documents packed in one ``(n_tokens, dim)`` array (a memory map too)
  and their offsets;
- :class:`NpyFileSource`: the same, read from a ``.npy`` file with plain reads rather than a
  memory map, so the pages read do not count towards the process's resident memory;
- :class:`ListSource`: a list of per-document arrays.

Examples:
    >>> import numpy as np
    >>> src = ListSource([np.ones((2, 4)), np.ones((3, 4))])
    >>> src.n_docs, src.n_tokens, src.dim, src.read(1, 2).shape
    (2, 5, 4, (3, 4))
    >>> [(a, b) for a, b in chunks(src.lengths, 4)]
    [(0, 1), (1, 2)]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from colmax.store.fsutil import np_load

__all__ = ["ArraySource", "ListSource", "NpyFileSource", "TokenSource", "chunks"]

#: Tokens per chunk a build reads and codes at a time.
CHUNK_TOKENS = 1 << 15


@runtime_checkable
class TokenSource(Protocol):
    """Documents' token vectors, read a run of whole documents at a time."""

    @property
    def lengths(self) -> np.ndarray:
        """``(n_docs,)`` int64 tokens per document."""
        ...

    @property
    def dim(self) -> int: ...

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows of documents ``start .. stop - 1``, concatenated: ``(tokens, dim)``."""
        ...


def _offsets(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


class _Packed:
    """Shared by the packed sources: ``lengths``, ``n_docs``, ``n_tokens`` from offsets."""

    def __init__(self, offsets: np.ndarray, dim: int) -> None:
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self._dim = dim

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def n_docs(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])


class ArraySource(_Packed):
    """Documents packed in ``tokens (n_tokens, dim)`` (array or memory map) with ``offsets``."""

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray) -> None:
        super().__init__(offsets, int(tokens.shape[1]))
        self.tokens = tokens

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.array(self.tokens[self.offsets[start] : self.offsets[stop]])


class NpyFileSource(_Packed):
    """Documents packed in a 2-D ``.npy`` file, read with ``pread`` (no memory map).

    Args:
        path: the ``(n_tokens, dim)`` float ``.npy`` file (C order).
        offsets: ``(n_docs + 1,)`` document starts, ``offsets[-1] == n_tokens``.
    """

    def __init__(self, path: Path, offsets: np.ndarray) -> None:
        # The memory map is only asked for its header: shape, dtype and where the data starts.
        header = np_load(path, mmap_mode="r")
        shape, dtype = header.shape, header.dtype
        self._header = int(header.offset)
        if len(shape) != 2 or not header.flags.c_contiguous:
            raise ValueError(f"{path}: expected a C-order 2-D array, got shape {shape}")
        del header
        super().__init__(offsets, int(shape[1]))
        if self.n_tokens != shape[0]:
            raise ValueError(f"{path}: {shape[0]} rows but the offsets end at {self.n_tokens}")
        self.path = Path(path)
        self.dtype = np.dtype(dtype)

    def read(self, start: int, stop: int) -> np.ndarray:
        a, b = int(self.offsets[start]), int(self.offsets[stop])
        row = self.dim * self.dtype.itemsize
        out = np.empty((b - a, self.dim), dtype=self.dtype)
        with open(self.path, "rb", buffering=0) as handle:
            handle.seek(self._header + a * row)
            got = handle.readinto(out.data.cast("B"))
        if got != out.nbytes:
            raise OSError(f"{self.path}: short read ({got} of {out.nbytes} bytes): truncated?")
        return out


class ListSource:
    """Per-document ``(n_i, dim)`` arrays."""

    def __init__(self, vectors: Sequence[np.ndarray]) -> None:
        if not vectors:
            raise ValueError("no documents")  # internal: callers check for empty input
        self.vectors = vectors
        self._lengths = np.fromiter((len(v) for v in vectors), np.int64, len(vectors))

    @property
    def lengths(self) -> np.ndarray:
        return self._lengths

    @property
    def dim(self) -> int:
        return int(np.asarray(self.vectors[0]).shape[1])

    @property
    def n_docs(self) -> int:
        return len(self.vectors)

    @property
    def n_tokens(self) -> int:
        return int(self._lengths.sum())

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.concatenate([np.asarray(v) for v in self.vectors[start:stop]])


def chunks(lengths: np.ndarray, target: int | None = None) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` runs of whole documents of about ``target`` tokens each (default
    :data:`CHUNK_TOKENS`; a longer document is a run of its own)."""
    target = target or CHUNK_TOKENS
    offsets = _offsets(np.asarray(lengths, dtype=np.int64))
    n = len(offsets) - 1
    start = 0
    while start < n:
        stop = int(np.searchsorted(offsets, offsets[start] + target, side="right")) - 1
        stop = min(n, max(stop, start + 1))
        yield start, stop
        start = stop
