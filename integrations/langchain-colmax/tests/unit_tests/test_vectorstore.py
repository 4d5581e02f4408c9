"""ColmaxVectorStore beyond the standard suite (tiny random ColBERT model, real engines)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from langchain_colmax import ColmaxVectorStore
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.structured_query import Comparator, Comparison

from colmax import Engine
from colmax.encoders.base import Encoder
from colmax.errors import EmptyTextError, FilterError

TEXTS = [
    "the cat sat on the mat",
    "a dog ran in the house",
    "paris is the capital of france",
    "late interaction model for search",
]
IDS = ["a", "b", "c", "d"]
METAS = [{"year": 2020 + i, "tags": ["x"] if i % 2 else ["y"]} for i in range(4)]
QUERY = "what is the capital of france?"


@pytest.fixture
def store(engine: Engine) -> ColmaxVectorStore:
    vs = ColmaxVectorStore(engine)
    vs.add_texts(TEXTS, METAS, ids=IDS)
    return vs


def test_scores_are_the_engines_maxsim(store: ColmaxVectorStore) -> None:
    pairs = store.similarity_search_with_score(QUERY, k=4)
    hits = store.engine.search(QUERY, k=4)
    assert [(d.id, s) for d, s in pairs] == [(h.id, h.score) for h in hits]  # type: ignore[union-attr]
    assert [d.metadata for d, _ in pairs] == [h.metadata for h in hits]  # type: ignore[union-attr]
    assert [d.id for d in store.similarity_search(QUERY, k=2)] == [d.id for d, _ in pairs[:2]]


def test_dict_and_structured_filters(store: ColmaxVectorStore) -> None:
    docs = store.similarity_search(QUERY, k=10, filter={"year": {"$gte": 2022}})
    assert {d.id for d in docs} == {"c", "d"}
    docs = store.similarity_search(QUERY, k=10, filter={"tags": {"$contains": "x"}})
    assert {d.id for d in docs} == {"b", "d"}
    structured = Comparison(comparator=Comparator.IN, attribute="year", value=[2020, 2023])
    assert {d.id for d in store.similarity_search(QUERY, k=10, filter=structured)} == {"a", "d"}
    with pytest.raises(FilterError):
        store.similarity_search(QUERY, filter={"year": {"$near": 1}})
    with pytest.raises(TypeError, match="filter must be a dict"):
        store.similarity_search(QUERY, filter=lambda d: True)  # type: ignore[arg-type]


def test_relevance_scores_are_mean_maxsim(store: ColmaxVectorStore) -> None:
    pairs = store.similarity_search_with_relevance_scores(QUERY, k=4)
    raw = dict((d.id, s) for d, s in store.similarity_search_with_score(QUERY, k=4))
    n_q = store.engine.encoder.settings.query_length  # type: ignore[union-attr]
    for doc, rel in pairs:
        assert rel == pytest.approx(raw[doc.id] / n_q, abs=1e-5)
        assert 0.0 <= rel <= 1.0
    best = pairs[0][1]
    kept = store.similarity_search_with_relevance_scores(QUERY, k=4, score_threshold=best)
    assert [d.id for d, _ in kept] == [pairs[0][0].id]


def test_relevance_scores_stay_in_langchains_range(engine: Engine) -> None:
    """A document whose every vector points away from the query has a negative mean cosine;
    LangChain wants relevance in [0, 1] and warned about it."""
    query = engine.encoder.encode_queries([QUERY])[0].numpy()  # type: ignore[union-attr]
    away = -query.mean(axis=0, keepdims=True)
    engine.add(["unrelated"], ids=["away"], embeddings=[away / np.linalg.norm(away)])
    engine.add([TEXTS[0]], ids=["near"])
    store = ColmaxVectorStore(engine)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # LangChain's "Relevance scores must be between 0 and 1"
        pairs = dict((d.id, s) for d, s in store.similarity_search_with_relevance_scores(QUERY))
    assert pairs["away"] == 0.0 and 0.0 < pairs["near"] <= 1.0


def test_as_retriever(store: ColmaxVectorStore) -> None:
    retriever = store.as_retriever(search_kwargs={"k": 2, "filter": {"year": {"$lt": 2022}}})
    assert {d.id for d in retriever.invoke(QUERY)} == {"a", "b"}
    assert len(store.as_retriever().invoke(QUERY, k=1)) == 1
    threshold = store.as_retriever(
        search_type="similarity_score_threshold", search_kwargs={"score_threshold": -1.0}
    )
    assert len(threshold.invoke(QUERY)) == 4


def test_get_by_ids_keeps_order_and_skips_unknown(store: ColmaxVectorStore) -> None:
    docs = store.get_by_ids(["c", "zzz", "a", "c"])
    assert docs == [
        Document(page_content=TEXTS[2], metadata=METAS[2], id="c"),
        Document(page_content=TEXTS[0], metadata=METAS[0], id="a"),
    ]


@pytest.mark.parametrize("overlap", [0, 3])
def test_get_by_ids_rebuilds_chunked_documents(tiny_encoder: Encoder, overlap: int) -> None:
    # A chunking engine stores "L" as "L#0", "L#1", ...: add_texts and the searches name it
    # "L", so get_by_ids must find it under that id, whole (overlap once), with its metadata.
    long = "the cat sat on the mat and the dog ran in the house with the red car and the blue car"
    with Engine(tiny_encoder, chunk_tokens=8, chunk_overlap=overlap) as engine:
        store = ColmaxVectorStore(engine)
        assert store.add_texts([long, TEXTS[2]], [{"y": 1}, {"y": 2}], ids=["L", "P"]) == ["L", "P"]
        engine.set_chunking(None)
        store.add_texts([TEXTS[0]], [{"y": 3}], ids=["W"])  # stored whole
        chunks = engine.get([i for i in engine.ids() if i.startswith("L#")])
        assert len(chunks) > 2
        overlapping = chunks[1].metadata["char_start"] < chunks[0].metadata["char_end"]
        assert overlapping == (overlap > 0)
        docs = store.get_by_ids(["P", "zzz", "L", "W", "L", "L#1"])
    assert docs[:3] == [
        Document(page_content=TEXTS[2], metadata={"y": 2}, id="P"),
        Document(page_content=long, metadata={"y": 1}, id="L"),
        Document(page_content=TEXTS[0], metadata={"y": 3}, id="W"),
    ]
    assert docs[3].id == "L#1"  # a chunk asked for by its own id is that chunk
    assert docs[3].page_content == chunks[1].text
    assert len(docs) == 4


def test_delete(store: ColmaxVectorStore) -> None:
    assert store.delete(["a", "nope", "a"]) is True
    assert store.engine.ids() == ["b", "c", "d"]
    assert store.delete() is True  # None: everything (the VectorStore contract)
    assert len(store.engine) == 0
    assert store.similarity_search(QUERY) == []


def test_add_texts_errors_leave_the_store_unchanged(store: ColmaxVectorStore) -> None:
    with pytest.raises(EmptyTextError):
        store.add_texts(["fine", "  "], ids=["e", "f"])
    with pytest.raises(ValueError, match="JSON"):
        store.add_texts(["fine"], [{"when": object()}])
    with pytest.raises(TypeError, match="unexpected keyword"):
        store.add_texts(["fine"], colour="red")
    assert store.engine.ids() == IDS


def test_add_documents_fills_missing_ids(engine: Engine) -> None:
    store = ColmaxVectorStore(engine)
    ids = store.add_documents(
        [Document(page_content=TEXTS[0], id="x"), Document(page_content=TEXTS[1])]
    )
    assert ids[0] == "x" and len(ids[1]) == 36
    assert store.engine.ids() == ids


def test_from_texts_and_from_documents(tiny_colbert_model: Path, engine: Engine) -> None:
    store = ColmaxVectorStore.from_texts(TEXTS, metadatas=METAS, ids=IDS, model=tiny_colbert_model)
    assert store.engine.ids() == IDS and store.embeddings is None
    docs = [Document(page_content=t, metadata=m, id=i) for t, m, i in zip(TEXTS, METAS, IDS)]
    other = ColmaxVectorStore.from_documents(docs, engine=engine)
    assert other.engine is engine
    assert other.get_by_ids(IDS) == docs


def test_from_texts_argument_errors(tiny_colbert_model: Path, engine: Engine) -> None:
    with pytest.raises(TypeError, match="does not use LangChain Embeddings"):
        ColmaxVectorStore.from_texts(TEXTS, DeterministicFakeEmbedding(size=4))
    with pytest.raises(TypeError, match="exactly one"):
        ColmaxVectorStore.from_texts(TEXTS)
    with pytest.raises(TypeError, match="exactly one"):
        ColmaxVectorStore.from_texts(TEXTS, model=tiny_colbert_model, engine=engine)
    with pytest.raises(TypeError, match="expected a colmax Engine"):
        ColmaxVectorStore(DeterministicFakeEmbedding(size=4))  # type: ignore[arg-type]


def test_search_by_precomputed_vectors_without_an_encoder() -> None:
    store = ColmaxVectorStore(Engine(dim=4))
    eye = np.eye(4, dtype=np.float32)
    store.engine.add(
        ["first two axes", "last two axes"], ids=["p", "q"], embeddings=[eye[:2], eye[2:]]
    )
    assert [d.id for d in store.similarity_search_by_vector(eye[3].tolist(), k=1)] == ["q"]
    assert [d.id for d in store.similarity_search_by_vector(eye[:2], k=2)] == ["p", "q"]


async def test_async_variants(store: ColmaxVectorStore) -> None:
    assert await store.asimilarity_search(QUERY, k=2) == store.similarity_search(QUERY, k=2)
    assert await store.asimilarity_search_with_score(QUERY, k=2) == (
        store.similarity_search_with_score(QUERY, k=2)
    )
    rel = await store.asimilarity_search_with_relevance_scores(QUERY, k=2)
    assert all(math.isfinite(s) for _, s in rel)
    assert await store.aget_by_ids(["b"]) == store.get_by_ids(["b"])
    await store.aadd_texts(["hello world"], ids=["e"])
    await store.adelete(["a"])
    assert store.engine.ids() == ["b", "c", "d", "e"]
    made = await ColmaxVectorStore.afrom_texts(TEXTS[:1], engine=Engine(store.engine.encoder))
    assert len(made.engine) == 1
    docs = [Document(page_content=TEXTS[1], id="z")]
    made = await ColmaxVectorStore.afrom_documents(docs, engine=Engine(store.engine.encoder))
    assert made.engine.ids() == ["z"]
