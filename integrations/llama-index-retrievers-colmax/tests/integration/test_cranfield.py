"""ColmaxRetriever on Cranfield (1,398 indexed documents, 225 graded queries) with MiniLM.

Uses the session's shared index (root ``conftest.py``): nothing is re-encoded here but the
queries.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.retrievers.colmax import ColmaxRetriever

from colmax import Engine
from colmax.beir import load_beir

ir_measures = pytest.importorskip("ir_measures")


def test_colmax_retriever_reaches_the_engine_figure(
    cranfield_index: Path, cranfield_dir: Path
) -> None:
    data = load_beir(cranfield_dir)
    retriever = ColmaxRetriever(Engine.load(cranfield_index, device="cpu"), similarity_top_k=100)
    run = {
        qid: {r.node.node_id: float(r.score) for r in retriever.retrieve(text)}
        for qid, text in data.judged_queries().items()
    }
    ndcg = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], data.qrels, run)[
        ir_measures.nDCG @ 10
    ]
    print(f"Cranfield nDCG@10, ColmaxRetriever (MiniLM): {ndcg:.4f}")
    # The engine alone measures 0.378 on this data (tests/integration/test_cranfield.py).
    assert ndcg >= 0.37
