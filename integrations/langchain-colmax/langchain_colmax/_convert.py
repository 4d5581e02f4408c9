"""Conversions between colmax results and LangChain documents (private)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.documents import Document

from colmax import Engine, Hit
from colmax.validation import MAX_ID_LENGTH

__all__ = ["as_engine", "candidate_ids", "fill_ids", "to_document"]


def to_document(hit: Hit, *, with_score: bool = False) -> Document:
    """A LangChain ``Document`` for a search hit; ``Document.id`` is the colmax id.

    ``with_score`` adds ``metadata["id"]`` and ``metadata["score"]`` (the raw MaxSim score), as
    the retriever returns them; the vector store keeps the stored metadata as it is.
    """
    metadata = {**hit.metadata, "id": hit.id, "score": hit.score} if with_score else hit.metadata
    return Document(page_content=hit.text, metadata=metadata, id=hit.id)


def fill_ids(ids: Iterable[str | None] | None, n: int) -> list[str] | None:
    """``ids`` as a list with a new UUID wherever an id is missing (``None`` or ``""``)."""
    if ids is None:
        return None
    filled = [i if i else str(uuid.uuid4()) for i in ids]
    if len(filled) != n:
        raise ValueError(f"got {len(filled)} ids for {n} texts; pass one id per text")
    return filled


def candidate_ids(ids: Sequence[Any]) -> list[str]:
    """Distinct ids for rerank candidates: each usable ``Document.id`` is kept (so the engine
    can reuse its stored vectors when the text matches), the others become fresh UUIDs."""
    out: list[str] = []
    seen: set[str] = set()
    for id_ in ids:
        usable = (
            isinstance(id_, str)
            and 0 < len(id_) <= MAX_ID_LENGTH
            and "\x00" not in id_
            and id_ not in seen
        )
        name = id_ if usable else str(uuid.uuid4())
        seen.add(name)
        out.append(name)
    return out


def as_engine(engine: Any) -> Engine:
    """``engine`` if it is a colmax ``Engine``; a ``TypeError`` that says what to pass otherwise."""
    if isinstance(engine, Engine):
        return engine
    raise TypeError(
        "expected a colmax Engine (Engine.from_pretrained(model) or Engine.load(path)), got "
        f"{type(engine).__name__}; colmax encodes text with its own late-interaction model, "
        "so LangChain Embeddings objects are not used"
    )
