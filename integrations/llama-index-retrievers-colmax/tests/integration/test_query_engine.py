"""ColmaxRetriever in a real LlamaIndex query engine, with the real MiniLM weights."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from llama_index.core import Document
from llama_index.core.llms import MockLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import BaseNode
from llama_index.core.vector_stores import MetadataFilter, MetadataFilters
from llama_index.retrievers.colmax import ColmaxRetriever

DOCUMENTS = {
    "volcano": (
        "Volcanoes erupt when magma rises through the crust. Lava flows and ash clouds follow "
        "the eruption.",
        {"topic": "geology", "year": 2019},
    ),
    "photosynthesis": (
        "Plants turn sunlight, water and carbon dioxide into sugar and oxygen by photosynthesis "
        "in their chloroplasts.",
        {"topic": "biology", "year": 2020},
    ),
    "tides": (
        "Ocean tides rise and fall twice a day because of the gravitational pull of the moon.",
        {"topic": "physics", "year": 2021},
    ),
    "bread": (
        "To bake bread, knead flour, water, salt and yeast into a dough, let it rise, then bake "
        "it in a hot oven.",
        {"topic": "cooking", "year": 2022},
    ),
    "jazz": (
        "Jazz began in New Orleans; musicians improvise over chord changes with trumpets, "
        "saxophones and pianos.",
        {"topic": "music", "year": 2023},
    ),
    "vaccines": (
        "Vaccines train the immune system to recognise a virus so the body can fight later "
        "infections.",
        {"topic": "biology", "year": 2024},
    ),
}


@pytest.fixture(scope="module")
def nodes() -> list[BaseNode]:
    docs = [Document(text=t, metadata=m, doc_id=doc_id) for doc_id, (t, m) in DOCUMENTS.items()]
    return SentenceSplitter(chunk_size=128, chunk_overlap=0).get_nodes_from_documents(docs)


@pytest.fixture(scope="module")
def retriever(nodes: list[BaseNode], minilm_path: Path) -> ColmaxRetriever:
    return ColmaxRetriever.from_defaults(
        nodes=nodes, model=minilm_path, device="cpu", similarity_top_k=2
    )


@pytest.mark.parametrize(
    ("question", "source"),
    [
        ("Why does the sea level change during the day?", "tides"),
        ("How do green plants make sugar from light?", "photosynthesis"),
        ("What comes out of an erupting mountain?", "volcano"),
        ("How is a loaf made with yeast?", "bread"),
    ],
)
def test_query_engine_cites_the_source_document(
    retriever: ColmaxRetriever, question: str, source: str
) -> None:
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    response = engine.query(question)
    assert str(response).strip()  # MockLLM answers with filler text
    assert len(response.source_nodes) == 2
    assert response.source_nodes[0].node.ref_doc_id == source
    assert response.source_nodes[0].node.metadata == DOCUMENTS[source][1]
    assert response.source_nodes[0].node.get_content() == DOCUMENTS[source][0]
    assert response.source_nodes[0].score > response.source_nodes[1].score


def test_async_query_engine(retriever: ColmaxRetriever) -> None:
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    questions = ["Who improvises over chords?", "How does the body learn to fight a virus?"]

    async def main() -> list:
        return await asyncio.gather(*(engine.aquery(q) for q in questions))

    responses = asyncio.run(main())
    assert [r.source_nodes[0].node.ref_doc_id for r in responses] == ["jazz", "vaccines"]


def test_filters_restrict_the_sources(nodes: list[BaseNode], minilm_path: Path) -> None:
    filters = MetadataFilters(
        filters=[
            MetadataFilter(key="topic", value="biology"),
            MetadataFilter(key="year", value=2023, operator=">"),
        ]
    )
    retriever = ColmaxRetriever.from_defaults(
        nodes=nodes, model=minilm_path, device="cpu", similarity_top_k=3, filters=filters
    )
    hits = retriever.retrieve("How do green plants make sugar from light?")
    assert [h.node.ref_doc_id for h in hits] == ["vaccines"]
