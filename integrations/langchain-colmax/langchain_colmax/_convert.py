"""Conversions between colmax results and LangChain documents (private)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable
from typing import Any

from langchain_core.documents import Document

from colmax import Engine, Hit
from colmax.types import EXPLANATION_KEY, SCORES_KEY

__all__ = [
    "EXPLANATION_KEY",
    "SCORES_KEY",
    "as_engine",
    "fill_ids",
    "to_document",
    "with_page_image",
]


def to_document(hit: Hit, *, with_score: bool = False) -> Document:
    """A LangChain ``Document`` for a search hit; ``Document.id`` is the colmax id.

    ``with_score`` adds ``metadata["id"]`` and ``metadata["score"]`` (the raw MaxSim score), as
    the retriever returns them; the vector store keeps the stored metadata as it is. A hit's
    explanation and hybrid scores are added as ``colmax_explanation`` / ``colmax_scores``.
    """
    metadata = {**hit.metadata, "id": hit.id, "score": hit.score} if with_score else hit.metadata
    extras = hit.extras()
    if extras:
        metadata = {**metadata, **extras}
    return Document(page_content=hit.text, metadata=metadata, id=hit.id)


def with_page_image(
    engine: Engine, hit: Hit, document: Document, *, include_image: bool
) -> Document:
    """``document``, with its page image when its hit is a page (``Engine.add_files``).

    Adds ``metadata["image_path"]`` (the stored file, for an index folder) and, with
    ``include_image``, ``metadata["image_base64"]`` and ``metadata["image_mime_type"]`` for a
    multimodal LLM. Text documents are returned as they are.
    """
    if not hit.is_page or document.id is None:
        return document
    extra: dict[str, Any] = {}
    path = engine.page_image_path(document.id)
    if path is not None:
        extra["image_path"] = str(path)
    if include_image:
        data, mime = engine.page_image_bytes(document.id)
        extra["image_base64"] = base64.b64encode(data).decode("ascii")
        extra["image_mime_type"] = mime
    return Document(
        page_content=document.page_content, metadata={**document.metadata, **extra}, id=document.id
    )


def fill_ids(ids: Iterable[str | None] | None, n: int) -> list[str] | None:
    """``ids`` as a list with a new UUID wherever an id is missing (``None`` or ``""``)."""
    if ids is None:
        return None
    filled = [i if i else str(uuid.uuid4()) for i in ids]
    if len(filled) != n:
        raise ValueError(f"got {len(filled)} ids for {n} texts; pass one id per text")
    return filled


def as_engine(engine: Any) -> Engine:
    """``engine`` if it is a colmax ``Engine``; a ``TypeError`` that says what to pass otherwise."""
    if isinstance(engine, Engine):
        return engine
    raise TypeError(
        "expected a colmax Engine (Engine.from_pretrained(model) or Engine.load(path)), got "
        f"{type(engine).__name__}; colmax encodes text with its own late-interaction model, "
        "so LangChain Embeddings objects are not used"
    )
