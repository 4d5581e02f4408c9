"""Residual compression: a token vector is its nearest centroid plus a transform-coded residual.

ColBERTv2 (Santhanam et al., NAACL 2022, section 3.3) stores each token as the id of its nearest
centroid and its residual ``r = x - c`` quantised to ``nbits`` per dimension. colmax codes the
residual better for the same bytes (:mod:`colmax.indexes.plaid.transform`): it is rotated onto
its principal axes, and the bits go to the axes with the most variance (groups of 8 axes get 0,
1, 2, 4 or 8 bits each), each axis with its own quantile buckets. One more byte per token
stores ``|x| / |decoded x|`` on a log scale, so a decoded vector keeps the length of the
original: quantisation shrinks or stretches vectors, and MaxSim, a sum of dot products, is
sensitive to length. On SciFact MiniLM vectors (dim 384) at 2 bits, the two together raised the
Recall@10 of exhaustive search over decoded vectors from 0.922 to 0.956.

Bytes per token: ``dim * nbits / 8`` in all for the code bytes, the length byte and the 2-byte
centroid id (the code bytes are ``ceil(dim * nbits / 8 * 31 / 32)``; 93 at dim 384 and 2 bits).

Scoring never has to rebuild a vector: ``q . (c + r) = q . c + (q P) . y``, and ``(q P) . y`` is
a sum of one table entry per code byte, because a byte fixes the bucket of each of its axes. For
a query that table is ``(n_bytes * 256, n_query_tokens)`` floats (WARP, Scheerer et al., SIGIR
2025, scores residuals the same way); :meth:`ResidualCodec.score_residuals` reads it with
``torch.nn.functional.embedding_bag``, one fused gather-and-sum per token. The length byte's
rows in the table are zero; :meth:`ResidualCodec.scales` reads it.

On disk a codec is six ``.npy`` files under ``codecs/``: ``centroids`` (float16; the codec
computes with exactly these rounded values), ``rotation``, ``cutoffs`` and ``weights``
(float32), ``widths`` (int64) and ``meta`` (float64: format, nbits, dim, number of centroids,
the training statistics drift is measured against, and the range of the length byte).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from colmax.indexes.plaid.codec_files import part_names, read_parts, write_parts
from colmax.indexes.plaid.kmeans import ROUTE_FROM, Router, kmeans, nearest
from colmax.indexes.plaid.transform import (
    GROUP,
    MAX_LEVELS,
    ByteLayout,
    allocate,
    lloyd_buckets,
    principal_axes,
)
from colmax.store.storage import CODEC_DIR

__all__ = ["CODEC_DIR", "NBITS", "CodecStats", "ResidualCodec", "code_bytes", "new_codec_name"]

#: Average bits per residual dimension a codec may be asked for.
NBITS = tuple(range(1, 9))
_ENCODE_ROWS = 1 << 14  # tokens encoded per step: bounded memory however large the input
_QUANTILE_ROWS = 1 << 16  # residual rows used for the rotation, bit allocation and buckets


def new_codec_name(seq: int) -> str:
    """A fresh codec name (random tail: unique across crashed writers)."""
    return f"codec-{seq:08d}-{secrets.token_hex(4)}"


def code_bytes(dim: int, nbits: int) -> int:
    """Residual code bytes per token: 31/32 of ``dim * nbits / 8`` (rounded up). With the
    length byte and the 2-byte centroid id a token costs ``dim * nbits / 8`` bytes at dim 384
    and up, and never more than ``dim * nbits / 8 + 4`` (34 bytes at dim 128, 2 bits).

    Examples:
        >>> code_bytes(384, 2), code_bytes(128, 2), code_bytes(384, 4)
        (93, 31, 186)
    """
    return max(1, -(-dim * nbits * 31 // 256))


@dataclass(frozen=True)
class CodecStats:
    """What the training sample looked like, the yardstick for drift.

    Attributes:
        tokens: token vectors the centroids were trained on (the sample).
        residual_sq: mean squared norm of the residuals ``|x - c|^2``.
        error_sq: mean squared norm of the coding error ``|x - decode(encode(x))|^2``.
        corpus_tokens: live tokens in the corpus when the codec was trained.
    """

    tokens: int
    residual_sq: float
    error_sq: float
    corpus_tokens: int = 0


@dataclass(frozen=True)
class ScaleRange:
    """The log-uniform 256-step scale of the length byte: ``lo * (hi / lo) ** (b / 255)``."""

    lo: float
    hi: float

    @classmethod
    def around(cls, ratios: torch.Tensor) -> ScaleRange:
        """A range covering ``ratios`` with 2% to spare (later tokens are clamped into it)."""
        finite = ratios[torch.isfinite(ratios) & (ratios > 0)]
        if finite.numel() == 0:
            return cls(0.5, 2.0)
        return cls(float(finite.min()) * 0.98, float(finite.max()) * 1.02)

    @cached_property
    def values(self) -> torch.Tensor:
        """``(256,)`` float32: the factor each byte value stands for."""
        steps = torch.arange(256, dtype=torch.float64) / 255
        return (self.lo * (self.hi / self.lo) ** steps).to(torch.float32)

    def encode(self, ratios: torch.Tensor) -> torch.Tensor:
        """``(n,)`` uint8: the nearest step (in log terms) to each ratio, clamped."""
        span = np.log(self.hi / self.lo)
        pos = torch.log(ratios.to(torch.float64) / self.lo) / span * 255
        return torch.nan_to_num(pos, nan=0.0).round().clamp(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class ResidualCodec:
    """Centroids plus transform-coded residuals (see the module docstring).

    Attributes:
        centroids: ``(n_centroids, dim)`` float32 (values exactly representable in float16).
        rotation: ``(dim, dim)`` float32 orthogonal: the residuals' principal axes.
        widths: bits per axis of each group of 8 rotated axes.
        cutoffs: ``(dim, 255)`` float32: per axis, its ``2**width - 1`` ascending bucket
            cutoffs, then ``+inf``.
        weights: ``(dim, 256)`` float32: per axis, the value of each of its buckets, then 0.
        nbits: the average bits per dimension asked for.
        scale: range of the length byte.
        stats: training statistics (drift yardstick).
        name: file stem on disk (``""`` until written).

    Examples:
        >>> torch.manual_seed(0) and None
        >>> x = torch.nn.functional.normalize(torch.randn(2000, 16), dim=1)
        >>> codec = ResidualCodec.train(x, n_centroids=32, nbits=4)
        >>> codes, packed = codec.encode(x)
        >>> packed.shape, packed.dtype          # 8 code bytes and the length byte
        (torch.Size([2000, 9]), torch.uint8)
        >>> err = (codec.decode(codes, packed) - x).norm(dim=1).mean()
        >>> bool(err < 0.2)
        True
    """

    centroids: torch.Tensor
    rotation: torch.Tensor
    widths: tuple[int, ...]
    cutoffs: torch.Tensor
    weights: torch.Tensor
    nbits: int
    scale: ScaleRange
    stats: CodecStats
    name: str = ""

    # ------------------------------------------------------------------ facts
    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def n_centroids(self) -> int:
        return int(self.centroids.shape[0])

    @cached_property
    def layout(self) -> ByteLayout:
        return ByteLayout(self.dim, self.widths)

    @property
    def n_bytes(self) -> int:
        """Bytes per token in a packed row: the residual code bytes, then the length byte."""
        return self.layout.n_bytes + 1

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
        for array in (self.rotation, self.cutoffs, self.weights):
            digest.update(array.numpy().tobytes())
        digest.update(np.asarray(self.widths, dtype=np.int64).tobytes())
        digest.update(np.array([self.nbits, self.scale.lo, self.scale.hi]).tobytes())
        return int(digest.hexdigest()[:12], 16)

    @cached_property
    def router(self) -> Router | None:
        """Two-level nearest-centroid search, used from ``ROUTE_FROM`` centroids on."""
        return Router(self.centroids) if self.n_centroids >= ROUTE_FROM else None

    @cached_property
    def _values(self) -> torch.Tensor:
        return self.layout.value_table(self.weights)

    def named(self, name: str) -> ResidualCodec:
        """The same codec under file stem ``name``."""
        return replace(self, name=name)

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
        """Fit centroids (k-means), the residual transform and buckets on a sample.

        Args:
            sample: ``(n, dim)`` float32 or float16 token vectors, ``n >= n_centroids``.
            n_centroids: number of centroids.
            nbits: average bits per dimension, 1 to 8 (see :func:`code_bytes`).
            iters: k-means iterations.
            seed: makes the result reproducible.
            progress: called with 1 per k-means iteration.
            corpus_tokens: size of the corpus the sample was drawn from (recorded for drift).

        Returns:
            The trained codec (unnamed).
        """
        if nbits not in NBITS:
            raise ValueError(f"nbits must be one of {NBITS}, got {nbits!r}")  # checked upstream
        dim = sample.shape[1]
        centroids = kmeans(sample, n_centroids, iters=iters, seed=seed, progress=progress)
        centroids = centroids.to(torch.float16).to(torch.float32)  # what the file will hold
        router = Router(centroids) if n_centroids >= ROUTE_FROM else None
        gen = torch.Generator().manual_seed(seed)
        pick = torch.randperm(sample.shape[0], generator=gen)[:_QUANTILE_ROWS]
        part = sample[pick].to(torch.float32)
        residuals = part - centroids[nearest(part, centroids, router)]
        rotation = principal_axes(residuals)
        ordered = torch.sort(residuals @ rotation, dim=0).values
        widths = allocate(ordered, code_bytes(dim, nbits))
        cutoffs = torch.full((dim, MAX_LEVELS - 1), float("inf"))
        weights = torch.zeros((dim, MAX_LEVELS))
        for g, width in enumerate(widths):
            axes = slice(g * GROUP, min(dim, (g + 1) * GROUP))
            if width:
                cut, val = lloyd_buckets(ordered[:, axes], width)
                cutoffs[axes, : cut.shape[1]] = cut
                weights[axes, : val.shape[1]] = val
        unscaled = cls(
            centroids,
            rotation,
            widths,
            cutoffs,
            weights,
            nbits,
            ScaleRange(1.0, 1.0),
            CodecStats(0, 0.0, 0.0),
        )
        scale = ScaleRange.around(unscaled._length_ratios(part))
        codec = replace(unscaled, scale=scale)
        res_sq, err_sq = codec.residual_stats(sample)
        n = int(sample.shape[0])
        return replace(codec, stats=CodecStats(n, res_sq / n, err_sq / n, corpus_tokens or n))

    def _length_ratios(self, vectors: torch.Tensor) -> torch.Tensor:
        """``|x| / |c + decoded r|`` of each vector, before the length byte."""
        out = []
        for a in range(0, vectors.shape[0], _ENCODE_ROWS):  # bounded temporaries
            x = vectors[a : a + _ENCODE_ROWS]
            codes = nearest(x, self.centroids, self.router)
            r = x - self.centroids[codes]
            approx = self.centroids[codes] + self._decode_rotated(self._quantise(r))
            out.append(x.norm(dim=1) / approx.norm(dim=1))
        return torch.cat(out)

    def residual_stats(self, vectors: torch.Tensor) -> tuple[float, float]:
        """``(sum |x - c|^2, sum |x - decoded x|^2)`` over ``vectors`` (drift measurements)."""
        _, _, res_sq, err_sq = self.encode_measured(vectors)
        return res_sq, err_sq

    # ------------------------------------------------------------------ coding
    def _quantise(self, residuals: torch.Tensor) -> torch.Tensor:
        """``(n, n_code_bytes)`` packed bucket numbers of the rotated residuals."""
        rotated = residuals @ self.rotation
        # searchsorted (left) counts the cutoffs strictly below each value; +inf never is.
        levels = torch.searchsorted(self.cutoffs, rotated.T.contiguous(), out_int32=True).T
        return self.layout.pack(levels)

    def _decode_rotated(self, code: torch.Tensor) -> torch.Tensor:
        """Residuals ``(n, dim)`` of packed residual codes (without the length byte)."""
        return self.layout.unpack(code, self._values) @ self.rotation.T

    def encode(self, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest centroid and packed code (residual code bytes, then the length byte).

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
        """:meth:`encode` plus ``sum |x - c|^2`` and ``sum |x - decoded x|^2`` (for drift)."""
        n = vectors.shape[0]
        codes = torch.empty(n, dtype=torch.int64)
        packed = torch.empty((n, self.n_bytes), dtype=torch.uint8)
        res_sq = err_sq = 0.0
        for a in range(0, n, _ENCODE_ROWS):
            x = vectors[a : a + _ENCODE_ROWS].to(torch.float32)
            b = a + x.shape[0]
            codes[a:b] = nearest(x, self.centroids, self.router)
            c = self.centroids[codes[a:b]]
            r = x - c
            code = self._quantise(r)
            approx = c + self._decode_rotated(code)
            length = self.scale.encode(x.norm(dim=1) / approx.norm(dim=1))
            packed[a:b, :-1] = code
            packed[a:b, -1] = length
            err = x - approx * self.scale.values[length.to(torch.int64)].unsqueeze(1)
            res_sq += float((r * r).sum())
            err_sq += float((err * err).sum())
        return codes, packed, res_sq, err_sq

    def scales(self, packed: torch.Tensor) -> torch.Tensor:
        """``(n,)`` float32 length factors of packed rows ``(n, n_bytes)``."""
        return self.scale.values[packed[:, -1].to(torch.int64)]

    def decode_residuals(self, packed: torch.Tensor) -> torch.Tensor:
        """``(n, dim)`` float32 decoded residuals ``r`` of packed rows, before the length
        factor: ``q . r`` is what :meth:`score_residuals` returns."""
        return self._decode_rotated(packed[:, :-1])

    def decode(self, codes: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        """``(n, dim)`` float32 approximations ``(c + r) * length factor`` of coded vectors."""
        approx = self.centroids[codes.to(torch.int64)] + self.decode_residuals(packed)
        return approx * self.scales(packed).unsqueeze(1)

    # ------------------------------------------------------------------ scoring
    def lookup_table(self, queries: torch.Tensor) -> torch.Tensor:
        """``(n_bytes * 256, t)``: ``q_i . r`` contribution of each byte position and value
        (the length byte's rows are zero).

        Args:
            queries: ``(t, dim)`` float32 query token vectors.
        """
        rotated = queries.to(torch.float32) @ self.rotation
        table = self.layout.query_table(rotated, self._values)
        return torch.cat([table, torch.zeros((256, table.shape[1]))])

    def byte_base(self) -> torch.Tensor:
        """``(n_bytes,)`` int32 row offsets of each byte position in :meth:`lookup_table`."""
        return torch.arange(self.n_bytes, dtype=torch.int32) * 256

    def score_residuals(self, packed: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """``(n, t)`` float32 ``q_i . r`` for packed rows ``(n, n_bytes)``, no vector built."""
        if packed.shape[0] == 0:
            return torch.zeros((0, table.shape[1]))
        idx = packed.to(torch.int32) + self.byte_base()
        return torch.nn.functional.embedding_bag(idx, table, mode="sum")

    def score_residual_columns(
        self, packed: torch.Tensor, columns_table: torch.Tensor, columns: torch.Tensor
    ) -> torch.Tensor:
        """``(n,)`` float32: ``q_{columns[j]} . r_j``, one query token per packed row.

        Args:
            packed: ``(n, n_bytes)`` uint8 rows.
            columns_table: the transposed :meth:`lookup_table`, ``(t, n_bytes * 256)``
                contiguous (one query token's table is one contiguous row).
            columns: ``(n,)`` the query token of each row.
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
        """Write the codec's files (each atomically) under ``folder/codecs/``; needs a name."""
        if not self.name:
            raise ValueError("name the codec (codec.named(...)) before writing it")  # internal
        s = self.stats
        write_parts(
            folder,
            self.name,
            header=(self.nbits, self.dim, self.n_centroids),
            stats=(s.tokens, s.residual_sq, s.error_sq, s.corpus_tokens),
            scale=(self.scale.lo, self.scale.hi),
            arrays={
                "centroids": self.centroids.numpy().astype(np.float16),
                "rotation": self.rotation.numpy(),
                "cutoffs": self.cutoffs.numpy(),
                "weights": self.weights.numpy(),
                "widths": np.asarray(self.widths, dtype=np.int64),
            },
        )

    @staticmethod
    def file_names(name: str) -> list[str]:
        return part_names(name)

    @staticmethod
    def remove_files(folder: Path, name: str) -> None:
        for file in part_names(name):
            (folder / CODEC_DIR / file).unlink(missing_ok=True)

    @classmethod
    def read(cls, folder: Path, name: str, dim: int) -> ResidualCodec:
        """Read and validate a codec written by :meth:`write`.

        Raises:
            IndexFormatError: a file is missing, unreadable or inconsistent (naming the file).
        """
        parts = read_parts(folder, name, dim, NBITS)
        arrays = parts.arrays
        tokens, residual_sq, error_sq, corpus_tokens = parts.stats
        return cls(
            torch.from_numpy(np.asarray(arrays["centroids"], dtype=np.float32)),
            torch.from_numpy(np.array(arrays["rotation"])),
            tuple(int(w) for w in arrays["widths"]),
            torch.from_numpy(np.array(arrays["cutoffs"])),
            torch.from_numpy(np.array(arrays["weights"])),
            parts.nbits,
            ScaleRange(*parts.scale),
            CodecStats(int(tokens), float(residual_sq), float(error_sq), int(corpus_tokens)),
            name,
        )
