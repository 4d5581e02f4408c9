"""Exact (exhaustive) MaxSim over packed float16 segments.

The flat index is an immutable snapshot: each write builds a new :class:`FlatIndex` that
shares the unchanged segments (and their prepared scoring copies) with the old one, and the
engine swaps the reference. Searches that started on the old snapshot finish on it, so readers
never see half a write and never need a lock while scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from colmax.indexes.base import SearchResult, SegmentedIndex, drop_keys
from colmax.scoring import PackedDocuments
from colmax.scoring.packed import top_k_across
from colmax.store.segments import Segment, merge

__all__ = ["FlatIndex"]


@dataclass(frozen=True)
class _View:
    segment: Segment
    packed: PackedDocuments
    alive: np.ndarray  # bool (n_docs,)
    order: np.ndarray  # argsort of segment.keys, for key lookups

    @classmethod
    def of(cls, segment: Segment, alive: np.ndarray) -> _View:
        packed = PackedDocuments.from_arrays(segment.tokens, segment.offsets)
        return cls(segment, packed, alive, np.argsort(segment.keys, kind="stable"))

    def with_alive(self, alive: np.ndarray) -> _View:
        return replace(self, alive=alive)

    def positions(self, keys: np.ndarray) -> np.ndarray:
        """Positions of ``keys`` in this segment, -1 where absent or dead."""
        seg_keys = self.segment.keys
        idx = np.searchsorted(seg_keys, keys, sorter=self.order)
        idx = np.minimum(idx, len(seg_keys) - 1)
        pos = self.order[idx]
        found = (seg_keys[pos] == keys) & self.alive[pos]
        return np.where(found, pos, -1)


class FlatIndex(SegmentedIndex):
    """Exact MaxSim over every live token vector.

    Args:
        dim: vector dimension.
    """

    kind = "flat"
    is_exhaustive = True

    def __init__(self, dim: int, views: Sequence[_View] = ()) -> None:
        self.dim = dim
        self._views = tuple(views)

    # ------------------------------------------------------------------ snapshots
    @classmethod
    def from_segments(cls, dim: int, segments: Sequence[Segment], live: np.ndarray) -> FlatIndex:
        """Build from segments and the sorted live keys recorded in the database."""
        views = [_View.of(s, np.isin(s.keys, live)) for s in segments]
        return cls(dim, views)

    def refreshed(self, segments: Sequence[Segment], live: np.ndarray) -> FlatIndex:
        """Like :meth:`from_segments` but reuses prepared segments this snapshot already has."""
        known = {v.segment.name: v for v in self._views}
        views = []
        for seg in segments:
            alive = np.isin(seg.keys, live)
            view = known.get(seg.name)
            views.append(replace(view, alive=alive) if view is not None else _View.of(seg, alive))
        return FlatIndex(self.dim, views)

    def with_segment(self, segment: Segment, removed: np.ndarray) -> FlatIndex:
        """A new snapshot with ``segment`` added and the keys in ``removed`` dropped."""
        base = self.without(removed) if len(removed) else self
        alive = np.ones(segment.n_docs, dtype=bool)
        return FlatIndex(self.dim, (*base._views, _View.of(segment, alive)))

    def without(self, keys: np.ndarray) -> FlatIndex:
        """A new snapshot where ``keys`` are no longer live."""
        return FlatIndex(self.dim, drop_keys(self._views, keys))

    # ------------------------------------------------------------------ segment making
    def build_segment(self, seq: int, keys: np.ndarray, vectors: list[np.ndarray]) -> Segment:
        """A new segment for this index kind holding ``vectors`` (float32, one per key)."""
        return Segment.build(seq, keys, vectors, self.dim)

    def merge_segments(
        self, seq: int, segments: Sequence[Segment], alive: Sequence[np.ndarray]
    ) -> Segment:
        """One new segment with the live documents of ``segments`` (dead vectors dropped)."""
        return merge(seq, list(segments), list(alive))

    # ------------------------------------------------------------------ facts
    @property
    def segments(self) -> list[Segment]:
        return [v.segment for v in self._views]

    def alive_masks(self) -> list[np.ndarray]:
        return [v.alive for v in self._views]

    # ------------------------------------------------------------------ reads
    def get_vectors(self, keys: np.ndarray) -> list[np.ndarray]:
        keys = np.asarray(keys, dtype=np.int64)
        out: list[np.ndarray | None] = [None] * len(keys)
        for view in self._views:
            for i, p in enumerate(view.positions(keys)):
                if p >= 0:
                    out[i] = np.asarray(view.segment.vectors(int(p)), dtype=np.float32)
        missing = [int(k) for k, v in zip(keys, out) if v is None]
        if missing:
            raise KeyError(f"keys not in the index: {missing[:10]}")
        return [v for v in out if v is not None]

    def score_keys(self, query: torch.Tensor, keys: np.ndarray) -> np.ndarray:
        """Exact MaxSim of ``query`` with the documents ``keys`` (float32, in that order),
        from the packed copies search uses (:meth:`PackedDocuments.score` on the subset):
        no vectors are copied out, so re-ranking indexed candidates costs what scoring them
        does."""
        keys = np.asarray(keys, dtype=np.int64)
        out = np.zeros(len(keys), dtype=np.float32)
        found = np.zeros(len(keys), dtype=bool)
        for view in self._views:
            pos = view.positions(keys)
            hit = (pos >= 0) & ~found
            if hit.any():
                out[hit] = view.packed.score([query], pos[hit])[0].numpy()
                found |= hit
        if not found.all():
            raise KeyError(f"keys not in the index: {keys[~found][:10].tolist()}")
        return out

    def search(
        self, queries: list[torch.Tensor], k: int, allowed: np.ndarray | None = None
    ) -> list[SearchResult]:
        """Exact top ``k`` per query (see :meth:`PackedDocuments.top_k`: a low-precision first
        pass where this CPU runs one natively, float32/float64 re-scoring, same results)."""
        views: list[_View] = []
        eligible: list[np.ndarray | None] = []
        for view in self._views:
            mask = (
                view.alive if allowed is None else view.alive & np.isin(view.segment.keys, allowed)
            )
            n_ok = int(mask.sum())
            if n_ok:
                views.append(view)
                eligible.append(None if n_ok == len(mask) else np.flatnonzero(mask))
        if not views:
            return [_merge([], [], k) for _ in queries]
        # One cascade over every segment: re-scoring is decided against the overall k-th
        # place, not once per segment (an index grown by many small adds has many segments).
        found = top_k_across([v.packed for v in views], queries, k, eligible)
        results = []
        for top in found:
            keys = np.empty(top.ids.size, dtype=np.int64)
            for p in np.unique(top.parts).tolist():
                at = top.parts == p
                keys[at] = views[p].segment.keys[top.ids[at]]
            results.append(_merge([keys], [top.scores], k))
        return results


def _merge(keys: list[np.ndarray], scores: list[np.ndarray], k: int) -> SearchResult:
    if not keys:
        return SearchResult(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
    all_keys = np.concatenate(keys)
    all_scores = np.concatenate(scores).astype(np.float32)
    keep = np.isfinite(all_scores)
    all_keys, all_scores = all_keys[keep], all_scores[keep]
    # Deterministic order: score descending, then key ascending (older documents first).
    order = np.lexsort((all_keys, -all_scores))[:k]
    return SearchResult(all_keys[order], all_scores[order])
