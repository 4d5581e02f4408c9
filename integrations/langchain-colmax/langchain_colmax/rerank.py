"""``ColmaxRerank``: rerank candidates from any retriever with late interaction (MaxSim)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from langchain_core.callbacks import Callbacks
from langchain_core.documents import Document
from langchain_core.documents.compressor import BaseDocumentCompressor
from pydantic import ConfigDict, Field

from colmax import Engine, Hit

__all__ = ["ColmaxRerank"]

logger = logging.getLogger(__name__)


class ColmaxRerank(BaseDocumentCompressor):
    """Rerank documents from any first stage (BM25, dense, hybrid) with a colmax engine.

    Setup:
        ```bash
        pip install -U langchain-colmax langchain-classic  # the latter for ContextualCompressionRetriever
        ```

    Key init args:
        engine: a colmax ``Engine``. It needs an encoder, not an index: an engine with no
            documents reranks raw texts.
        top_n: how many documents to return (``None``: all, reordered).
        use_stored_vectors: when a candidate's ``Document.id`` is in the engine's index with
            the same text, score its stored vectors instead of encoding it again.
        explain: add ``metadata["colmax_explanation"]`` (``Explanation.to_dict()``: which
            query token matched which span of ``page_content``, and the best passage).

    Instantiate:
        ```python
        from colmax import Engine
        from langchain_colmax import ColmaxRerank

        reranker = ColmaxRerank(engine=Engine.from_pretrained(model), top_n=5)
        ```

    Usage:
        ```python
        from langchain_classic.retrievers import ContextualCompressionRetriever

        retriever = ContextualCompressionRetriever(
            base_compressor=reranker, base_retriever=bm25_retriever
        )
        docs = retriever.invoke("what is late interaction?")
        docs[0].metadata["relevance_score"]  # raw MaxSim score
        ```

    Returns copies of the input documents (same ``id``, same type) with
    ``metadata["relevance_score"]`` set to the raw MaxSim score, best first; the inputs are
    never modified. Empty input gives empty output; candidates with empty or whitespace-only
    ``page_content`` have nothing to score and are dropped. Any number of candidates: beyond
    what one ``Engine.rerank`` call takes (``colmax.limits.MAX_RERANK_CANDIDATES``, 1,000)
    they are scored in batches and the best overall returned.
    """

    engine: Engine
    """The colmax engine that encodes and scores the candidates."""
    top_n: int | None = Field(default=3, gt=0)
    """Number of documents to return; ``None`` returns every candidate, reordered."""
    use_stored_vectors: bool = True
    """Reuse the index's vectors for candidates whose id and text match an indexed document."""
    explain: bool = False
    """Add each result's token-level explanation as ``metadata["colmax_explanation"]``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Rerank ``documents`` against ``query``.

        Args:
            documents: the candidates (not modified).
            query: the query.
            callbacks: unused (kept for the LangChain interface).

        Returns:
            At most ``top_n`` copies with ``metadata["relevance_score"]``, best first.

        Raises:
            colmax.errors.InvalidInputError: the query is empty.
        """
        docs = list(documents)
        scorable = [i for i, doc in enumerate(docs) if doc.page_content.strip()]
        if len(scorable) < len(docs):
            logger.debug("dropping %d empty candidate(s)", len(docs) - len(scorable))
        if not scorable:
            return []
        texts = [docs[i].page_content for i in scorable]
        # Ids only let the engine reuse stored vectors; hits come back by input position.
        ids = [docs[i].id for i in scorable] if self.use_stored_vectors else None
        hits = self.engine.rerank_in_batches(
            query, texts, self.top_n, ids=ids, explain=self.explain
        )
        return [
            _with_score(docs[scorable[hit.position]], hit)
            for hit in hits
            if hit.position is not None  # always set by rerank
        ]


def _with_score(doc: Document, hit: Hit) -> Document:
    """A copy of ``doc`` (same class and fields) with ``metadata["relevance_score"]`` (and the
    explanation when the hit has one)."""
    metadata = {**doc.metadata, "relevance_score": hit.score, **hit.extras()}
    return doc.model_copy(update={"metadata": metadata})
