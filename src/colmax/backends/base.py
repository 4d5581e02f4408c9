"""The storage-and-search interface behind :class:`colmax.Engine`.

The engine owns encoding, input validation and reranking; a backend owns where documents,
metadata and token vectors live and how top-k MaxSim search over them runs:

- :class:`~colmax.backends.local.LocalBackend`: SQLite for text and metadata, memory-mapped
  segments for vectors, a flat (exact) or plaid (compressed) index over them; in memory or in
  an index folder.
- :class:`~colmax.backends.qdrant.QdrantBackend`: a Qdrant multivector collection (MAX_SIM),
  embedded (qdrant-edge) or on a server / cluster; text and metadata travel as payload.

Every backend is made by the same two class methods, ``create(folder, manifest, options)`` and
``open(folder, manifest, options)``, and found by its kind in :mod:`colmax.backends.registry`,
so the engine never names one. ``info()`` returns a typed :class:`BackendInfo`.

Every method receives input the engine has already validated (ids unique non-empty strings,
vectors finite, L2-normalised float32 of the right dimension, filters parsed). Backends raise
:class:`~colmax.errors.UnknownIdError` for ids they do not hold (unless told to skip them) and
leave their state unchanged when a call fails.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from colmax.errors import InvalidInputError
from colmax.filters import FilterLike
from colmax.store.manifest import Manifest
from colmax.types import Document, Hit, counts_dict

__all__ = ["Backend", "BackendInfo", "BackendOptions", "Missing"]

#: What to do with ids that are not stored: ``"raise"`` UnknownIdError, or ``"skip"`` them.
Missing = Literal["raise", "skip"]


@dataclass(frozen=True)
class BackendOptions:
    """What creating or opening a backend takes besides the folder and its manifest.

    Attributes:
        index: the ``index_options`` of the engine: settings of this kind (for ``"qdrant"``:
            ``url``, ``api_key``, ``collection``, ...; for ``"plaid"``: build settings at
            creation, search widths at any time). A backend refuses what it does not know.
        lock_timeout: seconds a writer waits for another process's write (local folders).
    """

    index: Mapping[str, Any] = field(default_factory=dict)
    lock_timeout: float = 60.0


@dataclass(frozen=True)
class BackendInfo:
    """Counts and settings of a backend (what ``colmax info`` prints).

    Attributes:
        documents: stored documents (chunks count one each).
        dim: token vector dimension.
        index: the kind (``"flat"``, ``"plaid"``, ``"qdrant"``).
        path: the index folder, or ``None`` in memory.
        tokens: stored token vectors, ``None`` where the backend does not count them (Qdrant).
        generation: the committed write counter, ``None`` where the backend keeps none.
        details: kind-specific facts (segments, dead tokens, plaid drift; Qdrant mode,
            collection, url, ...).
    """

    documents: int
    dim: int
    index: str
    path: str | None
    tokens: int | None = None
    generation: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A flat JSON-ready dict (``tokens`` / ``generation`` left out when unknown)."""
        return counts_dict(self)


class Backend(ABC):
    """Documents + token vectors + top-k MaxSim search."""

    #: ``"flat"``, ``"plaid"`` or ``"qdrant"``: the ``index=`` name users choose.
    kind: str = ""

    # ------------------------------------------------------------------ construction
    @classmethod
    @abstractmethod
    def create(cls, folder: Path | None, manifest: Manifest, options: BackendOptions) -> Backend:
        """A new empty index: in ``folder`` (missing or empty), or in memory (``None``).

        ``manifest`` holds the kind, dimension, encoder and chunking to record; its index
        settings are filled from ``options.index``.

        Raises:
            InvalidInputError: options this kind does not know or accept.
        """

    @classmethod
    @abstractmethod
    def open(cls, folder: Path, manifest: Manifest, options: BackendOptions) -> Backend:
        """The index in ``folder``, whose ``manifest`` has been read.

        Raises:
            InvalidInputError: options that contradict what was recorded at creation.
            IndexFormatError: a damaged folder.
        """

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

    @property
    def chunking(self) -> dict[str, int] | None:
        """How the engine splits added texts, as recorded at creation (``{"tokens": N,
        "overlap": M}``), or ``None``."""
        return None

    # ------------------------------------------------------------------ writes
    @abstractmethod
    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]],
        vectors: Sequence[np.ndarray],
        *,
        remove: Sequence[str] = (),
    ) -> None:
        """Insert or replace documents, atomically: all of them or none.

        ``vectors[i]`` is a float32 ``(n_tokens_i, dim)`` array with L2-normalised rows.
        ``remove``: other ids to delete in the same write (the stale chunks of a replaced
        document); those not stored are ignored.
        """

    def add_stream(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]],
        source: Any,
        show_progress: bool | None = None,
    ) -> None:
        """Upsert documents whose vectors are read from a token ``source``
        (:class:`~colmax.indexes.plaid.TokenSource`) a chunk at a time, in bounded memory;
        nothing is committed until every document is written.

        Raises:
            InvalidInputError: the kind does not build from a stream (only ``plaid`` does).
        """
        raise InvalidInputError(f"add_stream() needs index='plaid', not {self.kind!r}")

    @abstractmethod
    def delete(self, ids: Sequence[str], *, missing: Missing = "raise") -> int:
        """Delete by id, atomically; returns the count.

        Raises:
            UnknownIdError: some ids are not stored and ``missing="raise"`` (nothing is
                deleted). With ``"skip"`` they are left out, decided under the write lock.
        """

    # ------------------------------------------------------------------ reads
    @abstractmethod
    def get(self, ids: Sequence[str], *, missing: Missing = "raise") -> list[Document]:
        """Stored documents in the order of ``ids`` (with ``missing="skip"``, those stored).

        Raises:
            UnknownIdError: some ids are not stored and ``missing="raise"``.
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

    @abstractmethod
    def get_with_vectors(
        self, ids: Sequence[str], *, missing: Missing = "raise"
    ) -> list[tuple[Document, np.ndarray]]:
        """:meth:`get` and :meth:`get_vectors` together, from one snapshot.

        Raises:
            UnknownIdError: some ids are not stored and ``missing="raise"``.
        """

    def score_stored(self, query: torch.Tensor, ids: Sequence[str]) -> list[tuple[Document, float]]:
        """Stored documents with their MaxSim against one query, in the order of ``ids``.

        The default scores :meth:`get_with_vectors`; a backend that holds its corpus ready
        for scoring overrides it (the local flat index scores its packed copy in place).

        Raises:
            UnknownIdError: some ids are not stored.
        """
        from colmax.scoring import maxsim_ragged

        stored = self.get_with_vectors(ids)
        if not stored:
            return []
        vecs = [torch.from_numpy(np.asarray(v, dtype=np.float32)) for _, v in stored]
        scores = maxsim_ragged([query], vecs)[0].tolist()
        return [(d, float(s)) for (d, _), s in zip(stored, scores, strict=True)]

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

    @abstractmethod
    def matching_ids(self, filter: FilterLike) -> set[str]:
        """The ids of the stored documents ``filter`` matches (a filter dict or its tree).

        Raises:
            FilterError: the filter is malformed.
        """

    @abstractmethod
    def __len__(self) -> int:
        """Number of stored documents."""

    @abstractmethod
    def __contains__(self, id_: object) -> bool: ...

    @abstractmethod
    def info(self) -> BackendInfo:
        """Counts and settings (what ``colmax info`` prints)."""

    # ------------------------------------------------------------------ maintenance
    # Optional: the defaults say what the kind does not need or offer.
    def rebuild(self) -> BackendInfo:
        """Retrain what the index learned from the data (plaid: its codec) and re-code every
        document; returns the new info.

        Raises:
            InvalidInputError: the kind has nothing to rebuild.
        """
        raise InvalidInputError(f"index={self.kind!r} has nothing to rebuild")

    def optimize(self) -> BackendInfo:
        """Compact storage (drop deleted vectors, merge small segments, build graphs);
        searches give the same results before and after. Returns the new info."""
        return self.info()

    def set_search_options(self, options: Mapping[str, Any]) -> None:
        """Change search settings in this process (plaid: ``nprobe``, ``ndocs``, ``nfinal``);
        they are not written to the folder.

        Raises:
            InvalidInputError: the kind has no such settings, or an invalid value.
        """
        raise InvalidInputError(
            f"index={self.kind!r} has no search settings to change (got {sorted(options)})"
        )

    # ------------------------------------------------------------------ lifecycle
    @abstractmethod
    def save(self, path: Path) -> Path:
        """Write a complete copy to ``path`` (a missing or empty folder); returns it."""

    @abstractmethod
    def close(self) -> None:
        """Release files, connections and locks."""
