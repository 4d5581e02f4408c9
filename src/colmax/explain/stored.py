"""Explanations of engine results (``Engine.explain``, ``search(..., explain=True)``, ...).

Each explanation uses the document's stored vectors when they line up with the encoder's token
plan for its stored text (same row count: the vectors the search scored, so the explanation's
score equals the hit's MaxSim score up to float16 rounding of the stored copy). Otherwise (the
document was pooled at index time, or its vectors were precomputed elsewhere) the stored text
is encoded again and the explanation is that of the unpooled vectors: its score can differ
from the search score.

Without a text query (``query_embeddings``), without an encoder that gives token spans, or for
a document stored without text, the explanation covers the stored vectors with row numbers
only (:func:`colmax.explain.explain_vectors`: no spans, no passages).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from colmax.backends.base import Backend
from colmax.explain.align import explain, explain_vectors
from colmax.explain.model import Explanation
from colmax.types import Document, Hit

__all__ = ["explain_document", "explain_hits", "stored_with_vectors"]


def explain_document(
    encoder: Any,
    query: str | None,
    query_vectors: torch.Tensor,
    document: Document,
    vectors: Any,
    *,
    max_passages: int = 1,
) -> Explanation:
    """Explain one document's score for one query.

    Args:
        encoder: the engine's encoder (``None`` for a vectors-only engine).
        query: the query text, or ``None`` when the query was given as vectors.
        query_vectors: the query's ``(n, dim)`` vectors (already encoded: not encoded again).
        document: the stored document (its text is what spans index into).
        vectors: the document's stored ``(m, dim)`` vectors (or those just encoded).
        max_passages: passages to return.

    Returns:
        The explanation, carrying the document id.
    """
    text = document.text
    spans = hasattr(encoder, "token_spans") and query is not None and text.strip() != ""
    if not spans:
        e = explain_vectors(
            query_vectors,
            vectors,
            query_text=query or "",
            document_text=text,
            max_passages=max_passages,
        )
        return e.with_id(document.id)
    rows = len(encoder.token_spans([text], is_query=False)[0])
    aligned = np.shape(vectors)[0] == rows
    e = explain(
        encoder,
        query,  # type: ignore[arg-type]  # not None: checked above
        text,
        query_vectors=query_vectors,
        document_vectors=vectors if aligned else None,  # None: encode the text again
        max_passages=max_passages,
    )
    return e.with_id(document.id)


def stored_with_vectors(backend: Backend, ids: Sequence[str]) -> dict[str, tuple[Document, Any]]:
    """``id -> (document, stored vectors)`` for the ids still stored (a concurrent writer may
    have deleted some since they were found)."""
    pairs = backend.get_with_vectors(list(ids), missing="skip")
    return {doc.id: (doc, vecs) for doc, vecs in pairs}


def explain_hits(
    encoder: Any,
    backend: Backend,
    query: str | None,
    query_vectors: torch.Tensor,
    hits: Sequence[Hit],
    *,
    max_passages: int = 1,
) -> list[Hit]:
    """Copies of ``hits`` (stored documents) carrying their explanations.

    A hit whose document was deleted meanwhile keeps ``explanation=None``.
    """
    stored = stored_with_vectors(backend, [h.id for h in hits])
    out = []
    for hit in hits:
        if hit.id not in stored:
            out.append(hit)
            continue
        doc, vecs = stored[hit.id]
        e = explain_document(encoder, query, query_vectors, doc, vecs, max_passages=max_passages)
        out.append(replace(hit, explanation=e))
    return out
