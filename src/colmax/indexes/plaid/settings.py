"""User-facing settings of the compressed index, as kept in the manifest's ``index`` section.

Examples:
    >>> s = PlaidSettings.from_json({"nbits": 2})
    >>> s.nbits, s.centroids_for(1_000_000)
    (2, 4096)
    >>> PlaidSettings.from_json(s.to_json()) == s
    True
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from colmax.errors import InvalidInputError
from colmax.indexes.plaid.codec import NBITS
from colmax.validation import check_positive_int

__all__ = ["SEARCH_KEYS", "PlaidSettings"]

#: The settings that may change after the index is created (search widths only).
SEARCH_KEYS = ("nprobe", "ndocs", "nfinal")


@dataclass(frozen=True)
class PlaidSettings:
    """How the compressed index is built and searched.

    Attributes:
        nbits: average bits per residual dimension, 1 to 8 (default 2): ``dim * nbits / 8``
            bytes per token, centroid id and length byte included. On SciFact MiniLM vectors
            2 bits kept Recall@10 of the exact top 10 at 0.955 (``docs/plaid.md``).
        n_centroids: number of centroids; ``None`` chooses ``centroid_factor * sqrt(tokens)``
            rounded to a power of two when the codec is trained.
        centroid_factor: see ``n_centroids``.
        train_tokens: below this many live tokens the index stays exact (flat segments:
            exact search is as fast there, and k-means needs data); the codec is trained when
            the corpus reaches it.
        kmeans_iters: k-means iterations.
        sample_per_centroid: training points per centroid (a sample bounds build time and
            memory; the sample is drawn from all live documents).
        nprobe, ndocs, nfinal: search widths; ``None`` chooses them from ``k``
            (:class:`~colmax.indexes.plaid.search.SearchParams`).
        seed: makes builds reproducible.
    """

    nbits: int = 2
    n_centroids: int | None = None
    centroid_factor: float = 4.0
    train_tokens: int = 100_000
    kmeans_iters: int = 4
    sample_per_centroid: int = 64
    nprobe: int | None = None
    ndocs: int | None = None
    nfinal: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.nbits not in NBITS:
            raise InvalidInputError(f"plaid nbits must be one of {NBITS}, got {self.nbits!r}")
        positive = {
            "n_centroids": self.n_centroids,
            "train_tokens": self.train_tokens,
            "kmeans_iters": self.kmeans_iters,
            "sample_per_centroid": self.sample_per_centroid,
            "nprobe": self.nprobe,
            "ndocs": self.ndocs,
            "nfinal": self.nfinal,
        }
        for name, value in positive.items():
            if value is not None:
                check_positive_int(value, f"plaid {name}")
        factor = self.centroid_factor
        if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not factor > 0:
            raise InvalidInputError(f"plaid centroid_factor must be > 0, got {factor!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise InvalidInputError(f"plaid seed must be an integer, got {self.seed!r}")

    def centroids_for(self, n_tokens: int) -> int:
        """Centroids for a corpus of ``n_tokens`` (at most one per token)."""
        if self.n_centroids is not None:
            return max(1, min(self.n_centroids, n_tokens))
        want = self.centroid_factor * math.sqrt(max(1, n_tokens))
        return max(1, min(2 ** round(math.log2(max(1.0, want))), n_tokens))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> PlaidSettings:
        """Settings from a dict (the manifest, or user ``index_options``).

        Raises:
            InvalidInputError: an unknown key or an invalid value.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InvalidInputError(f"unknown plaid setting(s) {unknown}; known: {sorted(known)}")
        return cls(**raw)
