"""BM25 top-100 reranked by ColmaxRerank on Cranfield (every second of the 225 graded
queries), with MiniLM.

The candidates come from ``llama-index-retrievers-bm25`` over the same texts the session's
shared index holds (root ``conftest.py``), so the reranker scores them with the stored vectors
and only the queries are encoded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.postprocessor.colmax_rerank import ColmaxRerank

from colmax import Engine
from colmax.beir import BeirDataset, load_beir

ir_measures = pytest.importorskip("ir_measures")
bm25 = pytest.importorskip("llama_index.retrievers.bm25")

NDCG10 = ir_measures.nDCG @ 10
#: Every second judged query (113): each is a BM25 search and a rerank of 100 candidates.
EVERY = 2


def _ndcg(data: BeirDataset, run: dict[str, dict[str, float]]) -> float:
    return float(ir_measures.calc_aggregate([NDCG10], data.qrels, run)[NDCG10])


@pytest.fixture(scope="module")
def data(cranfield_dir: Path) -> BeirDataset:
    return load_beir(cranfield_dir).every_nth_judged(EVERY)


@pytest.fixture(scope="module")
def candidates(data: BeirDataset) -> dict[str, list[NodeWithScore]]:
    """BM25 (English stemmer and stopwords, the retriever's defaults) top-100 per query."""
    nodes = [TextNode(id_=doc_id, text=text) for doc_id, text in data.corpus.items() if text]
    retriever = bm25.BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=100)
    return {qid: retriever.retrieve(text) for qid, text in data.queries.items()}


def test_reranked_bm25_beats_bm25(
    data: BeirDataset, candidates: dict[str, list[NodeWithScore]], cranfield_index: Path
) -> None:
    reranker = ColmaxRerank(top_n=10, engine=Engine.load(cranfield_index, device="cpu"))
    queries = data.queries
    bm25_run = {q: {n.node.node_id: float(n.score) for n in c} for q, c in candidates.items()}
    reranked_run = {
        qid: {
            n.node.node_id: float(n.score)
            for n in reranker.postprocess_nodes(cands, query_str=queries[qid])
        }
        for qid, cands in candidates.items()
    }
    assert all(len(r) == 10 for r in reranked_run.values())
    bm25_ndcg, reranked_ndcg = _ndcg(data, bm25_run), _ndcg(data, reranked_run)
    print(
        f"Cranfield nDCG@10: BM25 {bm25_ndcg:.4f}, BM25 top-100 + ColmaxRerank {reranked_ndcg:.4f}"
    )
    # Measured: 0.3754 against 0.3718 on these 113 queries (all 225: 0.3803 against 0.3730).
    assert reranked_ndcg > bm25_ndcg


def test_stored_and_freshly_encoded_candidates_score_alike(
    data: BeirDataset,
    candidates: dict[str, list[NodeWithScore]],
    cranfield_index: Path,
    minilm_path: Path,
) -> None:
    # The same candidates through an engine with nothing indexed: every text is encoded now.
    stored = ColmaxRerank(top_n=20, engine=Engine.load(cranfield_index, device="cpu"))
    fresh = ColmaxRerank(top_n=20, model=minilm_path, device="cpu")
    qid = next(iter(candidates))
    query, cands = data.judged_queries()[qid], candidates[qid][:20]
    a = stored.postprocess_nodes(cands, query_str=query)
    b = fresh.postprocess_nodes(cands, query_str=query)
    assert [n.node.node_id for n in a][:5] == [n.node.node_id for n in b][:5]
    np.testing.assert_allclose(  # stored vectors are float16
        sorted(n.score for n in a), sorted(n.score for n in b), atol=2e-2
    )
