"""Coded segments: the compressed counterpart of :class:`colmax.store.segments.Segment`.

A coded segment holds a batch of documents, tokens in document order, each token as

- ``codes``     ``(n_tokens,)`` uint16 (int32 past 65,536 centroids): its nearest centroid
- ``residuals`` ``(n_tokens, n_bytes)`` uint8: the residual code bytes and the length byte
  (see ``codec.py``)

plus ``offsets`` ``(n_docs + 1,)`` int64 and ``keys`` ``(n_docs,)`` int64 exactly as in an exact
segment, and ``meta`` (float64: format, the codec's fingerprint, and the residual statistics
drift is measured with). That is ``dim * nbits / 8`` bytes per token on disk at dim 384 (96 at
2 bits) and up, a few more below (:func:`colmax.indexes.plaid.codec.code_bytes`). The inverted lists (centroid -> documents) are derived from ``codes`` when the segment
is opened (:mod:`colmax.indexes.plaid.ivf`), so they cost memory, not disk.

The files are ``segments/<name>.<part>.npy``, written once and never modified, like exact
segments; names start with ``pseg-`` so a folder listing tells the two kinds apart.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from colmax.errors import IndexFormatError
from colmax.indexes.plaid.codec import ResidualCodec
from colmax.store.fsutil import atomic_write_npy, load_npy
from colmax.store.segments import SEGMENT_DIR, Segment

__all__ = ["CODED_PREFIX", "CodedSegment", "is_coded_name", "new_coded_name"]

CODED_PREFIX = "pseg-"
_PARTS = ("codes", "residuals", "offsets", "keys", "meta")
_FORMAT = 2  # 1: development versions, rows without the length byte
_CHUNK_TOKENS = 1 << 15  # tokens encoded per step while coding a segment


def new_coded_name(seq: int) -> str:
    """A fresh coded-segment name."""
    return f"{CODED_PREFIX}{seq:08d}-{secrets.token_hex(4)}"


def is_coded_name(name: str) -> bool:
    """Whether a segment name (as listed in the database) is a coded segment."""
    return name.startswith(CODED_PREFIX)


@dataclass
class CodedSegment:
    """One immutable coded segment (arrays may be memory-mapped).

    Attributes:
        name: file stem.
        codes, residuals, offsets, keys: see the module docstring.
        codec: the codec the tokens were coded with (not part of the files).
        residual_sq: sum over tokens of ``|x - c|^2`` when coded (drift measure).
        error_sq: sum over tokens of the squared quantisation error.
        written_to: the index folder whose ``segments/`` already holds this segment's files
            (a streamed build wrote them; :meth:`write` there is then a no-op).
    """

    name: str
    codes: np.ndarray
    residuals: np.ndarray
    offsets: np.ndarray
    keys: np.ndarray
    codec: ResidualCodec
    residual_sq: float = 0.0
    error_sq: float = 0.0
    written_to: Path | None = None

    # ------------------------------------------------------------------ facts
    @property
    def n_docs(self) -> int:
        return len(self.keys)

    @property
    def n_tokens(self) -> int:
        return int(self.codes.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (what the files hold, less the small headers)."""
        return int(
            self.codes.nbytes + self.residuals.nbytes + self.offsets.nbytes + self.keys.nbytes
        )

    def vectors(self, position: int) -> np.ndarray:
        """Decoded ``(n, dim)`` float32 token vectors of the document at ``position``."""
        a, b = int(self.offsets[position]), int(self.offsets[position + 1])
        codes = torch.from_numpy(np.asarray(self.codes[a:b], dtype=np.int64))
        packed = torch.from_numpy(np.ascontiguousarray(self.residuals[a:b]))
        return self.codec.decode(codes, packed).numpy()

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls, seq: int, keys: np.ndarray, vectors: list[np.ndarray], codec: ResidualCodec
    ) -> CodedSegment:
        """Code per-document ``(n_i, dim)`` arrays against ``codec`` (bounded memory)."""
        lengths = np.fromiter((len(v) for v in vectors), dtype=np.int64, count=len(vectors))
        if len(keys) != len(vectors):
            raise ValueError("keys and vectors differ in length")  # internal invariant
        chunks = _doc_chunks([np.asarray(v) for v in vectors])
        return cls._coded(
            new_coded_name(seq), np.asarray(keys, dtype=np.int64), lengths, chunks, codec
        )

    @classmethod
    def from_segment(
        cls, seq: int, segment: Segment, alive: np.ndarray, codec: ResidualCodec
    ) -> CodedSegment:
        """Code the live documents of an exact segment (read from its memory map in chunks)."""
        lengths = np.diff(segment.offsets)
        rows = np.flatnonzero(np.repeat(alive, lengths))
        chunks = (
            np.asarray(segment.tokens[rows[a : a + _CHUNK_TOKENS]])
            for a in range(0, rows.size, _CHUNK_TOKENS)
        )
        return cls._coded(new_coded_name(seq), segment.keys[alive], lengths[alive], chunks, codec)

    @classmethod
    def _coded(
        cls,
        name: str,
        keys: np.ndarray,
        lengths: np.ndarray,
        chunks: Iterator[np.ndarray],
        codec: ResidualCodec,
    ) -> CodedSegment:
        n_tokens = int(lengths.sum())
        codes = np.empty(n_tokens, dtype=codec.code_dtype)
        residuals = np.empty((n_tokens, codec.n_bytes), dtype=np.uint8)
        res_sq = err_sq = 0.0
        at = 0
        for chunk in chunks:
            c, packed, rs, es = codec.encode_measured(torch.from_numpy(chunk.astype(np.float32)))
            codes[at : at + len(chunk)] = c.numpy()
            residuals[at : at + len(chunk)] = packed.numpy()
            res_sq, err_sq, at = res_sq + rs, err_sq + es, at + len(chunk)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(name, codes, residuals, offsets, keys, codec, res_sq, err_sq)

    @classmethod
    def merge(cls, seq: int, segments: list[CodedSegment], alive: list[np.ndarray]) -> CodedSegment:
        """One new segment with the live documents of ``segments`` (same codec; no re-coding)."""
        codec = segments[0].codec
        if any(s.codec.fingerprint != codec.fingerprint for s in segments):
            raise ValueError("cannot merge segments coded with different codecs")  # internal
        codes, residuals, keys, lengths = [], [], [], []
        res_sq = err_sq = 0.0
        for seg, mask in zip(segments, alive):
            seg_lengths = np.diff(seg.offsets)
            rows = np.repeat(mask, seg_lengths)
            codes.append(np.asarray(seg.codes)[rows])
            residuals.append(np.asarray(seg.residuals)[rows])
            keys.append(seg.keys[mask])
            lengths.append(seg_lengths[mask])
            share = float(seg_lengths[mask].sum()) / max(1, seg.n_tokens)  # drift sums, pro rata
            res_sq += seg.residual_sq * share
            err_sq += seg.error_sq * share
        all_lengths = np.concatenate(lengths)
        offsets = np.zeros(len(all_lengths) + 1, dtype=np.int64)
        np.cumsum(all_lengths, out=offsets[1:])
        return cls(
            new_coded_name(seq),
            np.concatenate(codes),
            np.concatenate(residuals),
            offsets,
            np.concatenate(keys),
            codec,
            res_sq,
            err_sq,
        )

    # ------------------------------------------------------------------ files
    def _meta(self) -> np.ndarray:
        c = self.codec
        return np.array(
            [
                _FORMAT,
                c.fingerprint,
                c.n_centroids,
                c.nbits,
                c.dim,
                self.residual_sq,
                self.error_sq,
            ],
            dtype=np.float64,
        )

    def write(self, folder: Path) -> None:
        """Write the five files (each atomically) under ``folder/segments/``."""
        if self.written_to is not None and self.written_to == folder:
            return
        seg_dir = folder / SEGMENT_DIR
        seg_dir.mkdir(exist_ok=True)
        arrays = {
            "codes": self.codes,
            "residuals": self.residuals,
            "offsets": self.offsets,
            "keys": self.keys,
            "meta": self._meta(),
        }
        for part in _PARTS:
            atomic_write_npy(seg_dir / f"{self.name}.{part}.npy", arrays[part])

    @staticmethod
    def file_names(name: str) -> list[str]:
        return [f"{name}.{part}.npy" for part in _PARTS]

    @staticmethod
    def remove_files(folder: Path, name: str) -> None:
        for file in CodedSegment.file_names(name):
            (folder / SEGMENT_DIR / file).unlink(missing_ok=True)

    @classmethod
    def read(
        cls, folder: Path, name: str, n_docs: int, n_tokens: int, codec: ResidualCodec
    ) -> CodedSegment:
        """Open a coded segment memory-mapped and check it against the database's counts and
        the codec it must have been coded with.

        Raises:
            IndexFormatError: a file is missing, truncated, inconsistent, or coded with another
                codec.
        """
        base = folder / SEGMENT_DIR
        arrays = {
            part: load_npy(base / f"{name}.{part}.npy", "segment", mmap=True) for part in _PARTS
        }
        meta = np.asarray(arrays["meta"])
        where = base / name
        if meta.dtype != np.float64 or meta.shape != (7,) or not np.isfinite(meta).all():
            raise IndexFormatError(f"{where}.meta.npy: damaged segment metadata.")
        if int(meta[0]) != _FORMAT:
            raise IndexFormatError(
                f"{where}.meta.npy: coded segment format {int(meta[0])} is unknown."
            )
        if int(meta[1]) != codec.fingerprint:
            raise IndexFormatError(
                f"{where}.*.npy: coded with another codec than {codec.name!r}; the folder mixes "
                "files of different builds."
            )
        seg = cls(
            name,
            arrays["codes"],
            arrays["residuals"],
            arrays["offsets"],
            arrays["keys"],
            codec,
            float(meta[5]),
            float(meta[6]),
            folder,
        )
        seg._validate(where, n_docs, n_tokens)
        return seg

    def _validate(self, where: Path, n_docs: int, n_tokens: int) -> None:
        c, r, o, k = self.codes, self.residuals, self.offsets, self.keys
        codec = self.codec
        problems = []
        if c.dtype != codec.code_dtype or c.shape != (n_tokens,):
            problems.append(f"codes {c.dtype}{c.shape} != {codec.code_dtype}({n_tokens},)")
        elif n_tokens and int(np.max(c)) >= codec.n_centroids:
            problems.append(
                f"codes reach {int(np.max(c))} but there are {codec.n_centroids} centroids"
            )
        if r.dtype != np.uint8 or r.shape != (n_tokens, codec.n_bytes):
            problems.append(f"residuals {r.dtype}{r.shape} != uint8({n_tokens}, {codec.n_bytes})")
        if o.dtype != np.int64 or o.shape != (n_docs + 1,):
            problems.append(f"offsets {o.dtype}{o.shape} != int64({n_docs + 1},)")
        elif o[0] != 0 or o[-1] != n_tokens or (n_docs and np.any(np.diff(o) <= 0)):
            problems.append("offsets are not strictly increasing from 0 to n_tokens")
        if k.dtype != np.int64 or k.shape != (n_docs,):
            problems.append(f"keys {k.dtype}{k.shape} != int64({n_docs},)")
        if problems:
            raise IndexFormatError(f"{where}.*.npy: damaged coded segment: {'; '.join(problems)}.")


def _doc_chunks(vectors: list[np.ndarray]) -> Iterator[np.ndarray]:
    """Consecutive documents' rows, about ``_CHUNK_TOKENS`` at a time (whole documents)."""
    start = rows = 0
    for i, v in enumerate(vectors):
        rows += len(v)
        if rows >= _CHUNK_TOKENS:
            yield np.concatenate(vectors[start : i + 1])
            start, rows = i + 1, 0
    if start < len(vectors):
        yield np.concatenate(vectors[start:])
