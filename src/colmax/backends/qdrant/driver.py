"""What :class:`~colmax.backends.qdrant.QdrantBackend` needs from a Qdrant engine.

Two implementations speak it: :class:`~colmax.backends.qdrant.edge.EdgeDriver`
(qdrant-edge, in process) and :class:`~colmax.backends.qdrant.client.ClientDriver`
(qdrant-client: a server or cluster, or the client's local mode). The backend works in colmax
terms (string ids, documents, hits); a driver works in Qdrant terms (point ids, payloads,
named vectors) and owns the conversion of :mod:`~colmax.backends.qdrant.filters` conditions to
its library's filter classes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from colmax.backends.qdrant.filters import Cond

__all__ = ["POOLED", "TOKENS", "Driver", "Found", "PointData", "missing_extra"]

#: Named vector holding the token vectors (multivector, MAX_SIM comparator).
TOKENS = "colmax_tokens"
#: Named vector holding the pooled single vector of two-stage search.
POOLED = "colmax_pooled"


@dataclass
class PointData:
    """One point to write: uuid point id, token vectors, optional pooled vector, payload."""

    id: str
    tokens: np.ndarray
    pooled: np.ndarray | None
    payload: dict[str, Any]


@dataclass
class Found:
    """One retrieved point: its payload (the fields asked for) and, if asked, token vectors."""

    payload: dict[str, Any]
    tokens: np.ndarray | None = None


class Driver(ABC):
    """A Qdrant collection (or edge shard) holding colmax documents."""

    @abstractmethod
    def upsert(self, points: Sequence[PointData]) -> None:
        """Write points (replacing those with the same ids)."""

    @abstractmethod
    def delete(self, point_ids: Sequence[str]) -> None:
        """Delete points by id (absent ids are ignored)."""

    @abstractmethod
    def retrieve(
        self, point_ids: Sequence[str], fields: Sequence[str], *, vectors: bool = False
    ) -> dict[str, Found]:
        """The points that exist among ``point_ids``, keyed by point id string."""

    @abstractmethod
    def search(
        self,
        queries: Sequence[np.ndarray],
        pooled: Sequence[np.ndarray] | None,
        k: int,
        prefetch_limit: int,
        cond: Cond | None,
        fields: Sequence[str],
    ) -> list[list[tuple[dict[str, Any], float]]]:
        """Top-``k`` (payload, MaxSim score) per query, best first.

        With ``pooled`` (one vector per query), the first stage takes ``prefetch_limit``
        candidates by the pooled vector and the second reranks them by MaxSim.
        """

    @abstractmethod
    def count(self) -> int:
        """Number of points."""

    @abstractmethod
    def scroll(
        self, fields: Sequence[str], *, vectors: bool = False, cond: Cond | None = None
    ) -> Iterator[tuple[str, Found]]:
        """Every point (``cond``: that matches it) as (point id, payload fields and, if
        asked, token vectors), unordered."""

    @abstractmethod
    def create_field_indexes(self, keywords: Sequence[str], floats: Sequence[str]) -> None:
        """Payload indexes on keyword and float fields (payload paths)."""

    @abstractmethod
    def flush(self) -> None:
        """Make every write so far durable."""

    @abstractmethod
    def close(self) -> None:
        """Release files and connections."""

    def describe(self) -> dict[str, Any]:
        """Engine-specific facts for ``info()``."""
        return {}


def missing_extra(package: str, exc: ImportError) -> ImportError:
    """The ImportError raised when an optional Qdrant package is not installed."""
    return ImportError(
        f'{package} is required for index="qdrant": pip install "colmax[qdrant]" ({exc})'
    )
