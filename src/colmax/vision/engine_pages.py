"""What the engine does with pages beyond adding them: images of hits, heatmaps, clean-up.

Kept out of ``engine.py`` so the engine stays a thin façade: each function takes the engine's
parts (encoder, backend, page store) and the engine calls it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from colmax.backends.base import Backend
from colmax.errors import InvalidInputError, UnknownIdError
from colmax.types import Hit
from colmax.vision.heatmap import page_explanation
from colmax.vision.ingest import GRID_KEY, IMAGE_KEY, page_names
from colmax.vision.store import GRACE_SECONDS, PageStore, is_page_name

__all__ = ["collect_garbage", "copy_pages", "explain_pages", "page_image_name"]


def page_image_name(backend: Backend, id_: str) -> str:
    """The page-store name of document ``id_``'s page image.

    Raises:
        UnknownIdError: no such document.
        InvalidInputError: the document has no page image (a text document).
    """
    if not isinstance(id_, str):
        raise InvalidInputError(f"id must be a str, got {type(id_).__name__}")
    doc = backend.get([id_])[0]
    name = doc.metadata.get(IMAGE_KEY)
    if not is_page_name(name):
        raise InvalidInputError(f"document {id_!r} has no page image")
    return str(name)


def explain_pages(
    encoder: Any,
    backend: Backend,
    store: PageStore,
    query: str | None,
    query_vectors: torch.Tensor,
    hits: Sequence[Hit],
) -> list[Hit]:
    """Give each explained page hit its :class:`~colmax.vision.heatmap.PageExplanation`.

    Uses the stored vectors and the patch grid stored at index time: nothing is encoded again
    (a pooled page's grid points at its pooled vectors).
    """
    pages = [
        h
        for h in hits
        if h.explanation is not None
        and is_page_name(h.metadata.get(IMAGE_KEY))
        and is_page_name(h.metadata.get(GRID_KEY))
    ]
    if not pages:
        return list(hits)
    try:
        vectors = dict(zip([h.id for h in pages], backend.get_vectors([h.id for h in pages])))
    except UnknownIdError:  # deleted meanwhile by another writer: explain the others
        present = backend.existing([h.id for h in pages])
        ids = [h.id for h in pages if h.id in present]
        vectors = dict(zip(ids, backend.get_vectors(ids)))
    tokens_of = getattr(encoder, "query_tokens", None)
    tokens = tokens_of(query) if query and tokens_of is not None else []
    out = []
    for hit in hits:
        if hit.id not in vectors or hit.explanation is None:
            out.append(hit)
            continue
        name = str(hit.metadata[IMAGE_KEY])
        page = page_explanation(
            name,
            store.grid(str(hit.metadata[GRID_KEY])),
            query_vectors.numpy(),
            vectors[hit.id],
            tokens,
            lambda name=name: store.image(name),  # type: ignore[misc]
        )
        out.append(replace(hit, explanation=replace(hit.explanation, page=page)))
    return out


def referenced_names(backend: Backend) -> set[str]:
    """Every page-store name some stored document refers to."""
    names: set[str] = set()
    ids = backend.ids()
    for start in range(0, len(ids), 1000):
        for doc in backend.get(ids[start : start + 1000]):
            names.update(page_names(doc.metadata))
    return names


def collect_garbage(
    backend: Backend, store: PageStore, *, grace_seconds: float = GRACE_SECONDS
) -> int:
    """Remove page files no document refers to (deleted or replaced pages, crash leftovers)
    once older than ``grace_seconds``; returns how many. Cheap when there is nothing old."""
    # A page put by another thread's add() may not be committed yet: only files older than the
    # grace period (in memory too, by the time they were put) can be known unreferenced.
    if not store.has_old_files(grace_seconds):
        return 0
    return store.collect_garbage(referenced_names(backend), grace_seconds=grace_seconds)


def copy_pages(backend: Backend, store: PageStore, target: Path) -> None:
    """Copy the page files the documents of ``backend`` refer to into index folder ``target``
    (``Engine.save`` to another folder)."""
    names = referenced_names(backend)
    if names:
        store.copy_to(target, names)
