"""``ColmaxRetriever``: a LangChain retriever over a colmax index (exact MaxSim search)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from langchain_core.structured_query import FilterDirective
from pydantic import ConfigDict, Field

from colmax import Engine
from langchain_colmax._convert import fill_ids, to_document, with_page_image
from langchain_colmax.filters import to_colmax_filter

__all__ = ["ColmaxRetriever"]

Filter = dict[str, Any] | FilterDirective


class ColmaxRetriever(BaseRetriever):
    """Late-interaction (ColBERT / MaxSim) retriever over a colmax :class:`~colmax.Engine`.

    Setup:
        Install ``langchain-colmax`` (it pulls in ``colmax`` and ``langchain-core``):

        ```bash
        pip install -U langchain-colmax
        ```

    Key init args:
        engine: the colmax ``Engine`` to search (built, loaded or shared with other doors).
        k: number of documents to return (``invoke(query, k=...)`` overrides it per call).
        filter: metadata filter in the colmax filter language (a dict such as
            ``{"year": {"$gte": 2021}}``) or a LangChain ``Comparison`` / ``Operation``;
            ``invoke(query, filter=...)`` overrides it per call.
        explain: add ``metadata["colmax_explanation"]`` to every result
            (``Explanation.to_dict()``: which query token matched which span of
            ``page_content``, and the best passage, for citations).
        hybrid: ``"rrf"``, ``"minmax"`` or ``"rerank"`` to fuse MaxSim with BM25 over the
            stored texts (needs ``colmax[hybrid]``); ``metadata["score"]`` is then the fused
            score and ``metadata["colmax_scores"]`` holds each side's own
            (``{"late": ..., "bm25": ...}``). ``hybrid_candidates`` and ``hybrid_weight``
            tune it (see ``Engine.search``).

    Instantiate:
        ```python
        from colmax import Engine
        from langchain_colmax import ColmaxRetriever

        engine = Engine.load("my-index")  # or Engine.from_pretrained(model) + engine.add(...)
        retriever = ColmaxRetriever(engine=engine, k=4)
        # or build the index in one go:
        retriever = ColmaxRetriever.from_texts(texts, model="answerdotai/answerai-colbert-small-v1")
        ```

    Usage:
        ```python
        docs = retriever.invoke("what is late interaction?", k=3)
        docs[0].id, docs[0].metadata["score"]  # colmax id, raw MaxSim score
        docs = await retriever.ainvoke("what is late interaction?")  # runs in a thread pool
        ```

    Use within a chain:
        ```python
        chain = retriever | format_docs | prompt | llm | StrOutputParser()
        ```

    Each result is ``Document(page_content=text, metadata={**stored_metadata, "id": id,
    "score": score}, id=id)``. ``score`` is the raw MaxSim sum (see the colmax README for its
    scale); a stored metadata field named ``id`` or ``score`` is shadowed in these results.
    """

    engine: Engine
    """The colmax engine searched by this retriever."""
    k: int = Field(default=4, gt=0)
    """Number of documents to return."""
    filter: Filter | None = None
    """Metadata filter applied to every search (colmax filter language)."""
    explain: bool = False
    """Add each result's token-level explanation as ``metadata["colmax_explanation"]``."""
    hybrid: Literal["rrf", "minmax", "rerank"] | None = None
    """Fuse late interaction with BM25 (``None``: MaxSim only)."""
    hybrid_candidates: int = Field(default=100, gt=0)
    """Hybrid only: hits taken from each side before fusing."""
    hybrid_weight: float = Field(default=0.5, ge=0, le=1)
    """Hybrid only: weight of the late-interaction side (BM25 gets the rest)."""
    group_chunks: bool = True
    """One result per chunked document (its best chunk), as every colmax door returns them."""
    include_images: bool = False
    """Page hits (PDF pages, images: ``Engine.add_files``): add the page image as
    ``metadata["image_base64"]`` / ``["image_mime_type"]`` for multimodal LLMs. Page hits
    always carry ``source``, ``page`` and ``image_path`` (the stored file)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        model: str | Path,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        ids: Sequence[str | None] | None = None,
        *,
        k: int = 4,
        filter: Filter | None = None,
        show_progress: bool = False,
        pool_factor: int = 1,
        **engine_kwargs: Any,
    ) -> ColmaxRetriever:
        """Load ``model``, index ``texts`` and return a retriever over them.

        Args:
            texts: the documents to index.
            model: a Hub id or local folder (colbert-ai, PyLate or plain Hugging Face format).
            metadatas: one JSON-compatible dict per text.
            ids: one id per text (missing ones get UUIDs); UUIDs for all when omitted.
            k: number of documents to return.
            filter: default metadata filter.
            show_progress: show the encoding progress bar.
            pool_factor: token pooling: store ``ceil(n / pool_factor)`` cluster means of
                each text's ``n`` token vectors (needs ``colmax[pooling]``; 1: every vector).
            **engine_kwargs: passed to ``Engine.from_pretrained`` (``path``, ``device``,
                ``dtype``, ``query_length``, ...).

        Returns:
            The retriever; its ``engine`` holds the new index.
        """
        engine = Engine.from_pretrained(model, **engine_kwargs)
        texts = list(texts)
        engine.add(
            texts,
            ids=fill_ids(ids, len(texts)),
            metadatas=metadatas,
            show_progress=show_progress,
            pool_factor=pool_factor,
        )
        return cls(engine=engine, k=k, filter=filter)

    @classmethod
    def from_documents(
        cls,
        documents: Iterable[Document],
        model: str | Path,
        *,
        k: int = 4,
        filter: Filter | None = None,
        show_progress: bool = False,
        pool_factor: int = 1,
        **engine_kwargs: Any,
    ) -> ColmaxRetriever:
        """Like :meth:`from_texts`, from LangChain documents (their ``id`` is kept when set)."""
        docs = list(documents)
        ids = [d.id for d in docs]
        return cls.from_texts(
            [d.page_content for d in docs],
            model,
            [d.metadata for d in docs],
            ids if any(ids) else None,
            k=k,
            filter=filter,
            show_progress=show_progress,
            pool_factor=pool_factor,
            **engine_kwargs,
        )

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: Filter | None = None,
    ) -> list[Document]:
        return self._search(query, k, filter)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: Filter | None = None,
    ) -> list[Document]:
        # Encoding and scoring are CPU/GPU work: keep them off the event loop. The engine is
        # safe for concurrent searches, so concurrent ainvoke calls need no lock here.
        return await run_in_executor(None, self._search, query, k, filter)

    def _search(self, query: str, k: int | None, filter: Filter | None) -> list[Document]:
        flt = to_colmax_filter(filter if filter is not None else self.filter)
        hits = self.engine.search(
            query,
            k=self.k if k is None else k,
            filter=flt,
            explain=self.explain,
            hybrid=self.hybrid,  # the engine ignores the next two without it
            candidates=self.hybrid_candidates,
            weight=self.hybrid_weight,
            group_chunks=self.group_chunks,
        )
        return [
            with_page_image(
                self.engine,
                hit,
                to_document(hit, with_score=True),
                include_image=self.include_images,
            )
            for hit in hits
        ]
