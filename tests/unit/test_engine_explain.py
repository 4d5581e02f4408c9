"""Explanations through the engine: search/rerank(explain=True), Engine.explain, chunk hits."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from colmax import Engine, Hit
from colmax.chunking import collapse_hits
from colmax.errors import InvalidInputError, NoEncoderError, UnknownIdError
from colmax.explain import Explanation, explain

TEXTS = {
    "cat": "the cat sat on the mat",
    "paris": "paris is the capital of france",
    "car": "a big red car",
    "dog": "the dog ran to the house",
}
QUERY = "what is the capital of france"
# Scores use float16 copies of the vectors and another kernel than the explanation's matmul.
FP16_ATOL = 5e-3


@pytest.fixture(params=["tiny_colbert_model", "tiny_pylate_model", "tiny_hf_model"])
def engine(request: pytest.FixtureRequest) -> Engine:
    engine = Engine.from_pretrained(request.getfixturevalue(request.param), device="cpu")
    engine.add(list(TEXTS.values()), ids=list(TEXTS))
    return engine


def _check_consistent(e: Explanation, text: str) -> None:
    assert e.score == pytest.approx(sum(m.similarity for m in e.matches), abs=1e-4)
    assert e.text == text
    for m in e.matches:
        if m.doc_span is not None:
            assert text[m.doc_span[0] : m.doc_span[1]] == m.doc_token


def test_search_explanations_score_what_the_search_scored(engine: Engine) -> None:
    hits = engine.search(QUERY, k=4, explain=True)
    assert len(hits) == 4
    for hit in hits:
        e = hit.explanation
        assert isinstance(e, Explanation)
        assert e.id == hit.id and e.query == QUERY
        assert e.score == pytest.approx(hit.score, abs=FP16_ATOL)
        _check_consistent(e, TEXTS[hit.id])
        assert len(e.matches) == engine.encoder.encode_queries([QUERY])[0].shape[0]
    # The same ranking and scores as without explanations.
    plain = engine.search(QUERY, k=4)
    assert [h.id for h in plain] == [h.id for h in hits]
    assert [h.score for h in plain] == [h.score for h in hits]
    assert all(h.explanation is None for h in plain)


def test_a_list_of_queries_explains_each_with_its_own_query(engine: Engine) -> None:
    queries = [QUERY, "a red car"]
    results = engine.search(queries, k=2, explain=True)
    for query, hits in zip(queries, results):
        for hit in hits:
            assert hit.explanation.query == query  # type: ignore[union-attr]
            assert hit.explanation.score == pytest.approx(hit.score, abs=FP16_ATOL)  # type: ignore[union-attr]


def test_engine_explain_matches_the_search_explanation(engine: Engine) -> None:
    hit = engine.search(QUERY, k=1, explain=True)[0]
    e = engine.explain(QUERY, hit.id, max_passages=2)
    assert e.id == hit.id
    assert e.score == pytest.approx(hit.score, abs=FP16_ATOL)
    assert [m.doc_position for m in e.matches] == [m.doc_position for m in hit.explanation.matches]  # type: ignore[union-attr]
    # Stored vectors are explained (float16 copies), not a fresh encoding: equal to the
    # explanation of the float16-rounded encoded vectors.
    fresh = engine.encoder.encode_documents([TEXTS[hit.id]])[0].numpy()
    rounded = explain(
        engine.encoder, QUERY, TEXTS[hit.id], document_vectors=fresh.astype(np.float16)
    )
    assert e.score == pytest.approx(rounded.score, abs=1e-4)


def test_rerank_explanations(engine: Engine) -> None:
    candidates = ["paris is the capital of france", "a big red car", "the cat sat on the mat"]
    hits = engine.rerank(QUERY, candidates, k=2, explain=True)
    assert len(hits) == 2
    for hit in hits:
        e = hit.explanation
        assert e is not None and e.id == hit.id
        # Freshly encoded candidates: the very vectors scored.
        assert e.score == pytest.approx(hit.score, abs=1e-3)
        _check_consistent(e, candidates[int(hit.id)])
    by_id = engine.rerank(QUERY, ids=["car", "paris"], explain=True)
    for hit in by_id:  # stored float16 copies
        assert hit.explanation.score == pytest.approx(hit.score, abs=FP16_ATOL)  # type: ignore[union-attr]
        _check_consistent(hit.explanation, TEXTS[hit.id])  # type: ignore[arg-type]
    assert all(h.explanation is None for h in engine.rerank(QUERY, candidates))


def test_explain_errors(engine: Engine) -> None:
    with pytest.raises(UnknownIdError):
        engine.explain(QUERY, "nope")
    with pytest.raises(InvalidInputError, match="doc_id"):
        engine.explain(QUERY, 3)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="one query"):
        engine.explain([QUERY], "cat")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        engine.explain("", "cat")
    with pytest.raises(InvalidInputError, match="max_passages"):
        engine.explain(QUERY, "cat", max_passages=-1)
    with pytest.raises(InvalidInputError, match="explain must be"):
        engine.search(QUERY, explain="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="explain must be"):
        engine.rerank(QUERY, ["x"], explain=1)  # type: ignore[arg-type]


def test_vectors_only_engine_explains_by_row(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    docs = [rng.normal(size=(n, 8)).astype(np.float32) for n in (3, 5, 4)]
    engine = Engine(dim=8, path=tmp_path / "idx")
    engine.add(embeddings=docs, ids=["a", "b", "c"])
    q = rng.normal(size=(4, 8)).astype(np.float32)
    hits = engine.search(query_embeddings=q, k=3, explain=True)
    for hit in hits:
        e = hit.explanation
        assert e is not None and e.id == hit.id and e.query == ""
        assert e.score == pytest.approx(hit.score, abs=FP16_ATOL)
        assert all(m.doc_span is None for m in e.matches) and e.passages == ()
    e = engine.explain(None, "b", query_embedding=q)
    assert e.score == pytest.approx(next(h.score for h in hits if h.id == "b"), abs=FP16_ATOL)
    with pytest.raises(NoEncoderError):
        engine.explain("text query", "b")


def test_own_chunk_id_metadata_does_not_redirect_the_explanation() -> None:
    # A document stored whole with a "chunk_id" key of its own (common in RAG metadata) was
    # explained as the document that key named: search, rerank(ids) and explain.
    rng = np.random.default_rng(1)
    docs = [rng.normal(size=(n, 8)).astype(np.float32) for n in (3, 4)]
    engine = Engine(dim=8)
    engine.add(embeddings=docs, ids=["a", "b"], metadatas=[{"chunk_id": "b"}, {"chunk_id": 7}])
    q = rng.normal(size=(2, 8)).astype(np.float32)
    hits = engine.search(query_embeddings=q, k=2, explain=True)
    hits += engine.rerank(None, ids=["a", "b"], query_embedding=q, explain=True)
    for hit in hits:
        assert hit.explanation is not None and hit.explanation.id == hit.id
        assert hit.explanation.score == pytest.approx(hit.score, abs=FP16_ATOL)
    assert engine.explain(None, "a", query_embedding=q).id == "a"


def test_hit_stays_positional_and_defaults_to_no_extras() -> None:
    hit = Hit("a", 1.0, "t", {}, 0)
    assert hit.explanation is None and hit.scores is None
    assert hit == Hit(id="a", score=1.0, text="t", metadata={}, rank=0)


def test_chunk_hits_keep_the_best_chunk_explanation(tiny_colbert_model: Path) -> None:
    engine = Engine.from_pretrained(tiny_colbert_model, device="cpu", chunk_tokens=12)
    long_text = "the cat sat on the mat. " * 6 + "paris is the capital of france. " * 2
    engine.add([long_text, TEXTS["car"]], ids=["long", "car"])
    parents = engine.search(QUERY, k=2, explain=True)
    assert {h.id for h in parents} == {"long", "car"}
    for hit in parents:
        e = hit.explanation
        assert e is not None
        stored = hit.metadata.get("chunk_id", hit.id)
        assert e.id == stored and e.text == hit.text
        assert e.score == pytest.approx(hit.score, abs=FP16_ATOL)
    plain = engine.search(QUERY, k=2)
    assert [h.id for h in plain] == [h.id for h in parents]
    assert all(h.explanation is None for h in plain)
    # collapse_hits carries explanations and hybrid scores over.
    chunks = engine.search(QUERY, k=10, explain=True, group_chunks=False)
    tagged = [replace(h, scores={"late": h.score}) for h in chunks]
    for hit in collapse_hits(tagged):
        assert hit.explanation is not None and hit.scores is not None
