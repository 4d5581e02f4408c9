"""``ColmaxVectorStore``: the LangChain ``VectorStore`` interface over a colmax index."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor
from langchain_core.structured_query import FilterDirective
from langchain_core.vectorstores import VectorStore

from colmax import Engine, Hit
from langchain_colmax._convert import as_engine, fill_ids, to_document
from langchain_colmax.filters import to_colmax_filter

__all__ = ["ColmaxVectorStore"]

Filter = Mapping[str, Any] | FilterDirective


class ColmaxVectorStore(VectorStore):
    """A LangChain vector store whose documents are multi-vector (one vector per token).

    colmax encodes text itself with a late-interaction model, so there is no ``Embeddings``
    object: build the store from an :class:`~colmax.Engine` (or ``model=`` in
    :meth:`from_texts`). Scores are raw MaxSim sums, higher is better.

    Setup:
        ```bash
        pip install -U langchain-colmax
        ```

    Key init args:
        engine: the colmax ``Engine`` that stores, encodes and searches.
        show_progress: show the encoding progress bar in ``add_texts``.
        explain: add ``metadata["colmax_explanation"]`` (``Explanation.to_dict()``) to the
            documents the searches return (``similarity_search(..., explain=True)`` per call).

    Instantiate:
        ```python
        from colmax import Engine, Hit
        from langchain_colmax import ColmaxVectorStore

        store = ColmaxVectorStore(Engine.from_pretrained(model, path="my-index"))
        # or: ColmaxVectorStore.from_texts(texts, model=model, metadatas=metadatas)
        ```

    Add and delete:
        ```python
        store.add_documents([Document(page_content="...", metadata={"year": 2024})], ids=["a"])
        store.delete(["a"])
        ```

    Search:
        ```python
        docs = store.similarity_search("question", k=4, filter={"year": {"$gte": 2021}})
        pairs = store.similarity_search_with_score("question", k=4)  # (Document, MaxSim)
        retriever = store.as_retriever(search_kwargs={"k": 4})
        ```

    Every method has an async variant (``aadd_documents``, ``asimilarity_search``, ...) that
    runs the engine in a thread pool. ``max_marginal_relevance_search`` is not supported (it
    needs one vector per document).
    """

    def __init__(
        self, engine: Engine, *, show_progress: bool = False, explain: bool = False
    ) -> None:
        self._engine = as_engine(engine)
        self._show_progress = show_progress
        self.explain = explain

    @property
    def engine(self) -> Engine:
        """The colmax engine behind this store."""
        return self._engine

    @property
    def embeddings(self) -> Embeddings | None:
        """``None``: colmax encodes text with its own late-interaction model."""
        return None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        model: str | Path | None = None,
        engine: Engine | None = None,
        show_progress: bool = False,
        pool_factor: int = 1,
        **engine_kwargs: Any,
    ) -> ColmaxVectorStore:
        """Make a store and add ``texts``.

        Args:
            texts: the documents.
            embedding: must be ``None`` (kept for the ``VectorStore`` signature).
            metadatas: one JSON-compatible dict per text.
            ids: one id per text (missing ones get UUIDs).
            model: a model to load with ``Engine.from_pretrained(model, **engine_kwargs)``.
            engine: an existing engine instead of ``model``.
            show_progress: show the encoding progress bar.
            pool_factor: token pooling of the added texts (see :meth:`add_texts`).
            **engine_kwargs: passed to ``Engine.from_pretrained`` (``path``, ``device``, ...).

        Returns:
            The store.

        Raises:
            TypeError: an ``Embeddings`` object was passed, or not exactly one of
                ``model`` / ``engine``.
        """
        if embedding is not None:
            raise TypeError(
                "ColmaxVectorStore does not use LangChain Embeddings: colmax encodes text with "
                "a late-interaction model; pass model=... or engine=... instead"
            )
        if model is not None and engine is None:
            engine = Engine.from_pretrained(model, **engine_kwargs)
        elif (model is None) == (engine is None):
            raise TypeError("pass exactly one of model=... (a model to load) or engine=...")
        elif engine_kwargs:
            raise TypeError(f"unexpected arguments with engine=...: {sorted(engine_kwargs)}")
        store = cls(engine, show_progress=show_progress)
        store.add_texts(texts, metadatas, ids=ids, pool_factor=pool_factor)
        return store

    @classmethod
    def from_documents(
        cls,
        documents: list[Document],
        embedding: Embeddings | None = None,
        **kwargs: Any,
    ) -> ColmaxVectorStore:
        """Like :meth:`from_texts`, from documents (their ``id`` is kept when set)."""
        return super().from_documents(documents, embedding, **kwargs)  # type: ignore[arg-type]

    @classmethod
    async def afrom_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> ColmaxVectorStore:
        """:meth:`from_texts` in a worker thread (loading and encoding block)."""
        return await run_in_executor(
            None, cls.from_texts, texts, embedding, metadatas, ids=ids, **kwargs
        )

    @classmethod
    async def afrom_documents(
        cls,
        documents: list[Document],
        embedding: Embeddings | None = None,
        **kwargs: Any,
    ) -> ColmaxVectorStore:
        """:meth:`from_documents` in a worker thread."""
        return await super().afrom_documents(documents, embedding, **kwargs)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ writes
    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Encode and add (or replace, by id) texts.

        Args:
            texts: the texts.
            metadatas: one JSON-compatible dict per text.
            ids: one id per text; missing ids (``None``) get new UUIDs.
            **kwargs: ``batch_size`` for the encoder; ``pool_factor`` for token pooling
                (store ``ceil(n / pool_factor)`` cluster means of each text's ``n`` token
                vectors; needs ``colmax[pooling]``; default 1: every vector).

        Returns:
            The ids, in input order.

        Raises:
            colmax.errors.EmptyTextError: a text is empty (nothing is added).
            colmax.errors.DuplicateIdError: an id appears twice in this call.
        """
        batch_size = kwargs.pop("batch_size", None)
        pool_factor = kwargs.pop("pool_factor", 1)
        _no_extra(kwargs, "add_texts")
        texts = list(texts)
        return self._engine.add(
            texts,
            ids=fill_ids(ids, len(texts)),
            metadatas=metadatas,
            batch_size=batch_size,
            show_progress=self._show_progress,
            pool_factor=pool_factor,
        )

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete documents by id; ids that are not in the store are ignored.

        Args:
            ids: the ids to delete. ``None`` deletes every document (the ``VectorStore``
                contract).

        Returns:
            ``True``.
        """
        _no_extra(kwargs, "delete")
        wanted = self._engine.ids() if ids is None else list(dict.fromkeys(ids))
        self._engine.delete(wanted, missing="skip")
        return True

    # ------------------------------------------------------------------ reads
    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents for ``ids``, in that order; unknown ids are left out.

        A document a chunking engine (``Engine(..., chunk_tokens=N)``) stored as chunks
        ``"<id>#0"``, ``"<id>#1"``, ... comes back whole, as ``add_texts`` and the searches
        name it: one ``Document`` with its id, its metadata (without the chunk keys
        ``parent_id``, ``chunk_index``, ``char_start``, ``char_end``) and its text rebuilt
        from the chunks: the added text from its first word to its last, overlapping chunks
        counted once. The whitespace between two chunks is not stored: it comes back as
        spaces (one per character), and leading or trailing whitespace not at all.
        """
        stored = self._engine.get(list(dict.fromkeys(ids)), missing="skip")
        return [Document(page_content=d.text, metadata=d.metadata, id=d.id) for d in stored]

    def similarity_search(
        self, query: str, k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[Document]:
        """The ``k`` documents with the highest MaxSim score for ``query``.

        Args:
            query: the query text.
            k: number of documents (clamped to the number that match).
            filter: metadata filter (colmax filter dict or a LangChain filter directive).

        Returns:
            The documents, best first, with their stored metadata.
        """
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Like :meth:`similarity_search`, with each document's raw MaxSim score.

        ``explain=True`` (or the store's ``explain``) adds ``metadata["colmax_explanation"]``.
        """
        explain = kwargs.pop("explain", self.explain)
        _no_extra(kwargs, "similarity_search")
        hits = self._search(query=query, k=k, filter=filter, explain=explain)
        return [(to_document(h), h.score) for h in hits]

    def similarity_search_by_vector(
        self, embedding: Any, k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[Document]:
        """Search with precomputed query vectors: an ``(n_tokens, dim)`` array (one row, or a
        flat list of ``dim`` floats, is a one-vector query). ``explain`` as in
        :meth:`similarity_search_with_score` (matches by vector row: there is no query text)."""
        explain = kwargs.pop("explain", self.explain)
        _no_extra(kwargs, "similarity_search_by_vector")
        vectors = np.atleast_2d(np.asarray(embedding, dtype=np.float32))
        hits = self._search(vectors=vectors, k=k, filter=filter, explain=explain)
        return [to_document(h) for h in hits]

    def _similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        # Relevance = MaxSim / number of query vectors (the engine's normalize=True): the mean
        # best cosine similarity, comparable across queries. It lies in [-1, 1]; LangChain's
        # contract is [0, 1] (it warns otherwise), and a negative mean cosine says "unrelated"
        # as 0 does: negatives become 0, the usual range is unchanged.
        filter = kwargs.pop("filter", None)
        explain = kwargs.pop("explain", self.explain)
        _no_extra(kwargs, "similarity_search_with_relevance_scores")
        hits = self._search(query=query, k=k, filter=filter, explain=explain, normalize=True)
        return [(to_document(h), max(0.0, h.score)) for h in hits]

    async def _asimilarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        return await run_in_executor(
            None, self._similarity_search_with_relevance_scores, query, k, **kwargs
        )

    def _search(
        self,
        *,
        k: int,
        filter: Filter | None,
        query: str | None = None,
        vectors: Any = None,
        explain: bool = False,
        normalize: bool = False,
    ) -> list[Hit]:
        flt = to_colmax_filter(filter)
        if vectors is not None:
            return self._engine.search(
                k=k, filter=flt, query_embeddings=vectors, explain=explain, normalize=normalize
            )
        return self._engine.search(
            query or "", k=k, filter=flt, explain=explain, normalize=normalize
        )


def _no_extra(kwargs: dict[str, Any], method: str) -> None:
    if kwargs:
        raise TypeError(f"{method}() got unexpected keyword arguments: {sorted(kwargs)}")
