"""Immutable segments of packed token vectors.

A segment holds the token vectors of a batch of documents packed in one matrix, stored float16:

- ``tokens``  ``(n_tokens, dim)`` float16, document ``i`` is ``tokens[offsets[i]:offsets[i+1]]``
- ``offsets`` ``(n_docs + 1,)`` int64, starts at 0, strictly increasing (every document has a token)
- ``keys``    ``(n_docs,)`` int64, the documents' internal keys (rows of ``documents.sqlite``)

On disk a segment is three ``.npy`` files under ``segments/``. Segment files are written once and
never modified; a commit only changes which segments the database lists. Deleted documents stay
in their segment until a merge rewrites it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from colmax.errors import IndexFormatError
from colmax.store.fsutil import atomic_write_npy, load_npy

__all__ = ["SEGMENT_DIR", "Segment", "merge", "new_segment_name", "pack"]

SEGMENT_DIR = "segments"
_PARTS = ("tokens", "offsets", "keys")


def new_segment_name(seq: int) -> str:
    """A fresh segment name; the random tail keeps names unique across crashed writers."""
    return f"seg-{seq:08d}-{secrets.token_hex(4)}"


def pack(keys: np.ndarray, vectors: list[np.ndarray], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Pack per-document ``(n_i, dim)`` arrays into ``(tokens float16, offsets int64)``."""
    lengths = np.fromiter((len(v) for v in vectors), dtype=np.int64, count=len(vectors))
    offsets = np.zeros(len(vectors) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.empty((int(offsets[-1]), dim), dtype=np.float16)
    for start, stop, vec in zip(offsets[:-1], offsets[1:], vectors):
        tokens[start:stop] = vec
    if len(keys) != len(vectors):
        raise ValueError("keys and vectors differ in length")  # internal invariant
    return tokens, offsets


@dataclass
class Segment:
    """One immutable packed segment (arrays may be memory-mapped)."""

    name: str
    tokens: np.ndarray
    offsets: np.ndarray
    keys: np.ndarray

    @property
    def n_docs(self) -> int:
        """Documents in the segment, dead ones included."""
        return len(self.keys)

    @property
    def n_tokens(self) -> int:
        """Token vectors in the segment."""
        return int(self.tokens.shape[0])

    @classmethod
    def build(cls, seq: int, keys: np.ndarray, vectors: list[np.ndarray], dim: int) -> Segment:
        """A new in-memory segment named after ``seq``, holding ``vectors`` under ``keys``.

        Examples:
            >>> import numpy as np
            >>> seg = Segment.build(1, np.array([7, 9]), [np.ones((2, 4)), np.ones((3, 4))], 4)
            >>> seg.n_docs, seg.n_tokens, seg.offsets.tolist(), seg.tokens.dtype
            (2, 5, [0, 2, 5], dtype('float16'))
        """
        tokens, offsets = pack(keys, vectors, dim)
        return cls(new_segment_name(seq), tokens, offsets, np.asarray(keys, dtype=np.int64))

    def vectors(self, position: int) -> np.ndarray:
        """Token vectors of the document at ``position`` in this segment."""
        return self.tokens[self.offsets[position] : self.offsets[position + 1]]

    def write(self, folder: Path) -> None:
        """Write the three files (each atomically) under ``folder/segments/``."""
        seg_dir = folder / SEGMENT_DIR
        seg_dir.mkdir(exist_ok=True)
        for part in _PARTS:
            atomic_write_npy(seg_dir / f"{self.name}.{part}.npy", getattr(self, part))

    @staticmethod
    def remove_files(folder: Path, name: str) -> None:
        """Delete the files of segment ``name`` under ``folder/segments/`` (missing ones too)."""
        for part in _PARTS:
            (folder / SEGMENT_DIR / f"{name}.{part}.npy").unlink(missing_ok=True)

    @staticmethod
    def file_names(name: str) -> list[str]:
        """The file names segment ``name`` has under ``segments/``.

        Examples:
            >>> Segment.file_names("seg-00000001-3fa2c1d0")[0]
            'seg-00000001-3fa2c1d0.tokens.npy'
        """
        return [f"{name}.{part}.npy" for part in _PARTS]

    @classmethod
    def read(cls, folder: Path, name: str, dim: int, n_docs: int, n_tokens: int) -> Segment:
        """Open a segment memory-mapped and check it against the counts the database recorded.

        Raises:
            IndexFormatError: a file is missing, truncated, or inconsistent.
        """
        arrays = {
            part: load_npy(folder / SEGMENT_DIR / f"{name}.{part}.npy", "segment", mmap=True)
            for part in _PARTS
        }
        seg = cls(name, arrays["tokens"], arrays["offsets"], arrays["keys"])
        seg._validate(folder / SEGMENT_DIR / name, dim, n_docs, n_tokens)
        return seg

    def _validate(self, where: Path, dim: int, n_docs: int, n_tokens: int) -> None:
        t, o, k = self.tokens, self.offsets, self.keys
        problems = []
        if t.dtype != np.float16 or t.ndim != 2 or t.shape != (n_tokens, dim):
            problems.append(f"tokens {t.dtype}{t.shape} != float16({n_tokens}, {dim})")
        if o.dtype != np.int64 or o.shape != (n_docs + 1,):
            problems.append(f"offsets {o.dtype}{o.shape} != int64({n_docs + 1},)")
        elif o[0] != 0 or o[-1] != n_tokens or (n_docs and np.any(np.diff(o) <= 0)):
            problems.append("offsets are not strictly increasing from 0 to n_tokens")
        if k.dtype != np.int64 or k.shape != (n_docs,):
            problems.append(f"keys {k.dtype}{k.shape} != int64({n_docs},)")
        if problems:
            raise IndexFormatError(f"{where}.*.npy: damaged segment: {'; '.join(problems)}.")


def merge(seq: int, segments: list[Segment], alive: list[np.ndarray]) -> Segment:
    """One new segment holding the live documents of ``segments`` (dead vectors dropped)."""
    keys, tokens, lengths = [], [], []
    for seg, mask in zip(segments, alive):
        seg_lengths = np.diff(seg.offsets)
        keys.append(seg.keys[mask])
        lengths.append(seg_lengths[mask])
        tokens.append(np.asarray(seg.tokens)[np.repeat(mask, seg_lengths)])
    all_lengths = np.concatenate(lengths)
    offsets = np.zeros(len(all_lengths) + 1, dtype=np.int64)
    np.cumsum(all_lengths, out=offsets[1:])
    return Segment(new_segment_name(seq), np.concatenate(tokens), offsets, np.concatenate(keys))
