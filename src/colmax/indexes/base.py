"""The index interface every backend (flat, plaid, qdrant) implements.

An index maps internal integer document keys to multi-vectors and answers top-k MaxSim
queries. It knows nothing about text, metadata or string ids: the engine keeps those in SQLite
and hands the index keys, vectors and (for filtered search) the set of allowed keys.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Index", "SearchResult"]


@dataclass(frozen=True)
class SearchResult:
    """Top-k of one query: ``keys`` and ``scores`` (descending), both length <= k."""

    keys: np.ndarray
    scores: np.ndarray


class Index(ABC):
    """A MaxSim index over documents identified by int64 keys."""

    kind: str = ""
    #: True when search scores every (allowed) document exactly.
    is_exhaustive: bool = True

    @abstractmethod
    def __len__(self) -> int:
        """Number of live documents."""

    @abstractmethod
    def search(
        self, queries: list[torch.Tensor], k: int, allowed: np.ndarray | None = None
    ) -> list[SearchResult]:
        """Top-``k`` documents per query.

        Args:
            queries: one ``(t_q, dim)`` float32 tensor per query (L2-normalised rows).
            k: results per query (fewer when fewer documents are live/allowed).
            allowed: sorted int64 keys a filter admits, or ``None`` for all live documents.
        """

    @abstractmethod
    def get_vectors(self, keys: np.ndarray) -> list[np.ndarray]:
        """Stored ``(n_tokens, dim)`` vectors of live documents, in the order of ``keys``.

        Raises:
            KeyError: a key is not live in the index.
        """
