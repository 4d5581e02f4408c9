"""ColmaxRetriever filters (checked against LlamaIndex's reference evaluator) and async retrieval."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores import (
    ExactMatchFilter,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)
from llama_index.core.vector_stores.utils import build_metadata_filter_fn
from llama_index.retrievers.colmax import ColmaxRetriever

F = MetadataFilter

# Each case is evaluated by the engine and by LlamaIndex's own in-memory filter function.
REFERENCE_CASES = {
    "eq": [F(key="lang", value="en")],
    "exact-match": [ExactMatchFilter(key="year", value=2020)],
    "ne (missing field matches)": [F(key="year", value=2020, operator="!=")],
    "gt": [F(key="year", value=2020, operator=">")],
    "gte float": [F(key="score", value=1.5, operator=">=")],
    "lt": [F(key="year", value=2021, operator="<")],
    "lte": [F(key="year", value=2021, operator="<=")],
    "in": [F(key="lang", value=["de", "fr"], operator="in")],
    "nin": [F(key="lang", value=["de", "fr"], operator="nin")],
    "in ints": [F(key="year", value=[2019, 2023], operator="in")],
    "contains": [F(key="tags", value="pets", operator="contains")],
    "any": [F(key="tags", value=["travel", "ml"], operator="any")],
    "all": [F(key="tags", value=["pets", "home"], operator="all")],
    "and": [F(key="lang", value="en"), F(key="year", value=2020, operator=">")],
    "typed: 2020 is not '2020'": [F(key="year", value="2020")],
}


def _run(retriever: ColmaxRetriever, filters: MetadataFilters) -> set[str]:
    retriever.filters = filters
    return {r.node.node_id for r in retriever.retrieve("the house")}


@pytest.fixture(scope="module")
def shared_retriever(tiny_model: Path, make_nodes: Callable[[], list[TextNode]]) -> ColmaxRetriever:
    return ColmaxRetriever.from_defaults(
        nodes=make_nodes(), model=tiny_model, device="cpu", similarity_top_k=100
    )


@pytest.fixture
def retriever(shared_retriever: ColmaxRetriever) -> Iterator[ColmaxRetriever]:
    """One index for the module; each test starts (and leaves it) without filters."""
    shared_retriever.filters = None
    yield shared_retriever
    shared_retriever.filters = None


@pytest.mark.parametrize("condition", ["and", "or", "not"])
@pytest.mark.parametrize("case", list(REFERENCE_CASES))
def test_filters_match_llamaindex_reference(
    retriever: ColmaxRetriever, nodes: list[TextNode], case: str, condition: str
) -> None:
    filters = MetadataFilters(filters=REFERENCE_CASES[case], condition=condition)
    metadata = {n.node_id: n.metadata for n in nodes}
    reference = build_metadata_filter_fn(lambda node_id: metadata[node_id], filters)
    expected = {n.node_id for n in nodes if reference(n.node_id)}
    assert _run(retriever, filters) == expected


def test_nested_filters_and_ref_doc_id(retriever: ColmaxRetriever) -> None:
    either = MetadataFilters(
        filters=[F(key="lang", value="fr"), F(key="tags", value="ml", operator="contains")],
        condition=FilterCondition.OR,
    )
    nested = MetadataFilters(filters=[either, F(key="year", value=2021, operator=">=")])
    assert _run(retriever, nested) == {"n2", "n3"}
    # ref_doc_id is filterable, so one source document can be searched on its own.
    assert _run(retriever, MetadataFilters(filters=[F(key="ref_doc_id", value="doc1")])) == {
        "n2",
        "n3",
    }
    retriever.filters = None
    assert len(retriever.retrieve("the house")) == 6


def test_filters_edited_in_place_apply(retriever: ColmaxRetriever) -> None:
    # MetadataFilters is mutable: a filter appended after it was set must count at the next
    # retrieve (the translation is not kept from when it was set).
    retriever.filters = MetadataFilters(filters=[F(key="lang", value="en")])
    assert {r.node.node_id for r in retriever.retrieve("the house")} == {"n0", "n3", "n4"}
    retriever.filters.filters.append(F(key="year", value=2022, operator=FilterOperator.GTE))
    assert {r.node.node_id for r in retriever.retrieve("the house")} == {"n3", "n4"}


def test_unsupported_filters_are_refused_when_set(retriever: ColmaxRetriever) -> None:
    with pytest.raises(ValueError, match="TEXT_MATCH"):
        retriever.filters = MetadataFilters(
            filters=[F(key="lang", value="e", operator="text_match")]
        )
    assert retriever.filters is None  # the old value is kept
    with pytest.raises(TypeError, match="MetadataFilters"):
        retriever.filters = {"lang": "en"}  # type: ignore[assignment]


def test_aretrieve_equals_retrieve_and_runs_concurrently(retriever: ColmaxRetriever) -> None:
    queries = ["the cat", "paris france", "late interaction search", "the blue car"]
    expected = [[(r.node.node_id, r.score) for r in retriever.retrieve(q)] for q in queries]

    async def main() -> list:
        return await asyncio.gather(*(retriever.aretrieve(q) for q in queries))

    results = asyncio.run(main())
    assert [[(r.node.node_id, r.score) for r in res] for res in results] == expected


def test_aretrieve_does_not_block_the_event_loop(
    retriever: ColmaxRetriever, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The search waits until a coroutine on the event loop releases it: that can only happen
    # if the search runs off the loop's thread (a blocking _aretrieve would time out here).
    release = threading.Event()
    search = retriever.engine.search
    threads: list[int] = []

    def gated_search(*args: object, **kwargs: object) -> object:
        threads.append(threading.get_ident())
        if not release.wait(timeout=5):
            raise TimeoutError("the event loop was blocked during aretrieve")
        return search(*args, **kwargs)

    monkeypatch.setattr(retriever.engine, "search", gated_search)

    async def main() -> list:
        task = asyncio.create_task(retriever.aretrieve("the cat"))
        await asyncio.sleep(0.05)
        release.set()
        return await task

    results = asyncio.run(main())
    assert len(results) == 6 and threads and threads[0] != threading.get_ident()
