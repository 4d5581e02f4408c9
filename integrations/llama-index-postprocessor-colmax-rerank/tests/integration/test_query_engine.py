"""ColmaxRerank in a real LlamaIndex query engine, with the real MiniLM weights.

The first stage is a ``VectorStoreIndex`` over ``MockEmbedding`` (every node gets the same
vector), so its candidate order says nothing about the query (ties are broken by node id, fixed
here): any sensible order in the answer comes from the reranker.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.postprocessor.colmax_rerank import ColmaxRerank

DOCUMENTS = {
    "jazz": "Jazz began in New Orleans; musicians improvise over chord changes on trumpets.",
    "bread": "To bake bread, knead flour, water, salt and yeast, let the dough rise, then bake.",
    "volcano": "Volcanoes erupt when magma rises through the crust, pouring out lava and ash.",
    "vaccines": "Vaccines train the immune system to recognise a virus before an infection.",
    "tides": "Ocean tides rise and fall twice a day because of the gravitational pull of the moon.",
    "photosynthesis": "Plants turn sunlight, water and carbon dioxide into sugar and oxygen.",
}


@pytest.fixture(scope="module")
def index() -> VectorStoreIndex:
    nodes = [
        TextNode(
            id_=f"node-{doc_id}",
            text=text,
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=doc_id)},
        )
        for doc_id, text in DOCUMENTS.items()
    ]
    return VectorStoreIndex(nodes, embed_model=MockEmbedding(embed_dim=8))


@pytest.fixture(scope="module")
def reranker(minilm_path: Path) -> ColmaxRerank:
    return ColmaxRerank(top_n=2, model=minilm_path, device="cpu")


@pytest.mark.parametrize(
    ("question", "source"),
    [
        ("Why does the sea level change during the day?", "tides"),
        ("How do green plants make sugar from light?", "photosynthesis"),
        ("What comes out of an erupting mountain?", "volcano"),
    ],
)
def test_query_engine_reorders_candidates(
    index: VectorStoreIndex, reranker: ColmaxRerank, question: str, source: str
) -> None:
    plain = index.as_query_engine(llm=MockLLM(), similarity_top_k=len(DOCUMENTS))
    before = [n.node.ref_doc_id for n in plain.query(question).source_nodes]
    assert sorted(before) == sorted(DOCUMENTS) and before[0] != source

    engine = index.as_query_engine(
        llm=MockLLM(), similarity_top_k=len(DOCUMENTS), node_postprocessors=[reranker]
    )
    response = engine.query(question)
    assert str(response).strip()
    after = response.source_nodes
    assert len(after) == 2 and after[0].node.ref_doc_id == source
    assert after[0].score > after[1].score
    assert after[0].node.get_content() == DOCUMENTS[source]
