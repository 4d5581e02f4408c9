"""Prefetch vectors: one single vector per document (and query) for the first stage of a
two-stage Qdrant search (``prefetch="mean" | "muvera"``).

Not to be confused with token pooling (:mod:`colmax.pooling`, ``pool_factor``), which keeps a
multi-vector but with fewer rows.

A Qdrant collection can hold, beside the token vectors, one dense vector per document with an
HNSW graph; a query then prefetches candidates by that vector and reranks only those by exact
MaxSim. Two poolings:

- ``"mean"``: the L2-normalised mean of the token vectors (for documents and queries alike),
  compared by dot product. Cheap, ``dim`` numbers per document.
- ``"muvera"``: the fixed-dimensional encoding of MUVERA (Dhulipala et al., 2024,
  arXiv:2405.19504, section 3): SimHash buckets per repetition; a document contributes the mean
  of its vectors in each bucket (an empty bucket borrows the vector whose bucket is nearest in
  Hamming distance), a query the sum of its vectors; each bucket block goes through a random
  +-1 projection. The dot product of two encodings approximates the MaxSim (Chamfer) score.

Random matrices come from :class:`numpy.random.PCG64`'s raw bit stream, which numpy keeps
stable across versions, so encodings written today match queries encoded after an upgrade.

Examples:
    >>> import numpy as np
    >>> pool = PrefetchEncoding.from_settings({"kind": "mean"}, dim=4)
    >>> [round(float(x), 3) for x in pool.documents([np.eye(4)[:2]])[0]]
    [0.707, 0.707, 0.0, 0.0]
    >>> PrefetchEncoding.from_settings({"kind": "muvera", "k_sim": 2, "d_proj": 4, "reps": 3}, 8).size
    48
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from colmax.errors import InvalidInputError

__all__ = ["PREFETCH_KINDS", "PrefetchEncoding"]

#: Kinds accepted by ``prefetch=...``.
PREFETCH_KINDS = ("mean", "muvera")
_MUVERA_DEFAULTS = {"k_sim": 4, "d_proj": 16, "reps": 8, "seed": 0}
_MUVERA_LIMITS = {"k_sim": (1, 10), "d_proj": (1, 4096), "reps": (1, 256), "seed": (0, 2**63)}


@dataclass(frozen=True)
class PrefetchEncoding:
    """One prefetch encoding (``"mean"`` or ``"muvera"``), with its settings (as written to the
    manifest) and random matrices."""

    kind: str
    settings: dict[str, Any]
    size: int
    _hyperplanes: np.ndarray | None = None  # (reps, dim, k_sim) of +-1
    _projections: np.ndarray | None = None  # (reps, dim, d_proj) of +-1/sqrt(d_proj)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], dim: int) -> PrefetchEncoding:
        """Build from ``{"kind": "mean"}`` or ``{"kind": "muvera", "k_sim": .., ...}``.

        Raises:
            InvalidInputError: unknown kind or settings out of range.
        """
        kind = settings.get("kind")
        if kind == "mean":
            if set(settings) != {"kind"}:
                raise InvalidInputError(f"mean pooling takes no settings, got {dict(settings)}")
            return cls("mean", {"kind": "mean"}, dim)
        if kind != "muvera":
            raise InvalidInputError(
                f"prefetch pooling must be one of {PREFETCH_KINDS}, got {kind!r}"
            )
        unknown = set(settings) - {"kind", *_MUVERA_DEFAULTS}
        if unknown:
            raise InvalidInputError(f"unknown muvera settings {sorted(unknown)}")
        full = {**_MUVERA_DEFAULTS, **{k: v for k, v in settings.items() if k != "kind"}}
        for name, (low, high) in _MUVERA_LIMITS.items():
            value = full[name]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidInputError(f"muvera {name} must be an int in [{low}, {high}]")
        reps, k_sim, d_proj = full["reps"], full["k_sim"], full["d_proj"]
        bits = np.random.Generator(np.random.PCG64(full["seed"]))
        raw = bits.bit_generator.random_raw(reps * dim * (k_sim + d_proj))
        signs = np.where(raw & 1, 1.0, -1.0).astype(np.float32)
        hyper = signs[: reps * dim * k_sim].reshape(reps, dim, k_sim)
        proj = signs[reps * dim * k_sim :].reshape(reps, dim, d_proj) / np.sqrt(d_proj)
        size = reps * (2**k_sim) * d_proj
        return cls("muvera", {"kind": "muvera", **full}, size, hyper, proj.astype(np.float32))

    def documents(self, vectors: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One float32 ``(size,)`` vector per ``(n_tokens, dim)`` document."""
        return [self._encode(v, is_query=False) for v in vectors]

    def queries(self, vectors: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One float32 ``(size,)`` vector per ``(n_tokens, dim)`` query."""
        return [self._encode(v, is_query=True) for v in vectors]

    def _encode(self, x: np.ndarray, *, is_query: bool) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if self.kind == "mean":
            mean = x.mean(axis=0)
            norm = float(np.linalg.norm(mean))
            # Opposite token vectors can cancel out; any unit vector then does (scores ~ 0).
            return mean / norm if norm > 1e-12 else np.eye(1, x.shape[1], dtype=np.float32)[0]
        hyper, proj = self._hyperplanes, self._projections
        assert hyper is not None and proj is not None  # set for muvera
        k_sim = hyper.shape[2]
        n_buckets = 2**k_sim
        # SimHash code of every vector in every repetition: (reps, n, k_sim) bits.
        reps, n = hyper.shape[0], x.shape[0]
        # 2-D products only: numpy's stacked 3-D matmul does not use BLAS and was ~10x slower.
        planes = hyper.transpose(1, 0, 2).reshape(x.shape[1], -1)  # (dim, reps * k_sim)
        bits = (x @ planes).reshape(n, reps, k_sim).transpose(1, 0, 2) > 0
        bucket = bits.astype(np.int64) @ (1 << np.arange(k_sim, dtype=np.int64))  # (reps, n)
        onehot = (bucket[:, None, :] == np.arange(n_buckets)[None, :, None]).astype(np.float32)
        sums = (onehot.reshape(-1, n) @ x).reshape(reps, n_buckets, -1)  # per-bucket sums
        if not is_query:
            counts = onehot.sum(axis=2)  # (reps, n_buckets)
            sums /= np.maximum(counts, 1)[:, :, None]
            # An empty bucket takes the vector whose code is nearest in Hamming distance.
            codes = (np.arange(n_buckets)[:, None] >> np.arange(k_sim)) & 1  # (n_buckets, k_sim)
            dist = (codes[None, :, None, :] != bits[:, None, :, :]).sum(axis=3)  # (reps, nb, n)
            nearest = x[dist.argmin(axis=2)]  # (reps, n_buckets, dim)
            sums = np.where((counts == 0)[:, :, None], nearest, sums)
        return (sums @ proj).reshape(-1).astype(np.float32)  # (reps, n_buckets, d_proj) flat
