"""Fusion of a BM25 ranking with a late-interaction ranking (``hybrid="rrf" | "minmax" | "rerank"``).

Three modes, all through :func:`hybrid_search`, which takes the retrievers as callables so any
engine (or a benchmark over cached vectors) can use it:

* ``"rrf"``: reciprocal-rank fusion (Cormack, Clarke and Buettcher, SIGIR 2009):
  ``score(d) = sum_i w_i / (rrf_k + rank_i(d))`` with 1-based ranks and ``rrf_k = 60``.
* ``"minmax"``: each list's scores scaled to ``[0, 1]`` by its own min and max, then
  ``weight * late + (1 - weight) * bm25`` (a document missing from a list gets 0 there).
* ``"rerank"``: BM25 retrieves ``candidates`` documents, MaxSim rescores only those (cheap:
  no search over every token vector).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from colmax.errors import InvalidInputError
from colmax.validation import check_positive_int

__all__ = [
    "MODES",
    "FusedHit",
    "Scored",
    "check_hybrid",
    "hybrid_search",
    "minmax_fusion",
    "reciprocal_rank_fusion",
]

Mode = Literal["rrf", "minmax", "rerank"]
#: The fusion modes :func:`hybrid_search` accepts.
MODES: tuple[str, ...] = ("rrf", "minmax", "rerank")
Scored = Sequence[tuple[str, float]]  # (id, score), best first


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], *, rrf_k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Fuse ranked id lists by reciprocal rank: ``sum_i w_i / (rrf_k + rank_i)``, ranks from 1.

    Ties keep the order in which ids first appear (first list first).

    Examples:
        >>> reciprocal_rank_fusion([["a", "b"], ["b", "c"]], rrf_k=1)
        [('b', 0.8333333333333333), ('a', 0.5), ('c', 0.3333333333333333)]
    """
    weights = _weights(weights, len(rankings))
    if isinstance(rrf_k, bool) or not isinstance(rrf_k, int) or rrf_k < 0:
        raise InvalidInputError(f"rrf_k must be an integer >= 0, got {rrf_k!r}")
    fused: dict[str, float] = {}
    for ranking, w in zip(rankings, weights):
        for rank, id_ in enumerate(ranking, start=1):
            fused[id_] = fused.get(id_, 0.0) + w / (rrf_k + rank)
    return _sorted(fused)


def minmax_fusion(
    results: Sequence[Scored], weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Fuse scored lists after scaling each to ``[0, 1]`` by its own min and max.

    A list whose scores are all equal scales to 1. An id missing from a list gets 0 there.

    Examples:
        >>> minmax_fusion([[("a", 20.0), ("b", 10.0)], [("b", 3.0), ("c", 1.0)]], [0.5, 0.5])
        [('a', 0.5), ('b', 0.5), ('c', 0.0)]
    """
    weights = _weights(weights, len(results))
    fused: dict[str, float] = {}
    for scored, w in zip(results, weights):
        if not scored:
            continue
        values = np.array([s for _, s in scored], dtype=np.float64)
        low, span = values.min(), values.max() - values.min()
        for (id_, _), v in zip(scored, values):
            norm = (v - low) / span if span > 0 else 1.0
            fused[id_] = fused.get(id_, 0.0) + w * float(norm)
        for id_, _ in scored:  # also register ids so ties keep first-appearance order
            fused.setdefault(id_, 0.0)
    return _sorted(fused)


@dataclass(frozen=True)
class FusedHit:
    """One fused result: the fused score and each side's own score and rank (0-based).

    ``late_*`` / ``bm25_*`` are ``None`` when that side did not return the document (for
    ``"rerank"`` the late score is the MaxSim rerank score).
    """

    id: str
    score: float
    rank: int
    late_score: float | None
    late_rank: int | None
    bm25_score: float | None
    bm25_rank: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def hybrid_search(
    k: int,
    *,
    bm25: Callable[[int], Scored],
    late: Callable[[int], Scored] | None = None,
    rerank: Callable[[list[str]], Scored] | None = None,
    mode: str = "rrf",
    candidates: int = 100,
    weight: float = 0.5,
    rrf_k: int = 60,
) -> list[FusedHit]:
    """Fuse BM25 with late interaction for one query.

    Args:
        k: results wanted (fewer when the retrievers return fewer).
        bm25: ``n -> [(id, score), ...]``, the query's best ``n`` BM25 hits, best first
            (documents sharing no term with the query left out).
        late: ``n -> [(id, score), ...]``, the best ``n`` MaxSim hits (modes ``"rrf"``,
            ``"minmax"``).
        rerank: ``ids -> [(id, score), ...]``, MaxSim scores of those documents (mode
            ``"rerank"``; any order).
        mode: ``"rrf"``, ``"minmax"`` or ``"rerank"``.
        candidates: hits taken from each side before fusing (at least ``k`` are taken).
        weight: weight of the late-interaction side in ``[0, 1]``; BM25 gets ``1 - weight``
            (for ``"rrf"`` both are scaled by 2 so 0.5 gives plain RRF).
        rrf_k: the RRF constant.

    Returns:
        Up to ``k`` :class:`FusedHit`, best first; ties keep late-interaction order first.

    Raises:
        InvalidInputError: bad ``k``, ``mode``, ``candidates``, ``weight``, or a callable the
            mode needs is missing.
    """
    k = check_positive_int(k)
    n = max(check_positive_int(candidates, "candidates"), k)
    if mode not in MODES:
        raise InvalidInputError(f"mode must be one of {MODES}, got {mode!r}")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
        raise InvalidInputError(f"weight must be a number in [0, 1], got {weight!r}")
    if mode == "rerank":
        if rerank is None:
            raise InvalidInputError('mode="rerank" needs rerank=... (MaxSim over given ids)')
        lexical = list(bm25(n))
        rescored = _sorted(dict(rerank([i for i, _ in lexical]))) if lexical else []
        return _hits(rescored[:k], late=rescored, bm25=lexical)
    if late is None:
        raise InvalidInputError(f"mode={mode!r} needs late=... (late-interaction search)")
    dense, lexical = list(late(n)), list(bm25(n))
    if mode == "rrf":
        fused = reciprocal_rank_fusion(
            [[i for i, _ in dense], [i for i, _ in lexical]],
            rrf_k=rrf_k,
            weights=[2 * weight, 2 * (1 - weight)],
        )
    else:
        fused = minmax_fusion([dense, lexical], [weight, 1 - weight])
    return _hits(fused[:k], late=dense, bm25=lexical)


def _weights(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0] * n
    out = list(weights)
    if len(out) != n or not all(
        isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in out
    ):
        raise InvalidInputError(f"weights must be {n} numbers >= 0, got {weights!r}")
    return [float(w) for w in out]


def _sorted(scores: dict[str, float]) -> list[tuple[str, float]]:
    # sorted() is stable: equal scores keep insertion (first-appearance) order.
    return sorted(scores.items(), key=lambda item: -item[1])


def _hits(fused: Scored, *, late: Scored, bm25: Scored) -> list[FusedHit]:
    late_at = {id_: (r, s) for r, (id_, s) in enumerate(late)}
    bm25_at = {id_: (r, s) for r, (id_, s) in enumerate(bm25)}
    out = []
    for rank, (id_, score) in enumerate(fused):
        lr, ls = late_at.get(id_, (None, None))
        br, bs = bm25_at.get(id_, (None, None))
        out.append(FusedHit(id_, float(score), rank, ls, lr, bs, br))
    return out


def check_hybrid(mode: Any, candidates: Any, weight: Any, *, text_query: bool) -> None:
    """Validate the hybrid options before any encoding work.

    Raises:
        InvalidInputError: unknown mode, bad ``candidates`` or ``weight``, a query given as
            vectors (BM25 needs text), or bm25s missing (names the ``hybrid`` extra).
    """
    if mode not in MODES:
        raise InvalidInputError(f"hybrid must be None or one of {list(MODES)}, got {mode!r}")
    check_positive_int(candidates, "candidates")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
        raise InvalidInputError(f"weight must be a number in [0, 1], got {weight!r}")
    if not text_query:
        raise InvalidInputError(
            "hybrid search needs a text query (BM25 scores words); query_embeddings cannot be "
            "used with hybrid=..."
        )
    try:
        import bm25s  # noqa: F401
    except ImportError as exc:
        raise InvalidInputError(
            f'hybrid={mode!r} needs the hybrid extra: pip install "colmax[hybrid]" ({exc})'
        ) from exc
