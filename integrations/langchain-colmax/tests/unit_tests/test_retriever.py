"""ColmaxRetriever over a real engine (tiny random ColBERT model)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_colmax import ColmaxRetriever
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda
from langchain_core.structured_query import Comparator, Comparison
from pydantic import ValidationError

from colmax import Engine
from colmax.encoders.base import Encoder

TEXTS = [
    "the cat sat on the mat",
    "a dog ran in the house",
    "paris is the capital of france",
    "late interaction model for search",
    "the red car is big",
    "hello world",
]
IDS = [f"d{i}" for i in range(len(TEXTS))]
METAS = [{"year": 2018 + i, "lang": "en" if i % 2 else "de"} for i in range(len(TEXTS))]
QUERY = "what is the capital of france?"


@pytest.fixture
def filled(engine: Engine) -> Engine:
    engine.add(TEXTS, ids=IDS, metadatas=METAS)
    return engine


class RecordingEngine(Engine):
    """A real engine that notes which thread searched and can be made slow."""

    delay = 0.0

    def search(self, *args: Any, **kwargs: Any) -> Any:
        self.threads = [*getattr(self, "threads", []), threading.get_ident()]
        time.sleep(self.delay)
        return super().search(*args, **kwargs)


def test_results_are_the_engines_hits_as_documents(filled: Engine) -> None:
    docs = ColmaxRetriever(engine=filled, k=3).invoke(QUERY)
    hits = filled.search(QUERY, k=3)
    assert [d.id for d in docs] == [h.id for h in hits]  # type: ignore[union-attr]
    for doc, hit in zip(docs, hits):
        assert isinstance(doc, Document)
        assert doc.page_content == hit.text  # type: ignore[union-attr]
        assert doc.metadata == {**hit.metadata, "id": hit.id, "score": hit.score}  # type: ignore[union-attr]


def test_k_from_constructor_and_per_call(filled: Engine) -> None:
    retriever = ColmaxRetriever(engine=filled)
    assert retriever.k == 4
    assert len(retriever.invoke(QUERY)) == 4
    assert len(retriever.invoke(QUERY, k=2)) == 2
    assert len(retriever.invoke(QUERY, k=100)) == len(TEXTS)  # clamped, not an error
    assert len(ColmaxRetriever(engine=filled, k=1).invoke(QUERY)) == 1


def test_k_must_be_positive(filled: Engine) -> None:
    with pytest.raises(ValidationError):
        ColmaxRetriever(engine=filled, k=0)


def test_engine_must_be_an_engine() -> None:
    with pytest.raises(ValidationError):
        ColmaxRetriever(engine="not an engine")


def test_filter_from_constructor_and_per_call(filled: Engine) -> None:
    retriever = ColmaxRetriever(engine=filled, k=10, filter={"lang": "en"})
    assert {d.id for d in retriever.invoke(QUERY)} == {"d1", "d3", "d5"}
    per_call = retriever.invoke(QUERY, filter={"year": {"$gte": 2022}})
    assert {d.id for d in per_call} == {"d4", "d5"}
    structured = Comparison(comparator=Comparator.LT, attribute="year", value=2020)
    assert {d.id for d in retriever.invoke(QUERY, filter=structured)} == {"d0", "d1"}


def test_from_texts(tiny_colbert_model: Path) -> None:
    retriever = ColmaxRetriever.from_texts(
        TEXTS[:3], model=tiny_colbert_model, metadatas=METAS[:3], ids=["a", None, "c"], k=2
    )
    ids = retriever.engine.ids()
    assert ids[0] == "a" and ids[2] == "c" and len(ids[1]) == 36  # a UUID for the missing id
    assert retriever.k == 2
    assert retriever.engine.get(["a"])[0].metadata == METAS[0]
    assert len(retriever.invoke(QUERY)) == 2


def test_from_documents_keeps_ids_and_metadata(tiny_colbert_model: Path) -> None:
    docs = [Document(page_content=t, metadata=m, id=i) for t, m, i in zip(TEXTS, METAS, IDS)]
    retriever = ColmaxRetriever.from_documents(
        docs, model=tiny_colbert_model, filter={"lang": "de"}
    )
    assert retriever.engine.ids() == IDS
    assert {d.id for d in retriever.invoke(QUERY, k=10)} == {"d0", "d2", "d4"}
    assert docs[0] == Document(page_content=TEXTS[0], metadata=METAS[0], id="d0")  # untouched


def test_returned_metadata_is_a_copy(filled: Engine) -> None:
    doc = ColmaxRetriever(engine=filled, k=1).invoke(QUERY)[0]
    doc.metadata["year"] = -1
    assert filled.get([doc.id])[0].metadata["year"] != -1  # type: ignore[list-item]


def ids_of(docs: list[Document]) -> list[str | None]:
    return [d.id for d in docs]


def test_works_in_an_lcel_chain(filled: Engine) -> None:
    chain = ColmaxRetriever(engine=filled, k=2) | RunnableLambda(ids_of)
    assert chain.invoke(QUERY) == [h.id for h in filled.search(QUERY, k=2)]  # type: ignore[union-attr]


async def test_ainvoke_matches_invoke(filled: Engine) -> None:
    retriever = ColmaxRetriever(engine=filled, k=3)
    assert await retriever.ainvoke(QUERY, k=2) == retriever.invoke(QUERY, k=2)
    assert await retriever.ainvoke(QUERY, filter={"lang": "de"}) == retriever.invoke(
        QUERY, filter={"lang": "de"}
    )


async def test_ainvoke_runs_the_engine_off_the_event_loop(tiny_encoder: Encoder) -> None:
    engine = RecordingEngine(tiny_encoder)
    engine.add(TEXTS, ids=IDS)
    engine.delay = 0.3
    retriever = ColmaxRetriever(engine=engine, k=2)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    docs = await retriever.ainvoke(QUERY)
    task.cancel()
    assert len(docs) == 2
    assert engine.threads[-1] != threading.get_ident()  # searched in a worker thread
    assert ticks >= 5  # the loop kept running during the 0.3 s search


async def test_concurrent_ainvoke_calls_are_safe(filled: Engine) -> None:
    retriever = ColmaxRetriever(engine=filled, k=3)
    queries = [f"{w} capital of france" for w in ("what", "which", "is", "the")] * 4
    expected = [retriever.invoke(q) for q in queries]
    got = await asyncio.gather(*(retriever.ainvoke(q) for q in queries))
    assert list(got) == expected


async def test_concurrent_ainvoke_while_another_task_writes(filled: Engine) -> None:
    retriever = ColmaxRetriever(engine=filled, k=3)

    async def write() -> None:
        for i in range(5):
            await asyncio.to_thread(filled.add, [f"hello world {i}"], [f"w{i}"])

    searches = [retriever.ainvoke(QUERY) for _ in range(10)]
    results = await asyncio.gather(*searches, write())
    assert [len(docs or []) for docs in results[:-1]] == [3] * 10
    assert len(filled) == len(TEXTS) + 5
