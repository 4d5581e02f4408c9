"""The index interfaces: :class:`Index` (search) and :class:`SegmentedIndex` (the snapshots
the local backend keeps: flat and plaid).

An index maps internal integer document keys to multi-vectors and answers top-k MaxSim
queries. It knows nothing about text, metadata or string ids: the backend keeps those in SQLite
and hands the index keys, vectors and (for filtered search) the set of allowed keys.

A :class:`SegmentedIndex` is an immutable snapshot over segments (files of packed vectors, see
:mod:`colmax.store.segments`), each with a mask of the documents still alive in it. Every write
makes a new snapshot that shares the unchanged segments with the old one, so searches never
take a lock while scoring. The segment bookkeeping (counts, live keys, liveness, which segments
to merge) is implemented once here; a kind implements how segments are built, merged, read
and searched.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from colmax.errors import InvalidInputError

__all__ = ["Index", "SearchResult", "SegmentLike", "SegmentedIndex", "ViewLike", "drop_keys"]


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

    def score_keys(self, query: torch.Tensor, keys: np.ndarray) -> np.ndarray:
        """MaxSim of one query with each live document of ``keys`` (float32, in that order).

        The default scores the stored vectors; an index that holds its corpus ready for
        scoring (the flat index) overrides it and skips the copies.

        Raises:
            KeyError: a key is not live in the index.
        """
        from colmax.scoring import maxsim_ragged

        vecs = [torch.from_numpy(np.asarray(v, dtype=np.float32)) for v in self.get_vectors(keys)]
        if not vecs:
            return np.zeros(0, dtype=np.float32)
        return maxsim_ragged([query], vecs)[0].numpy()


class SegmentLike(Protocol):
    """What the bookkeeping needs of a segment (exact or coded)."""

    name: str
    keys: np.ndarray  # int64 (n_docs,)
    offsets: np.ndarray  # int64 (n_docs + 1,)

    @property
    def n_docs(self) -> int: ...

    @property
    def n_tokens(self) -> int: ...


class ViewLike(Protocol):
    """A segment prepared for search, with its liveness mask."""

    @property
    def segment(self) -> Any: ...

    @property
    def alive(self) -> np.ndarray: ...

    def positions(self, keys: np.ndarray) -> np.ndarray: ...

    def with_alive(self, alive: np.ndarray) -> Any: ...


V = TypeVar("V", bound=ViewLike)


def drop_keys(views: Sequence[V], keys: np.ndarray) -> list[V]:
    """``views`` where ``keys`` are no longer alive (views without them are shared as they are).

    Examples:
        >>> drop_keys([], np.array([1]))
        []
    """
    keys = np.asarray(keys, dtype=np.int64)
    out = []
    for view in views:
        pos = view.positions(keys)
        pos = pos[pos >= 0]
        if len(pos):
            alive = view.alive.copy()
            alive[pos] = False
            view = view.with_alive(alive)
        out.append(view)
    return out


class SegmentedIndex(Index):
    """An immutable snapshot over segments; each write returns a new one.

    Subclasses implement the snapshot transitions (:meth:`refreshed`, :meth:`with_segment`,
    :meth:`without`), segment making (:meth:`build_segment`, :meth:`merge_segments`), reads
    (:meth:`get_vectors`, :meth:`search`) and :attr:`segments` / :meth:`alive_masks` (in the
    same order). Kinds with an index-wide codec (plaid) override the codec hooks at the end.
    """

    dim: int
    #: The index-wide model segments are coded with (plaid's centroids), committed with the
    #: segments that use it; ``None`` for kinds (or states) without one.
    codec: Any = None

    # ------------------------------------------------------------------ snapshots
    @abstractmethod
    def refreshed(self, segments: Sequence[Any], live: np.ndarray) -> SegmentedIndex:
        """A snapshot over ``segments`` with the sorted ``live`` keys (prepared views of the
        segments this snapshot already has are reused)."""

    @abstractmethod
    def with_segment(self, segment: Any, removed: np.ndarray) -> SegmentedIndex:
        """A new snapshot with ``segment`` added and the keys in ``removed`` dropped."""

    @abstractmethod
    def without(self, keys: np.ndarray) -> SegmentedIndex:
        """A new snapshot where ``keys`` are no longer live."""

    # ------------------------------------------------------------------ segment making
    @abstractmethod
    def build_segment(self, seq: int, keys: np.ndarray, vectors: list[np.ndarray]) -> Any:
        """A new segment of this kind holding ``vectors`` (float32, one per key)."""

    @abstractmethod
    def merge_segments(self, seq: int, segments: Sequence[Any], alive: Sequence[np.ndarray]) -> Any:
        """One new segment with the live documents of ``segments`` (dead vectors dropped)."""

    # ------------------------------------------------------------------ bookkeeping
    @property
    @abstractmethod
    def segments(self) -> list[Any]:
        """The segments, in the order of :meth:`alive_masks`."""

    @abstractmethod
    def alive_masks(self) -> list[np.ndarray]:
        """One bool ``(n_docs,)`` liveness mask per segment."""

    def __len__(self) -> int:
        return int(sum(a.sum() for a in self.alive_masks()))

    def token_counts(self) -> tuple[int, int]:
        """``(live_tokens, dead_tokens)``: dead tokens wait for a merge to be dropped."""
        live = dead = 0
        for seg, alive in zip(self.segments, self.alive_masks()):
            lengths = np.diff(seg.offsets)
            n_live = int(lengths[alive].sum())
            live += n_live
            dead += int(lengths.sum()) - n_live
        return live, dead

    def live_keys(self) -> np.ndarray:
        """The sorted keys of the live documents."""
        parts = [s.keys[a] for s, a in zip(self.segments, self.alive_masks())]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    def merge_candidates(self, max_segments: int) -> list[int]:
        """Positions of segments worth rewriting: mostly dead ones, plus the smaller half when
        there are more than ``max_segments`` (a tiered policy: merge cost stays amortised)."""
        segs, alive = self.segments, self.alive_masks()
        chosen = {i for i, a in enumerate(alive) if a.sum() * 2 < len(a)}
        if len(segs) > max_segments:
            sizes = sorted(s.n_tokens for s in segs)
            cutoff = sizes[len(sizes) // 2]
            chosen |= {i for i, s in enumerate(segs) if s.n_tokens <= cutoff}
        return sorted(chosen)

    # ------------------------------------------------------------------ kind-specific hooks
    def report(self) -> dict[str, Any] | None:
        """Kind-specific state for ``info()`` and the manifest (plaid: its drift), or ``None``."""
        return None

    def with_search_options(self, options: Mapping[str, Any]) -> SegmentedIndex:
        """The same snapshot with other search settings (plaid: ``nprobe``, ``ndocs``,
        ``nfinal``).

        Raises:
            InvalidInputError: this kind has no search settings, or an unknown/invalid one.
        """
        raise InvalidInputError(
            f"index={self.kind!r} has no search settings to change (got {sorted(options)})"
        )

    def needs_training(self) -> bool:
        """True when the next write should (re)train the codec (see :meth:`trained`)."""
        return False

    def trained(
        self, seq: int, folder: Path | None = None, show_progress: bool | None = None
    ) -> tuple[Any, Any, np.ndarray]:
        """A codec trained on the live vectors, every live document coded with it (one
        segment written into ``folder``, or ``None`` when empty) and the live keys: what a
        rebuild commits.

        Raises:
            InvalidInputError: this kind has nothing to train.
        """
        raise InvalidInputError(f"index={self.kind!r} has nothing to rebuild")

    def streamed(
        self,
        seq: int,
        keys: np.ndarray,
        source: Any,
        folder: Path | None = None,
        show_progress: bool | None = None,
    ) -> tuple[Any, Any]:
        """New documents read from a token ``source`` a chunk at a time, in one segment:
        ``(None, segment)`` when it joins this snapshot, ``(codec, segment)`` when a codec was
        trained for it and the segment holds every live document too (the snapshot is
        replaced). See :meth:`colmax.indexes.plaid.PlaidIndex.streamed`.

        Raises:
            InvalidInputError: this kind does not build from a stream.
        """
        raise InvalidInputError(f"add_stream() needs index='plaid', not {self.kind!r}")

    def with_codec(self, codec: Any, segments: Sequence[Any], live: np.ndarray) -> SegmentedIndex:
        """A snapshot that uses ``codec`` over ``segments`` (coded with it, or exact)."""
        raise InvalidInputError(f"index={self.kind!r} has no codec")

    def segment_reader(self, codec: Any) -> Callable[..., Any] | None:
        """How to open this kind's segment files given its codec (``None``: exact segments
        only, read by the storage's default reader)."""
        return None

    def codec_reader(self) -> Callable[..., Any] | None:
        """How to read this kind's codec files (``None``: the kind has no codec)."""
        return None
