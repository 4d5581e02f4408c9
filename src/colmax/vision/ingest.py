"""Adding pages to an engine: encode, pool, store the image and the patch grid, commit.

``Engine.add(images=...)`` and ``Engine.add_files(...)`` call :func:`add_pages`. For each batch
of pages: the vision encoder embeds the images and locates their patches; token pooling
(``pool_factor``) clusters the vectors and the patch grid is rewritten to point at the pooled
rows; the page images and grids go to the :class:`~colmax.vision.store.PageStore` and are made
durable; then the backend commits documents and vectors in one write. A document is therefore
never committed without its image (see :mod:`colmax.vision.store` for the crash argument).

Each document's metadata carries, besides the caller's keys, ``"image"`` (the page image's
name in the store) and ``"patch_grid"`` (its grid's name); pages of files also carry
``"source"`` (the path) and ``"page"`` (1-based, PDFs only).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import Any

import numpy as np

from colmax.backends.base import Backend
from colmax.errors import InvalidInputError, NoEncoderError
from colmax.pooling import pool_with_rows
from colmax.types import PAGE_IMAGE_KEY
from colmax.validation import (
    as_list,
    check_add,
    check_ids,
    check_metadatas,
    check_pool_factor,
    check_positive_int,
)
from colmax.vision.pages import IMAGE_SUFFIXES, Page, load_image
from colmax.vision.store import PageStore, is_page_name

__all__ = ["GRID_KEY", "IMAGE_KEY", "add_pages", "image_pages", "page_names", "vision_encoder"]

logger = logging.getLogger(__name__)

#: Metadata key naming a document's page image in the page store (one name: colmax.types).
IMAGE_KEY = PAGE_IMAGE_KEY
#: Metadata key naming a document's patch grid in the page store.
GRID_KEY = "patch_grid"
#: ``add_files`` commits after this many pages, so a long run keeps its progress.
COMMIT_EVERY = 64


def vision_encoder(encoder: Any) -> Any:
    """The engine's encoder if it embeds images.

    Raises:
        NoEncoderError: no encoder, or one for texts.
    """
    if encoder is None or not hasattr(encoder, "encode_pages"):
        name = getattr(encoder, "name", None)
        raise NoEncoderError(
            "page images need a vision retriever (ColPali, ColQwen): "
            + (f"{name} embeds texts" if name else "this engine has no encoder")
            + '; e.g. Engine.from_pretrained("vidore/colqwen2-v1.0-hf", path=...)'
        )
    return encoder


def image_pages(images: Sequence[Any], texts: Sequence[Any] | None) -> list[Page]:
    """:class:`Page` records for ``Engine.add(images=...)`` (PIL images or image paths).

    An image given as a path keeps its path as ``"source"`` and its file's bytes when the
    page store serves its format (:data:`~colmax.vision.pages.IMAGE_SUFFIXES`; else PNG).
    """
    from pathlib import Path

    items = as_list(images, "images")
    payload = as_list(texts, "documents") if texts is not None else [""] * len(items)
    if len(payload) != len(items):
        raise InvalidInputError(f"got {len(payload)} documents for {len(items)} images")
    pages = []
    for i, (item, text) in enumerate(zip(items, payload)):
        if not isinstance(text, str):
            raise InvalidInputError(f"documents[{i}] must be a str, got {type(text).__name__}")
        if isinstance(item, (str, Path)):
            path = Path(item)
            # Bytes kept as given only in a format the page store serves; others (a scan
            # without a suffix, .jfif) are stored as PNG, as PIL images are.
            kept = path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
            data = path.read_bytes() if kept else None
            image = load_image(path)
            pages.append(Page(image, text, {"source": str(path)}, data, path.suffix.lower()))
        else:
            pages.append(Page(load_image(item), text))
    return pages


def add_pages(
    encoder: Any,
    backend: Backend,
    store: PageStore,
    pages: Iterable[Page],
    *,
    ids: Sequence[Any] | None = None,
    metadatas: Sequence[Mapping[str, Any] | None] | None = None,
    pool_factor: int = 1,
    batch_size: int | None = None,
    show_progress: bool | None = None,
    commit_every: int | None = None,
) -> list[str]:
    """Embed and commit pages; returns their ids in order.

    Args:
        encoder: a vision encoder (``encode_pages``).
        backend: where documents and vectors go.
        store: where page images and grids go.
        pages: the pages (a list, or a stream from :func:`colmax.vision.pages.read_pages`).
        ids: one id per page (default: ``Page.id`` for pages of files, new UUIDs otherwise).
        metadatas: one dict per page, merged over the page's own (a list only).
        pool_factor: token pooling (see ``Engine.add``).
        batch_size: pages per forward pass.
        show_progress: progress bar (``None``: above 16 pages).
        commit_every: commit after this many pages (``None``: everything in one commit).

    Raises:
        InvalidInputError, DuplicateIdError: bad ids, metadata or pool factor (nothing written).
            Counts are checked before anything is encoded when ``pages`` is a list, and for a
            stream without ``commit_every`` (read whole first). A stream committed in parts
            (``commit_every``; ``Engine.add_files``, which passes no ids or metadatas) refuses
            a part its ids or metadatas run out in before encoding it, but finds too many only
            at its end: the parts committed before are kept, as ``commit_every`` promises.
    """
    pool_factor = check_pool_factor(pool_factor)
    given_ids = check_ids(as_list(ids, "ids"), len(as_list(ids, "ids"))) if ids else None
    given_meta = (
        check_metadatas(metadatas, len(as_list(metadatas, "metadatas"))) if metadatas else None
    )
    if commit_every is not None:
        commit_every = check_positive_int(commit_every, "commit_every")
    if isinstance(pages, Sequence):  # counts known now: check before anything is encoded
        _check_counts(len(pages), given_ids, given_meta)
    stream = iter(pages)
    written: list[str] = []
    while True:
        chunk = list(islice(stream, commit_every)) if commit_every else list(stream)
        start = len(written)
        if not commit_every or not chunk:  # the last chunk: all counts known
            _check_counts(start + len(chunk), given_ids, given_meta)
        if not chunk:
            break
        _check_enough(start + len(chunk), given_ids, given_meta)
        chunk_ids = _ids(chunk, given_ids, start)
        chunk_meta: list[Mapping[str, Any] | None] = (
            list(given_meta[start : start + len(chunk)]) if given_meta else [None] * len(chunk)
        )
        written += _commit(
            encoder, backend, store, chunk, chunk_ids, chunk_meta, pool_factor, batch_size,
            show_progress,
        )  # fmt: skip
        if not commit_every:
            break
    return written


def _check_counts(
    n_pages: int, ids: list[str] | None, metadatas: list[dict[str, Any]] | None
) -> None:
    """One id and one metadata dict per page, when given."""
    if ids is not None and len(ids) != n_pages:
        raise InvalidInputError(f"got {len(ids)} ids for {n_pages} pages")
    if metadatas is not None and len(metadatas) != n_pages:
        raise InvalidInputError(f"got {len(metadatas)} metadatas for {n_pages} pages")


def _check_enough(
    n_pages: int, ids: list[str] | None, metadatas: list[dict[str, Any]] | None
) -> None:
    """A stream committed in parts: refuse a part the ids or metadatas run out in, before it
    is encoded (the parts before it are committed, as ``commit_every`` says)."""
    if ids is not None and len(ids) < n_pages:
        raise InvalidInputError(f"got {len(ids)} ids for more pages than that")
    if metadatas is not None and len(metadatas) < n_pages:
        raise InvalidInputError(f"got {len(metadatas)} metadatas for more pages than that")


def _ids(chunk: list[Page], given: list[str] | None, start: int) -> list[str | None]:
    if given is not None:
        return list(given[start : start + len(chunk)])
    return [p.id if p.metadata.get("source") else None for p in chunk]


def _commit(
    encoder: Any,
    backend: Backend,
    store: PageStore,
    pages: list[Page],
    ids: list[str | None],
    metadatas: list[Mapping[str, Any] | None],
    pool_factor: int,
    batch_size: int | None,
    show_progress: bool | None,
) -> list[str]:
    encoded = encoder.encode_pages(
        [p.image for p in pages], batch_size=batch_size, show_progress=show_progress
    )
    vectors, grids, metas = [], [], []
    for page, enc, extra in zip(pages, encoded, metadatas, strict=True):
        vecs, grid = enc.vectors.numpy(), enc.grid
        if pool_factor > 1:
            vecs, rows = pool_with_rows(vecs, pool_factor)
            grid = rows[grid].astype(np.int32) if grid is not None else None
        vectors.append(vecs)
        grids.append(grid)
        metas.append({**page.metadata, **(extra or {})})
    # Everything checked before the page store is written: a refused batch leaves no files.
    # Pages without a source (PIL images) and no given id get fresh UUIDs from check_add.
    batch = check_add([p.text for p in pages], None, metas, vectors, backend.dim)
    batch_ids = [given or new for given, new in zip(ids, batch.ids, strict=True)]
    check_ids(batch_ids, len(batch_ids))
    stored = [dict(m or {}) for m in batch.metadatas]
    for page, grid, meta in zip(pages, grids, stored, strict=True):
        if page.data is not None:
            meta[IMAGE_KEY] = store.put(page.data, page.suffix)
        else:
            meta[IMAGE_KEY] = store.put_image(page.image)
        if grid is not None:
            meta[GRID_KEY] = store.put_grid(grid)
    store.sync()  # durable before the documents that name them are committed
    backend.upsert(batch_ids, batch.texts, stored, batch.vectors or [])
    return batch_ids


def page_names(metadata: Mapping[str, Any]) -> list[str]:
    """The page-store files a document's metadata refers to."""
    return [str(metadata[k]) for k in (IMAGE_KEY, GRID_KEY) if is_page_name(metadata.get(k))]
