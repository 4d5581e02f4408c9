"""ColmaxRetriever on Cranfield (1,398 indexed documents, graded queries) with MiniLM.

Uses the session's shared index (root ``conftest.py``): nothing is re-encoded here but the
queries. The retriever must return what the engine returns (same ids in the same order, same
scores), so it reaches the engine's nDCG@10 (0.378 on this data,
``tests/integration/test_cranfield.py``); the nDCG of its own run is checked too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from llama_index.retrievers.colmax import ColmaxRetriever

from colmax import Engine
from colmax.beir import load_beir

ir_measures = pytest.importorskip("ir_measures")

#: Every third judged query (75 of 225): each retrieve() is one exact search of the corpus.
EVERY = 3


def test_colmax_retriever_returns_what_the_engine_returns(
    cranfield_index: Path, cranfield_dir: Path
) -> None:
    data = load_beir(cranfield_dir).every_nth_judged(EVERY)
    queries = data.queries
    run = {}
    with Engine.load(cranfield_index, device="cpu") as engine:
        retriever = ColmaxRetriever(engine, similarity_top_k=100)
        expected = engine.search(list(queries.values()), k=100)
        for (qid, text), want in zip(queries.items(), expected):
            got = retriever.retrieve(text)
            assert [r.node.node_id for r in got] == [h.id for h in want], qid  # type: ignore[union-attr]
            np.testing.assert_allclose(
                [r.score for r in got],
                [h.score for h in want],  # type: ignore[union-attr]
                rtol=1e-6,
            )
            assert got[0].node.get_content() == want[0].text  # type: ignore[index]
            run[qid] = {r.node.node_id: float(r.score) for r in got}  # type: ignore[arg-type]
    ndcg = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], data.qrels, run)[
        ir_measures.nDCG @ 10
    ]
    print(f"Cranfield nDCG@10 on {len(queries)} queries, ColmaxRetriever (MiniLM): {ndcg:.4f}")
    assert ndcg >= 0.35  # 0.357 measured on these 75 queries
