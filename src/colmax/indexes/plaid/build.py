"""Bounded-memory builds: sample, train, then code documents a chunk at a time.

Memory holds the training sample (``n_centroids * sample_per_centroid`` float32 vectors), one
chunk of input floats and nothing of the output: a :class:`CodedWriter` appends each chunk's
codes to the segment files as it goes (in an index folder; an in-memory index keeps arrays).
Long builds report progress (tokens coded, with a rate and an ETA) through a callback; a
KeyboardInterrupt or any error removes the partial files, so the index keeps its last
committed state (nothing is committed until the segment is complete).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from colmax.errors import DimensionMismatchError, InvalidEmbeddingError
from colmax.indexes.plaid.codec import ResidualCodec
from colmax.indexes.plaid.segment import CodedSegment
from colmax.indexes.plaid.stream import TokenSource, chunks
from colmax.store.fsutil import atomic_write_npy, fsync_dir
from colmax.store.segments import SEGMENT_DIR

__all__ = [
    "SHOW_PROGRESS_FROM",
    "BuildProgress",
    "CodedWriter",
    "build_progress",
    "code_source",
    "sample_source",
    "unit_rows",
]

Progress = Callable[[int], None]
#: ``show_progress=None`` shows the bars from this many tokens on (about a minute of work).
SHOW_PROGRESS_FROM = 1_000_000


class BuildProgress:
    """Progress bars of a build (tqdm, with rate and ETA): k-means iterations, then tokens
    coded. Its callbacks do nothing when the bars are hidden."""

    def __init__(self, tokens: int, desc: str, show: bool) -> None:
        self.tokens, self.desc, self.show = tokens, desc, show
        self._bars: dict[str, Any] = {}

    def _bar(self, name: str, total: int | None, unit: str) -> Any:
        bar = self._bars.get(name)
        if bar is None:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc=f"{self.desc}: {name}", unit=unit, unit_scale=True)
            self._bars[name] = bar
        return bar

    def add_total(self, tokens: int) -> None:
        """More tokens to code than first announced (the live documents of a rebuild)."""
        self.tokens += tokens

    def kmeans(self, step: int) -> None:
        """Called after each k-means iteration."""
        if self.show:
            self._bar("k-means", None, "iter").update(step)

    def coded(self, tokens: int) -> None:
        """Called after each coded chunk."""
        if self.show:
            self._bar("coding", self.tokens, "tok").update(tokens)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()


@contextmanager
def build_progress(tokens: int, desc: str, show: bool | None) -> Iterator[BuildProgress]:
    """A :class:`BuildProgress`; ``show=None`` shows it from :data:`SHOW_PROGRESS_FROM`
    tokens on."""
    progress = BuildProgress(tokens, desc, tokens >= SHOW_PROGRESS_FROM if show is None else show)
    try:
        yield progress
    finally:
        progress.close()


def unit_rows(chunk: np.ndarray, dim: int, what: str) -> torch.Tensor:
    """``(n, dim)`` float32 rows of norm 1 (as :func:`colmax.validation.to_vectors` makes
    them), checked: the right dimension, finite, no all-zero row."""
    if chunk.ndim != 2 or chunk.shape[1] != dim:
        raise DimensionMismatchError(f"{what} has shape {chunk.shape}, expected (n, {dim})")
    x = torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32))
    if not bool(torch.isfinite(x).all()):
        raise InvalidEmbeddingError(f"{what} contains NaN or infinite values")
    scale = x.abs().amax(dim=1, keepdim=True)  # scale first: tiny rows keep their direction
    if bool((scale == 0).any()):
        raise InvalidEmbeddingError(f"{what} has an all-zero token vector")
    x = x / scale
    return x / x.norm(dim=1, keepdim=True)


def sample_source(
    source: TokenSource, n: int, seed: int, progress: Progress | None = None
) -> torch.Tensor:
    """``(min(n, tokens), dim)`` float16: a uniform sample of the source's token vectors (unit
    rows), drawn in one pass over the chunks that hold a pick. float16 halves the largest
    allocation of a build (1 M sampled vectors at dim 384: 0.8 GB instead of 1.6); k-means
    and the codec convert it a chunk at a time."""
    lengths = np.asarray(source.lengths, dtype=np.int64)
    total = int(lengths.sum())
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(total, size=min(n, total), replace=False))
    out, at = [], 0
    for start, stop in chunks(lengths):
        size = int(lengths[start:stop].sum())
        lo, hi = np.searchsorted(picks, [at, at + size])
        if hi > lo:
            rows = source.read(start, stop)[picks[lo:hi] - at]
            unit = unit_rows(rows, source.dim, f"documents {start}..{stop - 1}")
            out.append(unit.to(torch.float16))
        at += size
        if progress is not None:
            progress(size)
    return torch.cat(out) if out else torch.zeros((0, source.dim), dtype=torch.float16)


class CodedWriter:
    """Writes one coded segment chunk by chunk.

    In a folder, ``codes`` and ``residuals`` stream into temporary files whose headers already
    hold the final shapes; :meth:`finish` renames them into place next to the small files and
    returns the segment memory-mapped. Without a folder the arrays are filled in memory.
    :meth:`abort` (called on any error, KeyboardInterrupt included) removes what was written.

    Args:
        folder: the index folder (``None``: in memory).
        name: segment name.
        codec: the codec the tokens are coded with.
        keys: ``(n_docs,)`` document keys, in the order the documents will come.
        lengths: ``(n_docs,)`` tokens per document.
    """

    def __init__(
        self,
        folder: Path | None,
        name: str,
        codec: ResidualCodec,
        keys: np.ndarray,
        lengths: np.ndarray,
    ) -> None:
        self.folder, self.name, self.codec = folder, name, codec
        self.keys = np.asarray(keys, dtype=np.int64)
        self.offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.offsets[1:])
        self.n_tokens = int(self.offsets[-1])
        self.at = 0
        self.res_sq = self.err_sq = 0.0
        self._files: dict[str, Any] = {}
        self._temps: dict[str, Path] = {}
        self._arrays: dict[str, np.ndarray] = {}
        shapes = {
            "codes": ((self.n_tokens,), codec.code_dtype),
            "residuals": ((self.n_tokens, codec.n_bytes), np.dtype(np.uint8)),
        }
        if folder is None:
            self._arrays = {p: np.empty(s, dtype=d) for p, (s, d) in shapes.items()}
            return
        seg_dir = folder / SEGMENT_DIR
        seg_dir.mkdir(exist_ok=True)
        try:
            for part, (shape, dtype) in shapes.items():
                tmp = seg_dir / f".{name}.{part}.{secrets.token_hex(4)}.tmp"
                self._temps[part] = tmp
                handle = open(tmp, "wb")  # noqa: SIM115 (closed in finish/abort)
                self._files[part] = handle
                header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False}
                np.lib.format.write_array_header_1_0(handle, {**header, "shape": shape})
        except BaseException:
            self.abort()
            raise

    def append(
        self, codes: torch.Tensor, packed: torch.Tensor, res_sq: float, err_sq: float
    ) -> None:
        """The next tokens' centroid ids and packed rows (in document order)."""
        n = int(codes.shape[0])
        c = codes.numpy().astype(self.codec.code_dtype)
        p = np.ascontiguousarray(packed.numpy())
        if self.folder is None:
            self._arrays["codes"][self.at : self.at + n] = c
            self._arrays["residuals"][self.at : self.at + n] = p
        else:
            self._files["codes"].write(c.tobytes())
            self._files["residuals"].write(p.tobytes())
        self.at += n
        self.res_sq += res_sq
        self.err_sq += err_sq

    def finish(self) -> CodedSegment:
        """The complete segment (files in place, or arrays)."""
        if self.at != self.n_tokens:
            self.abort()
            raise ValueError(f"coded {self.at} of {self.n_tokens} tokens")  # internal invariant
        if self.folder is None:
            return CodedSegment(
                self.name,
                self._arrays["codes"],
                self._arrays["residuals"],
                self.offsets,
                self.keys,
                self.codec,
                self.res_sq,
                self.err_sq,
            )
        seg_dir = self.folder / SEGMENT_DIR
        try:
            for part, handle in self._files.items():
                handle.flush()
                os.fsync(handle.fileno())
                handle.close()
                os.replace(self._temps[part], seg_dir / f"{self.name}.{part}.npy")
            self._files.clear()
            small = CodedSegment(
                self.name,
                np.zeros(0, self.codec.code_dtype),
                np.zeros((0, self.codec.n_bytes), np.uint8),
                self.offsets,
                self.keys,
                self.codec,
                self.res_sq,
                self.err_sq,
            )
            for part in ("offsets", "keys", "meta"):
                array = small._meta() if part == "meta" else getattr(small, part)
                atomic_write_npy(seg_dir / f"{self.name}.{part}.npy", array)
            fsync_dir(seg_dir)
            segment = CodedSegment.read(
                self.folder, self.name, len(self.keys), self.n_tokens, self.codec
            )
        except BaseException:
            self.abort()
            raise
        segment.written_to = self.folder
        return segment

    def abort(self) -> None:
        """Close and remove everything written so far."""
        for handle in self._files.values():
            handle.close()
        self._files.clear()
        for tmp in self._temps.values():
            tmp.unlink(missing_ok=True)
        if self.folder is not None:
            CodedSegment.remove_files(self.folder, self.name)
        self._arrays.clear()


def code_source(
    source: TokenSource,
    codec: ResidualCodec,
    writer: CodedWriter,
    progress: Progress | None = None,
    first_doc: int = 0,
) -> None:
    """Code every document of ``source`` into ``writer``, one chunk at a time.

    Raises:
        InvalidEmbeddingError, DimensionMismatchError: a chunk holds bad vectors (the error
            names its documents, counted from ``first_doc``).
    """
    for start, stop in chunks(source.lengths):
        what = f"documents {first_doc + start}..{first_doc + stop - 1}"
        x = unit_rows(source.read(start, stop), codec.dim, what)
        codes, packed, res_sq, err_sq = codec.encode_measured(x)
        writer.append(codes, packed, res_sq, err_sq)
        if progress is not None:
            progress(int(x.shape[0]))
