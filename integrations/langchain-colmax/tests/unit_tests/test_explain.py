"""explain=True through ColmaxRetriever, ColmaxRerank and ColmaxVectorStore (tiny real model)."""

from __future__ import annotations

import json

import pytest
from langchain_colmax import ColmaxRerank, ColmaxRetriever, ColmaxVectorStore
from langchain_core.documents import Document

from colmax import Engine

QUERY = "what is the capital of france?"
TEXTS = ["the cat sat on the mat", "paris is the capital of france", "a big red car"]
IDS = ["cat", "paris", "car"]
KEY = "colmax_explanation"


@pytest.fixture
def filled(engine: Engine) -> Engine:
    engine.add(TEXTS, ids=IDS, metadatas=[{"n": i} for i in range(3)])
    return engine


def _check(explanation: dict, doc: Document, score: float, atol: float = 5e-3) -> None:
    json.dumps(explanation)  # JSON-ready
    assert explanation["score"] == pytest.approx(score, abs=atol)
    assert explanation["query"] == QUERY
    for m in explanation["matches"]:
        if m["doc_span"] is not None:
            start, end = m["doc_span"]
            assert doc.page_content[start:end] == m["doc_token"]


def test_retriever_adds_explanations(filled: Engine) -> None:
    docs = ColmaxRetriever(engine=filled, k=3, explain=True).invoke(QUERY)
    assert len(docs) == 3
    for doc in docs:
        assert doc.metadata[KEY]["id"] == doc.id
        _check(doc.metadata[KEY], doc, doc.metadata["score"])
        assert doc.metadata[KEY] == filled.explain(QUERY, doc.id).to_dict()
    plain = ColmaxRetriever(engine=filled, k=3).invoke(QUERY)
    assert [d.id for d in plain] == [d.id for d in docs]
    assert all(KEY not in d.metadata for d in plain)


def test_rerank_adds_explanations_without_touching_inputs(filled: Engine) -> None:
    inputs = [Document(page_content=t, metadata={"i": i}, id=f"x{i}") for i, t in enumerate(TEXTS)]
    out = ColmaxRerank(engine=filled, top_n=2, explain=True).compress_documents(inputs, QUERY)
    assert len(out) == 2
    for doc in out:
        _check(doc.metadata[KEY], doc, doc.metadata["relevance_score"], atol=1e-3)
    assert all(KEY not in d.metadata and set(d.metadata) == {"i"} for d in inputs)
    plain = ColmaxRerank(engine=filled, top_n=2).compress_documents(inputs, QUERY)
    assert [d.id for d in plain] == [d.id for d in out]
    assert all(KEY not in d.metadata for d in plain)


def test_vector_store_explains_per_store_or_per_call(filled: Engine) -> None:
    store = ColmaxVectorStore(filled)
    assert all(KEY not in d.metadata for d in store.similarity_search(QUERY, k=3))
    pairs = store.similarity_search_with_score(QUERY, k=3, explain=True)
    for doc, score in pairs:
        _check(doc.metadata[KEY], doc, score)
        assert doc.metadata["n"] == IDS.index(doc.id)  # the stored metadata is still there
    explaining = ColmaxVectorStore(filled, explain=True)
    docs = explaining.similarity_search(QUERY, k=1)
    assert KEY in docs[0].metadata
    assert KEY not in explaining.similarity_search(QUERY, k=1, explain=False)[0].metadata


def test_vector_store_explains_by_vector_and_with_relevance_scores(filled: Engine) -> None:
    # similarity_search_by_vector ignored the store's explain; the relevance-score search
    # refused explain= (TypeError).
    explaining = ColmaxVectorStore(filled, explain=True)
    query_vectors = filled.encoder.encode_queries([QUERY])[0].numpy()
    by_vector = explaining.similarity_search_by_vector(query_vectors, k=2)
    assert [d.id for d in by_vector] == [d.id for d in explaining.similarity_search(QUERY, k=2)]
    assert all(d.metadata[KEY]["id"] == d.id for d in by_vector)
    assert (
        KEY
        not in explaining.similarity_search_by_vector(query_vectors, k=1, explain=False)[0].metadata
    )
    pairs = ColmaxVectorStore(filled).similarity_search_with_relevance_scores(
        QUERY, k=2, explain=True
    )
    for doc, relevance in pairs:
        _check(doc.metadata[KEY], doc, doc.metadata[KEY]["score"])
        n_query = len(doc.metadata[KEY]["matches"])
        assert relevance == pytest.approx(max(0.0, doc.metadata[KEY]["score"] / n_query), abs=5e-3)
