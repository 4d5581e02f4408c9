"""The storage-and-search interface behind :class:`colmax.Engine`.

The engine owns encoding, input validation and reranking; a backend owns where documents,
metadata and token vectors live and how top-k MaxSim search over them runs:

- :class:`~colmax.backends.local.LocalBackend`: SQLite for text and metadata, memory-mapped
  segments for vectors, a flat (exact) or plaid (compressed) index over them; in memory or in
  an index folder.
- :class:`~colmax.backends.qdrant.QdrantBackend`: a Qdrant multivector collection (MAX_SIM),
  embedded (qdrant-edge) or on a server / cluster; text and metadata travel as payload.

Every method receives input the engine has already validated (ids unique non-empty strings,
vectors finite, L2-normalised float32 of the right dimension, filters syntactically checked).
Backends raise :class:`~colmax.errors.UnknownIdError` for ids they do not hold and leave their
state unchanged when a call fails.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from colmax.errors import InvalidInputError
from colmax.filters import FilterLike
from colmax.types import Document, Hit

__all__ = ["Backend"]


class Backend(ABC):
    """Documents + token vectors + top-k MaxSim search."""

    #: ``"flat"``, ``"plaid"`` or ``"qdrant"``: the ``index=`` name users choose.
    kind: str = ""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Token vector dimension."""

    @property
    @abstractmethod
    def path(self) -> Path | None:
        """The folder this backend persists to, or ``None`` when it lives only in memory."""

    @property
    @abstractmethod
    def encoder_config(self) -> dict[str, Any] | None:
        """The encoder settings recorded when the index was created (``None``: vectors only)."""

    # ------------------------------------------------------------------ writes
    @abstractmethod
    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]],
        vectors: Sequence[np.ndarray],
    ) -> None:
        """Insert or replace documents, atomically: all of them or none.

        ``vectors[i]`` is a float32 ``(n_tokens_i, dim)`` array with L2-normalised rows.
        """

    @abstractmethod
    def delete(self, ids: Sequence[str]) -> int:
        """Delete by id, atomically; returns the count.

        Raises:
            UnknownIdError: some ids are not stored (nothing is deleted).
        """

    # ------------------------------------------------------------------ reads
    @abstractmethod
    def get(self, ids: Sequence[str]) -> list[Document]:
        """Stored documents in the order of ``ids``.

        Raises:
            UnknownIdError: some ids are not stored.
        """

    @abstractmethod
    def get_vectors(self, ids: Sequence[str]) -> list[np.ndarray]:
        """Stored float32 ``(n_tokens, dim)`` vectors in the order of ``ids`` (decoded
        approximations for compressed indexes).

        Raises:
            UnknownIdError: some ids are not stored.
        """

    def existing(self, ids: Sequence[str]) -> set[str]:
        """The subset of ``ids`` that is stored."""
        return {i for i in ids if i in self}

    def get_with_vectors(self, ids: Sequence[str]) -> list[tuple[Document, np.ndarray]]:
        """:meth:`get` and :meth:`get_vectors` together (backends make it one snapshot)."""
        return list(zip(self.get(ids), self.get_vectors(ids)))

    @abstractmethod
    def search(
        self, queries: Sequence[torch.Tensor], k: int, filter: FilterLike = None
    ) -> list[list[Hit]]:
        """Top-``k`` hits per query, best first, ``rank`` 0-based; fewer when fewer match.

        ``queries`` are float32 ``(t_q, dim)`` tensors with L2-normalised rows. ``filter`` is a
        filter dict or its parsed tree (:mod:`colmax.filters`).

        Raises:
            FilterError: the filter is malformed.
        """

    @abstractmethod
    def ids(self) -> list[str]:
        """All ids, oldest first."""

    # ------------------------------------------------------------------ hybrid search
    # What the engine's BM25 side index needs. Optional: the defaults say "not supported",
    # and the engine then refuses hybrid search with a clear error.
    @property
    def generation(self) -> int | None:
        """A counter that changes with every committed write (``None``: not kept; then
        derived indexes such as BM25 cannot know when to rebuild)."""
        return None

    def text_snapshot(self) -> tuple[int, list[str], list[str]]:
        """``(generation, ids, texts)`` of every stored document, oldest first, from one
        consistent snapshot.

        Raises:
            InvalidInputError: this backend cannot give one (hybrid search is unavailable).
        """
        raise InvalidInputError(f"hybrid search is not available for index={self.kind!r}")

    def matching_ids(self, filter: FilterLike) -> set[str]:
        """The ids of the stored documents ``filter`` matches (colmax filter language).

        Raises:
            FilterError: the filter is malformed.
            InvalidInputError: this backend cannot evaluate filters on their own.
        """
        raise InvalidInputError(f"hybrid search is not available for index={self.kind!r}")

    @abstractmethod
    def __len__(self) -> int:
        """Number of stored documents."""

    @abstractmethod
    def __contains__(self, id_: object) -> bool: ...

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Counts and settings (what ``colmax info`` prints); always has ``documents``,
        ``dim``, ``index`` and ``path``."""

    # ------------------------------------------------------------------ lifecycle
    @abstractmethod
    def save(self, path: Path) -> Path:
        """Write a complete copy to ``path`` (a missing or empty folder); returns it."""

    @abstractmethod
    def close(self) -> None:
        """Release files, connections and locks."""
