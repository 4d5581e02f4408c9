"""End to end on Cranfield with the real MiniLM weights: an LCEL RAG chain, and BM25 top-100
reranked by ColmaxRerank inside LangChain's ContextualCompressionRetriever.

The index is the session's shared ``cranfield_index`` (built once by the root conftest); these
tests only encode queries. The reranker reuses the index's stored vectors for the BM25
candidates (same ids, same texts), which the counting encoder below checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bm25s
import ir_measures
import pytest
from ir_measures import nDCG
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_colmax import ColmaxRerank, ColmaxRetriever
from langchain_core.callbacks import BaseCallbackHandler, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnablePassthrough
from pydantic import ConfigDict

from colmax import Engine
from colmax.beir import BeirDataset, load_beir
from colmax.encoders.base import Encoder

#: Every second judged query (113) for the BM25 + rerank run: each reranks 100 candidates.
EVERY = 2
BM25_NDCG10 = 0.358  # bm25s Lucene BM25, English stopwords, on those queries (0.352 on all 225)


class BM25sRetriever(BaseRetriever):
    """First stage: bm25s over a fixed corpus; documents carry the corpus ids."""

    index: Any
    ids: list[str]
    texts: list[str]
    k: int = 100

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @classmethod
    def from_corpus(cls, corpus: dict[str, str], k: int = 100) -> BM25sRetriever:
        ids, texts = list(corpus), list(corpus.values())
        index = bm25s.BM25(method="lucene")
        index.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
        return cls(index=index, ids=ids, texts=texts, k=k)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
        docs, scores = self.index.retrieve(tokens, k=self.k, show_progress=False)
        return [
            Document(page_content=self.texts[i], metadata={"bm25": float(s)}, id=self.ids[i])
            for i, s in zip(docs[0].tolist(), scores[0].tolist())
        ]


class CountingEncoder:
    """The real MiniLM encoder, counting the documents it is asked to encode."""

    def __init__(self, inner: Encoder) -> None:
        self._inner = inner
        self.documents_encoded = 0

    def encode_documents(self, texts: Sequence[str], **kwargs: Any) -> Any:
        self.documents_encoded += len(texts)
        return self._inner.encode_documents(texts, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class PromptRecorder(BaseCallbackHandler):
    """Keeps the messages the chat model was called with."""

    def __init__(self) -> None:
        self.messages: list[list[BaseMessage]] = []

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], **kwargs: Any
    ) -> None:
        self.messages.extend(messages)


@pytest.fixture(scope="module")
def data(cranfield_dir: Path) -> BeirDataset:
    return load_beir(cranfield_dir)


@pytest.fixture(scope="module")
def counting() -> dict[str, CountingEncoder]:
    return {}


@pytest.fixture(scope="module")
def cran_engine(
    cranfield_index: Path, minilm_encoder: Encoder, counting: dict[str, CountingEncoder]
) -> Engine:
    encoder = CountingEncoder(minilm_encoder)
    counting["encoder"] = encoder
    return Engine.load(cranfield_index, encoder=encoder)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def bm25(data: BeirDataset) -> BM25sRetriever:
    return BM25sRetriever.from_corpus(data.corpus, k=100)


def ndcg10(data: BeirDataset, run: dict[str, dict[str, float]]) -> float:
    return float(ir_measures.calc_aggregate([nDCG @ 10], data.qrels, run)[nDCG @ 10])


def format_docs(docs: list[Document]) -> str:
    return "\n\n".join(f"[{d.id}] {d.page_content}" for d in docs)


def test_lcel_rag_chain_answers_from_the_retrieved_documents(
    cran_engine: Engine, data: BeirDataset
) -> None:
    qid, question = next(iter(data.judged_queries().items()))
    retriever = ColmaxRetriever(engine=cran_engine, k=3)
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "Answer using only this context; cite the [ids].\n\n{context}"),
            ("human", "{question}"),
        ]
    )
    answer = "Use the similarity laws described in the cited reports."
    chain = (
        {"context": retriever | format_docs, "question": RunnablePassthrough()}
        | prompt
        | FakeListChatModel(responses=[answer])
        | StrOutputParser()
    )
    recorder = PromptRecorder()
    assert chain.invoke(question, config={"callbacks": [recorder]}) == answer

    retrieved = retriever.invoke(question)
    assert any(data.qrels[qid].get(d.id or "", 0) > 0 for d in retrieved)  # a judged answer
    (messages,) = recorder.messages
    system, human = messages[0].content, messages[1].content
    assert human == question
    for doc in retrieved:  # the model was prompted with exactly the retrieved documents
        assert f"[{doc.id}] {doc.page_content}" in system


async def test_lcel_rag_chain_async(cran_engine: Engine, data: BeirDataset) -> None:
    question = next(iter(data.judged_queries().values()))
    retriever = ColmaxRetriever(engine=cran_engine, k=2)
    chain = retriever | format_docs
    assert await chain.ainvoke(question) == format_docs(retriever.invoke(question))


def test_bm25_reranked_by_colmax_beats_bm25_alone(
    cran_engine: Engine,
    bm25: BM25sRetriever,
    data: BeirDataset,
    counting: dict[str, CountingEncoder],
) -> None:
    sample = data.every_nth_judged(EVERY)
    reranked = ContextualCompressionRetriever(
        base_compressor=ColmaxRerank(engine=cran_engine, top_n=10), base_retriever=bm25
    )
    first_stage: dict[str, dict[str, float]] = {}
    second_stage: dict[str, dict[str, float]] = {}
    before = counting["encoder"].documents_encoded
    for qid, text in sample.queries.items():
        first_stage[qid] = {d.id: d.metadata["bm25"] for d in bm25.invoke(text)}  # type: ignore[misc]
        docs = reranked.invoke(text)
        assert len(docs) == 10
        second_stage[qid] = {d.id: d.metadata["relevance_score"] for d in docs}  # type: ignore[misc]
    # Every candidate is indexed with the same text: nothing was encoded but the queries.
    assert counting["encoder"].documents_encoded == before

    bm25_alone, with_rerank = ndcg10(sample, first_stage), ndcg10(sample, second_stage)
    print(
        f"Cranfield nDCG@10: BM25 {bm25_alone:.4f}, BM25 top-100 + ColmaxRerank {with_rerank:.4f}"
    )
    assert bm25_alone == pytest.approx(BM25_NDCG10, abs=0.005)
    assert with_rerank > bm25_alone + 0.01


def test_rerank_scores_are_the_stored_vector_scores(
    cran_engine: Engine, bm25: BM25sRetriever, data: BeirDataset
) -> None:
    question = next(iter(data.judged_queries().values()))
    candidates = bm25.invoke(question)[:20]
    out = ColmaxRerank(engine=cran_engine, top_n=5).compress_documents(candidates, question)
    expected = cran_engine.rerank(question, ids=[d.id for d in candidates], k=5)  # type: ignore[misc]
    assert [d.id for d in out] == [h.id for h in expected]
    assert [d.metadata["relevance_score"] for d in out] == pytest.approx(
        [h.score for h in expected], abs=1e-4
    )
    assert all(d.metadata["bm25"] > 0 for d in out)  # the first stage's metadata is kept
