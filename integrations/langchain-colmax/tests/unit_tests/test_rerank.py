"""ColmaxRerank over a real engine (tiny random ColBERT model)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from langchain_colmax import ColmaxRerank
from langchain_core.documents import Document
from pydantic import ValidationError

from colmax import Engine, limits
from colmax.encoders.base import Encoder
from colmax.errors import InvalidInputError

QUERY = "what is the capital of france?"
TEXTS = [
    "the cat sat on the mat",
    "paris is the capital of france",
    "a dog ran in the house",
    "late interaction model for search",
    "the red car is big",
]


class TaggedDocument(Document):
    """A Document subclass with an extra field: the copies must keep both."""

    source: str = "web"


def candidates() -> list[Document]:
    return [
        Document(page_content=t, metadata={"pos": i, "nested": {"a": [1]}}, id=f"c{i}")
        for i, t in enumerate(TEXTS)
    ]


def test_reranks_with_an_engine_that_has_no_index(engine: Engine) -> None:
    assert len(engine) == 0
    docs = candidates()
    out = ColmaxRerank(engine=engine, top_n=None).compress_documents(docs, QUERY)
    expected = engine.rerank(QUERY, TEXTS)
    assert [d.page_content for d in out] == [h.text for h in expected]
    assert [d.metadata["relevance_score"] for d in out] == pytest.approx(
        [h.score for h in expected]
    )
    assert len(out) == len(docs)


def test_returns_copies_and_never_mutates_the_input(engine: Engine) -> None:
    docs = candidates()
    before = copy.deepcopy(docs)
    out = ColmaxRerank(engine=engine, top_n=3).compress_documents(docs, QUERY)
    assert docs == before
    assert all(o is not d for o in out for d in docs)
    assert all(o.metadata is not d.metadata for o in out for d in docs)
    for doc in out:
        original = docs[doc.metadata["pos"]]
        assert doc.id == original.id and doc.page_content == original.page_content
        assert {
            k: v for k, v in doc.metadata.items() if k != "relevance_score"
        } == original.metadata


def test_copies_keep_the_document_class_and_fields(engine: Engine) -> None:
    docs = [TaggedDocument(page_content=t, source=f"s{i}") for i, t in enumerate(TEXTS)]
    out = ColmaxRerank(engine=engine, top_n=None).compress_documents(docs, QUERY)
    assert all(type(d) is TaggedDocument for d in out)
    assert sorted(d.source for d in out) == [f"s{i}" for i in range(len(TEXTS))]  # type: ignore[attr-defined]


def test_top_n(engine: Engine) -> None:
    docs = candidates()
    assert len(ColmaxRerank(engine=engine).compress_documents(docs, QUERY)) == 3  # default
    assert len(ColmaxRerank(engine=engine, top_n=1).compress_documents(docs, QUERY)) == 1
    assert len(ColmaxRerank(engine=engine, top_n=50).compress_documents(docs, QUERY)) == 5
    with pytest.raises(ValidationError):
        ColmaxRerank(engine=engine, top_n=0)


def test_empty_in_empty_out(engine: Engine) -> None:
    assert ColmaxRerank(engine=engine).compress_documents([], QUERY) == []


def test_empty_candidates_are_dropped(engine: Engine) -> None:
    docs = [Document(page_content="  "), *candidates()[:2], Document(page_content="")]
    out = ColmaxRerank(engine=engine, top_n=None).compress_documents(docs, QUERY)
    assert sorted(d.id for d in out) == ["c0", "c1"]  # type: ignore[type-var]
    only_empty = [Document(page_content=""), Document(page_content=" \n")]
    assert ColmaxRerank(engine=engine).compress_documents(only_empty, QUERY) == []


def test_empty_query_raises(engine: Engine) -> None:
    with pytest.raises(InvalidInputError):
        ColmaxRerank(engine=engine).compress_documents(candidates(), "   ")


def test_candidates_without_ids_or_with_duplicate_or_odd_ids(engine: Engine) -> None:
    docs = [
        Document(page_content=TEXTS[0]),
        Document(page_content=TEXTS[1], id="same"),
        Document(page_content=TEXTS[2], id="same"),
        Document(page_content=TEXTS[3], id="x" * 5000),
        Document(page_content=TEXTS[4], id=""),
    ]
    out = ColmaxRerank(engine=engine, top_n=None).compress_documents(docs, QUERY)
    assert sorted(d.page_content for d in out) == sorted(TEXTS)
    assert sorted((d.id or "") for d in out) == sorted((d.id or "") for d in docs)


@pytest.mark.parametrize("top_n", [None, 3])
def test_more_candidates_than_one_engine_call_takes(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, top_n: int | None
) -> None:
    # Engine.rerank refuses more than colmax.limits.MAX_RERANK_CANDIDATES (1,000) at once:
    # the reranker scores them in batches and keeps the best overall. A limit of 2 makes
    # three batches of the five candidates (an empty one in between is dropped first).
    expected = [(h.text, h.score) for h in engine.rerank(QUERY, TEXTS)][:top_n]
    monkeypatch.setattr(limits, "MAX_RERANK_CANDIDATES", 2)
    with pytest.raises(InvalidInputError, match="at most 2 candidates"):
        engine.rerank(QUERY, TEXTS)
    docs = candidates()
    docs.insert(1, Document(page_content=" ", id="empty"))
    reranker = ColmaxRerank(engine=engine, top_n=top_n, explain=True)
    out = reranker.compress_documents(docs, QUERY)
    assert [d.page_content for d in out] == [text for text, _ in expected]
    assert [d.metadata["relevance_score"] for d in out] == pytest.approx(
        [score for _, score in expected], abs=1e-5
    )
    assert all(TEXTS[d.metadata["pos"]] == d.page_content for d in out)  # each its own input
    assert all("colmax_explanation" in d.metadata for d in out)


def test_indexed_candidates_reuse_the_stored_vectors(tiny_encoder: Encoder) -> None:
    """A candidate whose id and text are in the index is scored with its stored vectors.

    The stored vectors here are deliberately *not* what the encoder makes for the text, so
    the score tells which vectors were used.
    """
    engine = Engine(tiny_encoder)
    rng = np.random.default_rng(0)
    stored = [rng.normal(size=(6, engine.dim)).astype(np.float32) for _ in TEXTS[:2]]
    engine.add(TEXTS[:2], ids=["c0", "c1"], embeddings=stored)
    docs = candidates()[:3]
    scores = {
        d.id: d.metadata["relevance_score"]
        for d in ColmaxRerank(engine=engine, top_n=None).compress_documents(docs, QUERY)
    }
    from_store = {h.id: h.score for h in engine.rerank(QUERY, ids=["c0", "c1"])}
    encoded = {h.text: h.score for h in engine.rerank(QUERY, TEXTS[:3])}
    assert scores["c0"] == pytest.approx(from_store["c0"])
    assert scores["c1"] == pytest.approx(from_store["c1"])
    assert scores["c0"] != pytest.approx(encoded[TEXTS[0]])
    assert scores["c2"] == pytest.approx(encoded[TEXTS[2]])  # not indexed: encoded

    # Same id, other text: encoded, not taken from the index.
    changed = [Document(page_content=TEXTS[2], id="c0")]
    out = ColmaxRerank(engine=engine).compress_documents(changed, QUERY)
    assert out[0].metadata["relevance_score"] == pytest.approx(encoded[TEXTS[2]])

    # use_stored_vectors=False encodes every candidate.
    fresh = ColmaxRerank(engine=engine, top_n=None, use_stored_vectors=False)
    rescored = {d.id: d.metadata["relevance_score"] for d in fresh.compress_documents(docs, QUERY)}
    assert rescored["c0"] == pytest.approx(encoded[TEXTS[0]])


async def test_acompress_documents(engine: Engine) -> None:
    docs = candidates()
    reranker = ColmaxRerank(engine=engine, top_n=2)
    assert await reranker.acompress_documents(docs, QUERY) == reranker.compress_documents(
        docs, QUERY
    )
