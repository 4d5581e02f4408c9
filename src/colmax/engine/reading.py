"""The read half of :class:`~colmax.Engine`: search, rerank, explain.

A mixin: :class:`Reading` validates the arguments and runs the pipelines of
:mod:`colmax.engine.searching`; the state lives in :class:`~colmax.engine.core.Engine`.
``search`` has typed overloads: one query (a ``str``, or a 2-D array or tensor of query
vectors) gives ``list[Hit]``, a list of queries gives ``list[list[Hit]]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, overload

import numpy as np
import torch

from colmax import limits
from colmax.engine.queries import encode_queries
from colmax.engine.searching import (
    Parts,
    SearchPlan,
    best_entry,
    explain_pages,
    rerank_candidates,
    run_search,
    score_candidates,
    score_stored_candidates,
)
from colmax.errors import InvalidInputError
from colmax.explain.model import Explanation
from colmax.explain.stored import explain_document
from colmax.filters import MATCH_ALL, FilterLike, parse_filter
from colmax.hybrid.side import check_hybrid
from colmax.types import Hit
from colmax.validation import as_list, check_flag, check_positive_int, check_texts

__all__ = ["Reading"]

Vectors = np.ndarray | torch.Tensor


class Reading:
    """Search, rerank and explain (mixed into :class:`~colmax.Engine`)."""

    _dim: int

    def _parts(self) -> Parts:
        raise NotImplementedError  # the Engine provides it

    @overload
    def search(  # type: ignore[overload-overlap]  # a str is a Sequence[str]: str wins
        self,
        query: str,
        k: int = ...,
        filter: FilterLike = ...,
        *,
        query_embeddings: None = ...,
        batch_size: int | None = ...,
        explain: bool = ...,
        hybrid: str | None = ...,
        candidates: int = ...,
        weight: float = ...,
        group_chunks: bool = ...,
        normalize: bool = ...,
    ) -> list[Hit]: ...

    @overload
    def search(
        self,
        query: None = ...,
        k: int = ...,
        filter: FilterLike = ...,
        *,
        query_embeddings: Vectors,
        batch_size: int | None = ...,
        explain: bool = ...,
        hybrid: str | None = ...,
        candidates: int = ...,
        weight: float = ...,
        group_chunks: bool = ...,
        normalize: bool = ...,
    ) -> list[Hit]: ...

    @overload
    def search(
        self,
        query: Sequence[str] | None = ...,
        k: int = ...,
        filter: FilterLike = ...,
        *,
        query_embeddings: Sequence[Any] | None = ...,
        batch_size: int | None = ...,
        explain: bool = ...,
        hybrid: str | None = ...,
        candidates: int = ...,
        weight: float = ...,
        group_chunks: bool = ...,
        normalize: bool = ...,
    ) -> list[list[Hit]]: ...

    def search(
        self,
        query: str | Sequence[str] | None = None,
        k: int = 10,
        filter: FilterLike = None,
        *,
        query_embeddings: Any = None,
        batch_size: int | None = None,
        explain: bool = False,
        hybrid: str | None = None,
        candidates: int = 100,
        weight: float = 0.5,
        group_chunks: bool = True,
        normalize: bool = False,
    ) -> list[Hit] | list[list[Hit]]:
        """Top-``k`` documents by MaxSim, or by MaxSim fused with BM25 (``hybrid``).

        Args:
            query: one query (returns ``list[Hit]``) or a list (returns one list per query).
            k: results per query; clamped to the number of matching documents.
            filter: metadata filter (see :mod:`colmax.filters`).
            query_embeddings: precomputed ``(n_tokens, dim)`` query vectors instead of text
                (a list of them returns one list per query).
            explain: give every hit its token-level
                :class:`~colmax.explain.Explanation` (``Hit.explanation``; see
                :meth:`explain`).
            hybrid: fuse with BM25 over the stored texts (needs ``colmax[hybrid]``; text
                queries only; flat and plaid indexes): ``"rrf"`` (reciprocal-rank fusion),
                ``"minmax"`` (min-max scaled scores, weighted) or ``"rerank"`` (BM25 finds
                ``candidates`` documents, MaxSim over their stored vectors orders them).
                ``Hit.score`` is then the fused score and ``Hit.scores`` holds each side's
                own (``"late"``, ``"bm25"``). The filter applies to both sides. See
                :mod:`colmax.hybrid.side` for how the BM25 index is kept current.
            candidates: hybrid only: hits taken from each side before fusing.
            weight: hybrid only: weight of the late-interaction side in ``[0, 1]`` (BM25
                gets ``1 - weight``; 0.5 with ``"rrf"`` is plain RRF).
            group_chunks: one hit per chunked document: its best chunk, named after the
                document (``Hit.id`` is the document id, ``metadata["chunk_id"]`` the chunk's;
                ``k`` counts documents). ``False`` lists chunks as they are stored. Hits of
                documents stored whole are the same either way.
            normalize: divide MaxSim scores by the number of query vectors: the mean best
                cosine similarity, in ``[-1, 1]`` and comparable across queries (raw MaxSim
                grows with the query length). With ``hybrid``, ``Hit.scores["late"]`` is
                divided; the fused score is not.

        Raises:
            InvalidInputError: ``k <= 0``, empty query, both or neither of query/query_embeddings,
                bad hybrid options.
            FilterError: malformed filter.
        """
        k = check_positive_int(k)
        for name, flag in (
            ("explain", explain),
            ("group_chunks", group_chunks),
            ("normalize", normalize),
        ):
            check_flag(flag, name)
        # Parsed once, before any encoding work; every side and backend gets the tree.
        tree = parse_filter(filter)
        if hybrid is not None:
            check_hybrid(hybrid, candidates, weight, text_query=query is not None)
        parts = self._parts()
        queries = encode_queries(parts.encoder, self._dim, query, query_embeddings, batch_size)
        plan = SearchPlan(
            k,
            None if tree == MATCH_ALL else tree,
            explain=explain,
            hybrid=hybrid,
            candidates=candidates,
            weight=weight,
            group_chunks=group_chunks,
            normalize=normalize,
        )
        hits = run_search(parts, queries, plan)
        return hits[0] if queries.single else hits

    def rerank(
        self,
        query: str | None,
        documents: Sequence[str] | None = None,
        k: int | None = None,
        *,
        ids: Sequence[str | None] | None = None,
        query_embedding: Any | None = None,
        batch_size: int | None = None,
        explain: bool = False,
        normalize: bool = False,
    ) -> list[Hit]:
        """Score candidates from anywhere against one query; best first.

        Args:
            query: the query text (or ``None`` with ``query_embedding``).
            documents: candidate texts. Without ``ids`` they are all encoded now and hit ids are
                their positions as strings (``"0"``, ``"1"``, ...).
            k: keep the best ``k`` (default: all).
            ids: alone: ids of documents in the index, scored with their stored vectors
                (nothing is re-encoded; unknown ids raise ``UnknownIdError``); a chunked
                document's id, as searches return it, scores its best chunk and comes back
                as in a search (that chunk's text, ``metadata["chunk_id"]``). With
                ``documents``: one id per text; a candidate whose id is in the index with the
                same text reuses the stored vectors, the others are encoded (an id that is
                ``None``, invalid or repeated is not looked up: hand over framework ids as
                they are).
            query_embedding: a precomputed ``(n_tokens, dim)`` query instead of ``query``.
            explain: give each returned hit its :class:`~colmax.explain.Explanation` (of the
                vectors just scored; see :meth:`explain`).
            normalize: divide scores by the number of query vectors (see :meth:`search`).

        Returns:
            Hits sorted by score (ties keep the input order), ``rank`` 0-based, ``position``
            the candidate's place in ``documents`` / ``ids``.

        Raises:
            InvalidInputError: ``query`` is not one string, neither ``documents`` nor ``ids``
                given, or more than
                :data:`colmax.limits.MAX_RERANK_CANDIDATES` (1,000): see
                :meth:`rerank_in_batches`.
        """
        if query is not None and not isinstance(query, str):  # a list would score its first
            raise InvalidInputError(
                f"rerank() takes one query text, got {type(query).__name__}: call it once per query"
            )
        if documents is None and ids is None:
            raise InvalidInputError("rerank() needs documents=... (texts), ids=..., or both")
        _check_candidates(documents if documents is not None else ids)
        k = check_positive_int(k) if k is not None else None
        check_flag(explain, "explain")
        check_flag(normalize, "normalize")
        parts = self._parts()
        query_vectors = None if query_embedding is None else [query_embedding]
        queries = encode_queries(parts.encoder, self._dim, query, query_vectors, batch_size)
        given = as_list(ids, "ids") if ids is not None else None
        texts = check_texts(as_list(documents, "documents")) if documents is not None else None
        if texts is None:  # indexed candidates: scored where they are stored
            return score_stored_candidates(
                parts, queries, given or [], k, normalize=normalize, explain=explain
            )
        rows, vecs = rerank_candidates(parts, texts, given, batch_size)
        return score_candidates(parts, queries, rows, vecs, k, explain=explain, normalize=normalize)

    def rerank_in_batches(
        self,
        query: str | None,
        documents: Sequence[str] | None = None,
        k: int | None = None,
        *,
        ids: Sequence[str | None] | None = None,
        query_embedding: Any | None = None,
        batch_size: int | None = None,
        explain: bool = False,
        normalize: bool = False,
    ) -> list[Hit]:
        """:meth:`rerank` over any number of candidates (same arguments and hits).

        One :meth:`rerank` call takes at most :data:`colmax.limits.MAX_RERANK_CANDIDATES`
        (they are scored in one padded batch); this scores batches of that size one after
        another and merges them by score. A score is the query's MaxSim against one candidate
        alone, so scores of different batches compare; each batch keeps its best ``k``, and
        the overall best ``k`` are among them. ``position`` is the place in ``documents`` /
        ``ids``; equal scores keep the input order, as within one call.
        """
        given_documents = as_list(documents, "documents") if documents is not None else None
        given_ids = as_list(ids, "ids") if ids is not None else None
        candidates = given_documents if given_documents is not None else given_ids
        if candidates is None:
            raise InvalidInputError("rerank() needs documents=... (texts), ids=..., or both")
        # Checked whole: a batch's own check would name the batch's sizes.
        if (
            given_documents is not None
            and given_ids is not None
            and len(given_ids) != len(given_documents)
        ):
            raise InvalidInputError(
                f"got {len(given_ids)} ids for {len(given_documents)} documents"
            )
        limit = limits.MAX_RERANK_CANDIDATES  # read now: rerank checks the current value
        hits: list[Hit] = []
        for start in range(0, max(len(candidates), 1), limit):
            part = slice(start, start + limit)
            batch = self.rerank(
                query,
                given_documents[part] if given_documents is not None else None,
                k=k,
                ids=given_ids[part] if given_ids is not None else None,
                query_embedding=query_embedding,
                batch_size=batch_size,
                explain=explain,
                normalize=normalize,
            )
            hits += [replace(h, position=(h.position or 0) + start) for h in batch]
        hits.sort(key=lambda h: -h.score)  # stable: ties keep the input order
        return [replace(h, rank=rank) for rank, h in enumerate(hits[:k])]

    def explain(
        self,
        query: str | None,
        doc_id: str,
        *,
        max_passages: int = 1,
        query_embedding: Any | None = None,
    ) -> Explanation:
        """Why a stored document scores what it does for ``query``, token by token.

        The stored text is explained with the stored vectors when they line up with the
        encoder's tokens for that text, so ``explanation.score`` equals the document's search
        score (up to float16 rounding). Documents pooled at index time (``pool_factor > 1``)
        or added as precomputed vectors of another row count are explained by encoding the
        stored text again: the score is then that of the unpooled vectors. Engines without an
        encoder, or a query given as vectors, get matches by row number only (no spans).

        Args:
            query: the query text (or ``None`` with ``query_embedding``).
            doc_id: the id of a stored document (or chunk); a chunked document's id (as
                searches return it) explains its best chunk for ``query``.
            max_passages: how many best passages to return (for citations).
            query_embedding: a precomputed ``(n_tokens, dim)`` query instead of ``query``.

        Returns:
            The :class:`~colmax.explain.Explanation`, with ``id == doc_id``.

        Raises:
            UnknownIdError: ``doc_id`` is not in the index.
            InvalidInputError: empty query, both or neither of query/query_embedding, a bad
                ``max_passages``.
        """
        if query is not None and not isinstance(query, str):
            raise InvalidInputError(f"explain() takes one query text, got {type(query).__name__}")
        if not isinstance(doc_id, str):
            raise InvalidInputError(f"doc_id must be a str, got {type(doc_id).__name__}")
        parts = self._parts()
        query_vectors = None if query_embedding is None else [query_embedding]
        queries = encode_queries(parts.encoder, self._dim, query, query_vectors, None)
        text, qvec = queries.texts[0], queries.vectors[0]
        doc, vecs = parts.backend.get_with_vectors([best_entry(parts, qvec, doc_id)])[0]
        e = explain_document(parts.encoder, text, qvec, doc, vecs, max_passages=max_passages)
        hit = Hit(doc.id, e.score, doc.text, doc.metadata, 0, explanation=e)
        return explain_pages(parts, text, qvec, [hit])[0].explanation or e


def _check_candidates(candidates: Any) -> None:
    """At most :data:`colmax.limits.MAX_RERANK_CANDIDATES`: they are scored in one padded batch."""
    limit = limits.MAX_RERANK_CANDIDATES
    if (
        isinstance(candidates, Sequence)
        and not isinstance(candidates, str)
        and len(candidates) > limit
    ):
        raise InvalidInputError(
            f"rerank() takes at most {limit} candidates per call (colmax.limits."
            f"MAX_RERANK_CANDIDATES), got {len(candidates)}: use rerank_in_batches(), or search "
            "first"
        )
