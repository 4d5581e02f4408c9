"""Retrieval quality of an engine on labelled data (nDCG@10, Recall@100, MRR@10).

Metrics come from ``ir-measures`` (the TREC reference implementations), installed with the
``eval`` extra.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from colmax.beir import BeirDataset
    from colmax.engine import Engine

__all__ = ["EvalResult", "evaluate"]


@dataclass
class EvalResult:
    metrics: dict[str, float]
    n_queries: int
    seconds: float
    run: dict[str, dict[str, float]] = field(repr=False, default_factory=dict)


def evaluate(
    engine: Engine, data: BeirDataset, *, k: int = 100, batch_size: int = 32
) -> EvalResult:
    """Search every judged query and score the run against the qrels."""
    try:
        import ir_measures
        from ir_measures import MRR, R, nDCG
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('evaluation needs ir-measures: pip install "colmax[eval]"') from exc
    queries = data.judged_queries()
    qids = list(queries)
    start = time.perf_counter()
    run: dict[str, dict[str, float]] = {}
    for i in range(0, len(qids), batch_size):
        batch = qids[i : i + batch_size]
        results: Any = engine.search([queries[q] for q in batch], k=k)
        for qid, hits in zip(batch, results):
            run[qid] = {h.id: h.score for h in hits}
    seconds = time.perf_counter() - start
    measures = [nDCG @ 10, R @ 100, MRR @ 10]
    agg = ir_measures.calc_aggregate(measures, data.qrels, run)
    return EvalResult({str(m): float(v) for m, v in agg.items()}, len(qids), seconds, run)
