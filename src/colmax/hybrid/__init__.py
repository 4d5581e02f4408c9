"""Hybrid retrieval: a BM25 side index (bm25s) fused with late interaction.

- :mod:`colmax.hybrid.fusion`: reciprocal-rank and min-max fusion, :func:`hybrid_search`
  (retrievers passed as callables, so a benchmark over cached vectors can use it too);
- :mod:`colmax.hybrid.bm25`: :class:`BM25Index`, the BM25 side, a derived cache of the
  stored texts;
- :mod:`colmax.hybrid.side`: how an engine keeps that cache current and fuses the two sides
  (``Engine.search(..., hybrid="rrf" | "minmax" | "rerank")``).
"""

from __future__ import annotations

from colmax.hybrid.bm25 import BM25Index, BM25Settings
from colmax.hybrid.fusion import (
    MODES,
    FusedHit,
    check_hybrid,
    hybrid_search,
    minmax_fusion,
    reciprocal_rank_fusion,
)

__all__ = [
    "MODES",
    "BM25Index",
    "BM25Settings",
    "FusedHit",
    "check_hybrid",
    "hybrid_search",
    "minmax_fusion",
    "reciprocal_rank_fusion",
]
