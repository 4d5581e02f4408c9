"""Hybrid search for the engine (``Engine.search(..., hybrid="rrf" | "minmax" | "rerank")``).

The BM25 side is a :class:`~colmax.hybrid.BM25Index` over the stored texts, a derived cache
of the documents: it records the backend generation it was built from, and the first hybrid
search after any write (from this process or another one) rebuilds it from one consistent
snapshot of the texts (bm25s indexes are static, so a write means a rebuild). A folder-backed
engine keeps it in ``<index folder>/bm25/`` so another process, or the next run, loads it
instead of rebuilding; an in-memory engine keeps it in memory. Backends that keep no
generation (Qdrant) do not offer hybrid search.

Filters apply to both sides exactly: the late-interaction side searches with the filter as
usual, and the BM25 side is restricted to the ids the backend's own filter evaluation
matches (not an over-fetch), so a selective filter still yields up to ``candidates`` BM25
hits.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import torch

from colmax.backends.base import Backend
from colmax.errors import InvalidInputError
from colmax.explain.stored import stored_with_vectors
from colmax.filters import MATCH_ALL, FilterLike, parse_filter
from colmax.hybrid.bm25 import BM25Index
from colmax.hybrid.fusion import FusedHit, check_hybrid, hybrid_search
from colmax.scoring import maxsim_ragged
from colmax.types import Hit

__all__ = ["BM25_DIR", "HybridSide", "check_hybrid"]

logger = logging.getLogger(__name__)

#: Subfolder of an index folder holding the BM25 cache.
BM25_DIR = "bm25"


class HybridSide:
    """The BM25 side of one engine: loaded or built on first use, rebuilt after writes.

    Args:
        backend: the engine's backend (its ``generation`` and ``text_snapshot`` are used).
    """

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._index: BM25Index | None = None
        self._lock = threading.Lock()

    def index(self) -> BM25Index:
        """The BM25 index of the backend's current generation.

        Raises:
            InvalidInputError: the backend keeps no generation (hybrid search unavailable).
        """
        generation = self._backend.generation
        if generation is None:
            raise InvalidInputError(
                f"hybrid search is not available for index={self._backend.kind!r}"
            )
        with self._lock:  # one rebuild at a time; the others wait for it
            current = self._index
            if current is not None and current.generation == generation:
                return current
            folder = self._folder()
            index = BM25Index.load(folder, generation=generation) if folder else None
            if index is None:
                built_at, ids, texts = self._backend.text_snapshot()
                index = BM25Index(ids, texts, generation=built_at)
                if folder is not None:
                    try:
                        index.save(folder)
                    except OSError as exc:  # a read-only index folder still gets hybrid search
                        logger.warning("could not save the BM25 cache to %s: %s", folder, exc)
            self._index = index
            return index

    def _folder(self) -> Path | None:
        path = self._backend.path
        return path / BM25_DIR if path is not None else None

    def search(
        self,
        query: str,
        query_vectors: torch.Tensor,
        k: int,
        filter: FilterLike,
        *,
        mode: str,
        candidates: int,
        weight: float,
    ) -> list[Hit]:
        """Fused hits for one query (options already checked by :func:`check_hybrid`).

        ``Hit.score`` is the fused score; ``Hit.scores`` holds ``"late"`` (MaxSim) and
        ``"bm25"`` for the sides that returned the document.
        """
        backend = self._backend
        bm25 = self.index()
        tree = parse_filter(filter)
        allowed = backend.matching_ids(tree) if tree != MATCH_ALL else None
        rows: dict[str, Hit] = {}  # text and metadata of late-side hits, reused below

        def lexical(n: int) -> list[tuple[str, float]]:
            return bm25.search(query, n, allowed=allowed)

        def late(n: int) -> list[tuple[str, float]]:
            hits = backend.search([query_vectors], n, tree)[0]
            rows.update((h.id, h) for h in hits)
            return [(h.id, h.score) for h in hits]

        def rescore(ids: list[str]) -> list[tuple[str, float]]:
            stored = stored_with_vectors(backend, ids)  # BM25 may list a document deleted since
            kept = [i for i in ids if i in stored]
            if not kept:
                return []
            vectors = [torch.as_tensor(stored[i][1], dtype=torch.float32) for i in kept]
            scores = maxsim_ragged([query_vectors], vectors)[0].tolist()
            for i in kept:
                doc = stored[i][0]
                rows[i] = Hit(doc.id, 0.0, doc.text, doc.metadata, 0)
            return list(zip(kept, scores))

        fused = hybrid_search(
            k,
            bm25=lexical,
            late=late,
            rerank=rescore,
            mode=mode,
            candidates=candidates,
            weight=weight,
        )
        return _hits(backend, fused, rows)


def _hits(backend: Backend, fused: list[FusedHit], rows: dict[str, Hit]) -> list[Hit]:
    missing = [f.id for f in fused if f.id not in rows]
    if missing:  # BM25-only hits: fetch their text and metadata (skip any deleted meanwhile)
        for doc in backend.get(missing, missing="skip"):
            rows[doc.id] = Hit(doc.id, 0.0, doc.text, doc.metadata, 0)
    out: list[Hit] = []
    for f in fused:
        row = rows.get(f.id)
        if row is None:
            continue
        scores = {
            name: float(value)
            for name, value in (("late", f.late_score), ("bm25", f.bm25_score))
            if value is not None
        }
        out.append(Hit(f.id, f.score, row.text, dict(row.metadata), len(out), scores=scores))
    return out
