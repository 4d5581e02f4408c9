"""Residual compression: a token vector is its nearest centroid plus a 2- or 4-bit residual.

ColBERTv2 (Santhanam et al., NAACL 2022, section 3.3) stores each token as the id of its nearest
centroid and its residual ``r = x - c`` quantised to ``nbits`` per dimension. Here every
dimension has its own bucket cutoffs (the residual's quantiles in that dimension, from the
training sample) and its own bucket values (the mean residual inside each bucket), so skewed or
wide dimensions keep their resolution. Codes pack ``8 // nbits`` dimensions per byte, low bits
first.

Scoring never has to rebuild a vector: ``q . (c + r) = q . c + q . r``, and ``q . r`` is a sum of
one table entry per code byte, because a byte fixes the bucket of each of its dimensions. For a
query that table is ``(n_bytes * 256, n_query_tokens)`` floats (WARP, Scheerer et al., SIGIR
2025, scores residuals the same way); :meth:`ResidualCodec.score_residuals` reads it with
``torch.nn.functional.embedding_bag``, one fused gather-and-sum per token.

On disk a codec is four ``.npy`` files under ``codecs/``: ``centroids`` (float16; the codec
computes with exactly these rounded values), ``cutoffs`` and ``weights`` (float32) and ``meta``
(float64: format, nbits, dim, number of centroids and the training statistics drift is measured
against).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from colmax.errors import IndexFormatError
from colmax.indexes.plaid.kmeans import ROUTE_FROM, Router, kmeans, nearest
from colmax.store.fsutil import atomic_write_npy
from colmax.store.storage import CODEC_DIR

__all__ = ["CODEC_DIR", "NBITS", "CodecStats", "ResidualCodec", "new_codec_name"]

NBITS = (2, 4)
_FORMAT = 1
_PARTS = ("centroids", "cutoffs", "weights", "meta")
_ENCODE_ROWS = 1 << 15  # tokens encoded per step: bounded memory however large the input
_QUANTILE_ROWS = 1 << 16  # residual rows used to place the bucket cutoffs


def new_codec_name(seq: int) -> str:
    """A fresh codec name (random tail: unique across crashed writers)."""
    return f"codec-{seq:08d}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class CodecStats:
    """What the training sample looked like, the yardstick for drift.

    Attributes:
        tokens: token vectors the centroids were trained on (the sample).
        residual_sq: mean squared norm of the residuals ``|x - c|^2``.
        error_sq: mean squared norm of the quantisation error ``|r - decode(code(r))|^2``.
        corpus_tokens: live tokens in the corpus when the codec was trained.
    """

    tokens: int
    residual_sq: float
    error_sq: float
    corpus_tokens: int = 0


def _level_table(nbits: int) -> torch.Tensor:
    """``(256, 8 // nbits)``: the bucket of each dimension packed in each byte value."""
    per_byte = 8 // nbits
    byte = torch.arange(256).unsqueeze(1)
    shifts = torch.arange(per_byte) * nbits
    return (byte >> shifts) & ((1 << nbits) - 1)


@dataclass(frozen=True)
class ResidualCodec:
    """Centroids plus per-dimension residual buckets (see the module docstring).

    Attributes:
        centroids: ``(n_centroids, dim)`` float32 (values exactly representable in float16).
        cutoffs: ``(dim, 2**nbits - 1)`` float32, ascending per dimension.
        weights: ``(dim, 2**nbits)`` float32, the value each bucket decodes to.
        nbits: bits per residual dimension, 2 or 4.
        stats: training statistics (drift yardstick).
        name: file stem on disk (``""`` until written).

    Examples:
        >>> torch.manual_seed(0) and None
        >>> x = torch.nn.functional.normalize(torch.randn(2000, 16), dim=1)
        >>> codec = ResidualCodec.train(x, n_centroids=32, nbits=4)
        >>> codes, packed = codec.encode(x)
        >>> packed.shape, packed.dtype
        (torch.Size([2000, 8]), torch.uint8)
        >>> err = (codec.decode(codes, packed) - x).norm(dim=1).mean()
        >>> bool(err < 0.2)
        True
    """

    centroids: torch.Tensor
    cutoffs: torch.Tensor
    weights: torch.Tensor
    nbits: int
    stats: CodecStats
    name: str = ""

    # ------------------------------------------------------------------ facts
    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def n_centroids(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def per_byte(self) -> int:
        """Dimensions packed in one code byte."""
        return 8 // self.nbits

    @property
    def n_bytes(self) -> int:
        """Code bytes per token: ``ceil(dim * nbits / 8)``."""
        return -(-self.dim // self.per_byte)

    @property
    def code_dtype(self) -> np.dtype:
        """Smallest unsigned/int dtype that holds a centroid number (2 bytes up to 65,536)."""
        return np.dtype(np.uint16) if self.n_centroids <= 1 << 16 else np.dtype(np.int32)

    @cached_property
    def fingerprint(self) -> int:
        """48-bit hash of the codec's arrays: segments record it to prove which codec coded
        them (exactly representable in the float64 segment metadata)."""
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(self.centroids.numpy().astype(np.float16).tobytes())
        digest.update(self.cutoffs.numpy().tobytes())
        digest.update(self.weights.numpy().tobytes())
        digest.update(bytes([self.nbits]))
        return int(digest.hexdigest()[:12], 16)

    @cached_property
    def router(self) -> Router | None:
        """Two-level nearest-centroid search, used from ``ROUTE_FROM`` centroids on."""
        return Router(self.centroids) if self.n_centroids >= ROUTE_FROM else None

    def named(self, name: str) -> ResidualCodec:
        """The same codec under file stem ``name``."""
        return ResidualCodec(
            self.centroids, self.cutoffs, self.weights, self.nbits, self.stats, name
        )

    # ------------------------------------------------------------------ training
    @classmethod
    def train(
        cls,
        sample: torch.Tensor,
        n_centroids: int,
        nbits: int = 2,
        *,
        iters: int = 8,
        seed: int = 0,
        progress: Callable[[int], None] | None = None,
        corpus_tokens: int = 0,
    ) -> ResidualCodec:
        """Fit centroids (k-means) and residual buckets on a sample of token vectors.

        Args:
            sample: ``(n, dim)`` float32 token vectors, ``n >= n_centroids``.
            n_centroids: number of centroids.
            nbits: 2 or 4.
            iters: k-means iterations.
            seed: makes the result reproducible.
            progress: called with 1 per k-means iteration.
            corpus_tokens: size of the corpus the sample was drawn from (recorded for drift).

        Returns:
            The trained codec (unnamed).
        """
        if nbits not in NBITS:
            raise ValueError(f"nbits must be one of {NBITS}, got {nbits!r}")  # checked upstream
        sample = sample.to(torch.float32)
        centroids = kmeans(sample, n_centroids, iters=iters, seed=seed, progress=progress)
        centroids = centroids.to(torch.float16).to(torch.float32)  # what the file will hold
        router = Router(centroids) if n_centroids >= ROUTE_FROM else None
        residuals = sample - centroids[nearest(sample, centroids, router)]
        gen = torch.Generator().manual_seed(seed)
        pick = torch.randperm(residuals.shape[0], generator=gen)[:_QUANTILE_ROWS]
        cutoffs, weights = _buckets(residuals[pick], nbits)
        codec = cls(centroids, cutoffs, weights, nbits, CodecStats(0, 0.0, 0.0))
        res_sq, err_sq = codec.residual_stats(sample)
        n = int(sample.shape[0])
        stats = CodecStats(n, res_sq / n, err_sq / n, corpus_tokens or n)
        return cls(centroids, cutoffs, weights, nbits, stats)

    def residual_stats(self, vectors: torch.Tensor) -> tuple[float, float]:
        """``(sum |r|^2, sum |r - decoded r|^2)`` over ``vectors`` (drift measurements)."""
        _, _, res_sq, err_sq = self.encode_measured(vectors)
        return res_sq, err_sq

    # ------------------------------------------------------------------ coding
    def _levels(self, residuals: torch.Tensor) -> torch.Tensor:
        """``(n, dim)`` bucket numbers: how many cutoffs each value exceeds."""
        # searchsorted (left) counts the cutoffs strictly below each value: same as summing
        # ``r > cutoffs`` without the (n, dim, levels - 1) boolean tensor.
        idx = torch.searchsorted(self.cutoffs, residuals.T.contiguous())
        return idx.T.to(torch.uint8)

    def _pack(self, levels: torch.Tensor) -> torch.Tensor:
        n, pad = levels.shape[0], self.n_bytes * self.per_byte - self.dim
        if pad:
            levels = torch.cat([levels, torch.zeros((n, pad), dtype=torch.uint8)], dim=1)
        parts = levels.view(n, self.n_bytes, self.per_byte).to(torch.int32)
        shifts = torch.arange(self.per_byte, dtype=torch.int32) * self.nbits
        return (parts << shifts).sum(dim=2).to(torch.uint8)

    def encode(self, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest centroid and packed residual code of each vector.

        Args:
            vectors: ``(n, dim)`` float tensor.

        Returns:
            ``(codes (n,) int64, packed (n, n_bytes) uint8)``.
        """
        codes, packed, _, _ = self.encode_measured(vectors)
        return codes, packed

    def encode_measured(
        self, vectors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, float, float]:
        """:meth:`encode` plus ``sum |r|^2`` and ``sum |r - decoded r|^2`` (for drift)."""
        n = vectors.shape[0]
        codes = torch.empty(n, dtype=torch.int64)
        packed = torch.empty((n, self.n_bytes), dtype=torch.uint8)
        res_sq = err_sq = 0.0
        for a in range(0, n, _ENCODE_ROWS):
            x = vectors[a : a + _ENCODE_ROWS].to(torch.float32)
            b = a + x.shape[0]
            codes[a:b] = nearest(x, self.centroids, self.router)
            r = x - self.centroids[codes[a:b]]
            packed[a:b] = self._pack(self._levels(r))
            err = r - self.decode_residuals(packed[a:b])
            res_sq += float((r * r).sum())
            err_sq += float((err * err).sum())
        return codes, packed, res_sq, err_sq

    def _byte_values(self) -> torch.Tensor:
        """``(n_bytes * 256, per_byte)``: decoded residual values of every byte position/value."""
        pad = self.n_bytes * self.per_byte - self.dim
        w = self.weights
        if pad:
            w = torch.cat([w, torch.zeros((pad, w.shape[1]))])
        w = w.view(self.n_bytes, self.per_byte, -1)  # (n_bytes, per_byte, levels)
        levels = _level_table(self.nbits)  # (256, per_byte)
        cols = [w[:, j, levels[:, j]] for j in range(self.per_byte)]  # each (n_bytes, 256)
        return torch.stack(cols, dim=2).reshape(self.n_bytes * 256, self.per_byte)

    def decode_residuals(self, packed: torch.Tensor) -> torch.Tensor:
        """``(n, dim)`` float32 residuals of packed codes ``(n, n_bytes)``."""
        n = packed.shape[0]
        idx = packed.to(torch.int64) + torch.arange(self.n_bytes) * 256
        vals = self._byte_values().index_select(0, idx.view(-1))
        return vals.view(n, self.n_bytes * self.per_byte)[:, : self.dim]

    def decode(self, codes: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        """``(n, dim)`` float32 approximations ``c + r`` of coded vectors."""
        return self.centroids[codes.to(torch.int64)] + self.decode_residuals(packed)

    # ------------------------------------------------------------------ scoring
    def lookup_table(self, queries: torch.Tensor) -> torch.Tensor:
        """``(n_bytes * 256, t)``: ``q_i . r`` contribution of each byte position and value.

        Built as an outer sum: a byte's entry is the sum of its dimensions' bucket values times
        the query, so the table for one position is ``per_byte`` broadcast additions of
        ``2**nbits``-long vectors (no gather).

        Args:
            queries: ``(t, dim)`` float32 query token vectors.
        """
        t = queries.shape[0]
        pad = self.n_bytes * self.per_byte - self.dim
        w = self.weights
        qt = queries.to(torch.float32).T
        if pad:
            w = torch.cat([w, torch.zeros((pad, w.shape[1]))])
            qt = torch.cat([qt, torch.zeros((pad, t))])
        levels = 1 << self.nbits
        # vals[p, j, l, i]: query token i times the value of bucket l of dimension j of byte p.
        vals = (w.unsqueeze(2) * qt.unsqueeze(1)).view(self.n_bytes, self.per_byte, levels, t)
        # Byte value b = sum_j l_j << (nbits * j): in C order the highest dimension varies slowest.
        table = torch.zeros((self.n_bytes,) + (1,) * self.per_byte + (t,))
        for j in range(self.per_byte):
            shape = [self.n_bytes] + [1] * self.per_byte + [t]
            shape[self.per_byte - j] = levels
            table = table + vals[:, j].reshape(shape)
        return table.reshape(self.n_bytes * 256, t)

    def byte_base(self) -> torch.Tensor:
        """``(n_bytes,)`` int32 row offsets of each byte position in :meth:`lookup_table`."""
        return torch.arange(self.n_bytes, dtype=torch.int32) * 256

    def score_residuals(self, packed: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """``(n, t)`` float32 ``q_i . r`` for packed codes ``(n, n_bytes)``, no vector built."""
        if packed.shape[0] == 0:
            return torch.zeros((0, table.shape[1]))
        idx = packed.to(torch.int32) + self.byte_base()
        return torch.nn.functional.embedding_bag(idx, table, mode="sum")

    def score_residual_columns(
        self, packed: torch.Tensor, columns_table: torch.Tensor, columns: torch.Tensor
    ) -> torch.Tensor:
        """``(n,)`` float32: ``q_{columns[j]} . r_j``, one query token per packed code.

        Args:
            packed: ``(n, n_bytes)`` uint8 codes.
            columns_table: the transposed :meth:`lookup_table`, ``(t, n_bytes * 256)``
                contiguous (one query token's table is one contiguous row).
            columns: ``(n,)`` the query token of each code.
        """
        n = packed.shape[0]
        if n == 0:
            return torch.zeros(0)
        width = columns_table.shape[1]
        idx = packed.to(torch.int32) + self.byte_base()
        idx += (columns.to(torch.int32) * width).unsqueeze(1)
        # A flat index_select + sum: ~2x faster here than embedding_bag over 1-wide rows.
        vals = columns_table.view(-1).index_select(0, idx.view(-1))
        return vals.view(n, -1).sum(dim=1)

    # ------------------------------------------------------------------ files
    def write(self, folder: Path) -> None:
        """Write the four files (each atomically) under ``folder/codecs/``; needs a name."""
        if not self.name:
            raise ValueError("name the codec (codec.named(...)) before writing it")  # internal
        out = folder / CODEC_DIR
        out.mkdir(exist_ok=True)
        s = self.stats
        meta = np.array(
            [
                *(_FORMAT, self.nbits, self.dim, self.n_centroids),
                *(s.tokens, s.residual_sq, s.error_sq, s.corpus_tokens),
            ],
            dtype=np.float64,
        )
        arrays = {
            "centroids": self.centroids.numpy().astype(np.float16),
            "cutoffs": self.cutoffs.numpy(),
            "weights": self.weights.numpy(),
            "meta": meta,
        }
        for part in _PARTS:
            atomic_write_npy(out / f"{self.name}.{part}.npy", arrays[part])

    @staticmethod
    def file_names(name: str) -> list[str]:
        return [f"{name}.{part}.npy" for part in _PARTS]

    @staticmethod
    def remove_files(folder: Path, name: str) -> None:
        for file in ResidualCodec.file_names(name):
            (folder / CODEC_DIR / file).unlink(missing_ok=True)

    @classmethod
    def read(cls, folder: Path, name: str, dim: int) -> ResidualCodec:
        """Read and validate a codec written by :meth:`write`.

        Raises:
            IndexFormatError: a file is missing, unreadable or inconsistent (naming the file).
        """
        base = folder / CODEC_DIR
        arrays = {part: _load(base / f"{name}.{part}.npy") for part in _PARTS}
        meta = arrays["meta"]
        where = base / f"{name}.meta.npy"
        if meta.dtype != np.float64 or meta.shape != (8,) or not np.isfinite(meta).all():
            raise IndexFormatError(f"{where}: damaged codec meta {meta.dtype}{meta.shape}.")
        fmt, nbits, mdim, n_c = (int(v) for v in meta[:4])
        if fmt != _FORMAT:
            raise IndexFormatError(f"{where}: codec format {fmt} is not supported (expected 1).")
        if nbits not in NBITS or mdim != dim or n_c < 1:
            raise IndexFormatError(
                f"{where}: codec says nbits={nbits}, dim={mdim}, {n_c} centroids; the index "
                f"has dim {dim} and nbits must be one of {NBITS}."
            )
        levels = 1 << nbits
        expect = {
            "centroids": (np.float16, (n_c, dim)),
            "cutoffs": (np.float32, (dim, levels - 1)),
            "weights": (np.float32, (dim, levels)),
        }
        for part, (dtype, shape) in expect.items():
            arr = arrays[part]
            if arr.dtype != dtype or arr.shape != shape or not np.isfinite(arr).all():
                raise IndexFormatError(
                    f"{base / f'{name}.{part}.npy'}: damaged codec file: "
                    f"{arr.dtype}{arr.shape}, expected finite {np.dtype(dtype)}{shape}."
                )
        if levels > 2 and np.any(np.diff(arrays["cutoffs"], axis=1) < 0):
            raise IndexFormatError(f"{base / f'{name}.cutoffs.npy'}: cutoffs are not ascending.")
        stats = CodecStats(int(meta[4]), float(meta[5]), float(meta[6]), int(meta[7]))
        return cls(
            torch.from_numpy(np.asarray(arrays["centroids"], dtype=np.float32)),
            torch.from_numpy(np.array(arrays["cutoffs"])),
            torch.from_numpy(np.array(arrays["weights"])),
            nbits,
            stats,
            name,
        )


def _buckets(residuals: torch.Tensor, nbits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension quantile cutoffs and in-bucket mean values of a residual sample."""
    levels = 1 << nbits
    ordered = torch.sort(residuals, dim=0).values  # (n, dim), each column sorted
    n = ordered.shape[0]
    at = [min(n - 1, (n * j) // levels) for j in range(1, levels)]
    cutoffs = ordered[at].T.contiguous()  # (dim, levels - 1)
    # Bucket value: the mean of the sorted slice between neighbouring cutoffs (the residuals
    # that fall into that bucket), so decoding is unbiased within each bucket.
    bounds = [0, *at, n]
    weights = torch.stack(
        [ordered[bounds[j] : max(bounds[j + 1], bounds[j] + 1)].mean(dim=0) for j in range(levels)],
        dim=1,
    )
    return cutoffs, weights.contiguous()


def _load(path: Path) -> np.ndarray:
    if not path.is_file():
        raise IndexFormatError(f"{path}: codec file is missing; the index folder is incomplete.")
    try:
        if path.stat().st_size == 0:
            raise ValueError("empty file")
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise IndexFormatError(f"{path}: unreadable codec file ({exc}).") from exc
