"""The write half of :class:`~colmax.Engine`: add (text, vectors, page images), delete, get.

A mixin: :class:`Writing` holds the methods, :class:`~colmax.engine.core.Engine` the state
(encoder, backend, chunker, page store). Chunking happens here, so every door that adds text
through the engine splits it the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from colmax.backends.base import Backend, Missing
from colmax.chunking.parents import documents_by_id, entries_of, plan_write
from colmax.chunking.splitter import Chunker
from colmax.encoders.base import Encoder
from colmax.engine.queries import encode_documents
from colmax.errors import DimensionMismatchError, InvalidEmbeddingError, InvalidInputError
from colmax.filters import MATCH_ALL, FilterLike, parse_filter
from colmax.pooling import pool_documents
from colmax.types import Document, WrittenIds
from colmax.validation import (
    as_list,
    check_add,
    check_ids,
    check_metadatas,
    check_missing,
    check_pool_factor,
    check_texts,
)

if TYPE_CHECKING:
    from colmax.indexes.plaid.stream import TokenSource

__all__ = ["Writing"]


@dataclass(frozen=True)
class _Written:
    parents: list[str]
    entry_ids: list[str]


class Writing:
    """Add, delete and get (mixed into :class:`~colmax.Engine`)."""

    _encoder: Encoder | None
    _backend: Backend
    _dim: int
    _chunker: Chunker | None
    _pages: Any

    def add(
        self,
        documents: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        embeddings: Sequence[Any] | None = None,
        images: Sequence[Any] | None = None,
        skip_empty: bool = False,
        batch_size: int | None = None,
        show_progress: bool | None = None,
        pool_factor: int = 1,
    ) -> WrittenIds:
        """Add or replace (upsert by id) documents.

        With chunking (``chunk_tokens`` when the engine was made, or recorded in its folder),
        each text is stored as chunks ``"<id>#<n>"`` carrying the document's metadata plus
        ``parent_id``, ``chunk_index``, ``char_start``, ``char_end``; a document added again
        replaces all its previous chunks (or its unchunked copy) in the same write.

        Args:
            documents: texts. Optional when ``embeddings`` are given (then stored as text).
            ids: one unique string id per document; new UUIDs when omitted. An id already in
                the index replaces that document, its metadata and its vectors.
            metadatas: one JSON-compatible dict per document (filterable in :meth:`search`).
            embeddings: precomputed ``(n_tokens, dim)`` arrays or tensors, one per document,
                used instead of encoding (L2-normalised on the way in; never chunked).
            images: page images (PIL images or image file paths) for a vision retriever
                (ColPali, ColQwen); ``documents`` are then their optional texts (stored and
                returned with hits). Each page image and its patch grid are stored in the
                index (see :meth:`add_files`, :meth:`page_image`).
            skip_empty: drop empty/whitespace texts (logged) instead of raising.
            batch_size, show_progress: passed to the encoder.
            pool_factor: token pooling (:mod:`colmax.pooling`, needs ``colmax[pooling]``):
                each document's vectors, encoded or precomputed, are clustered and
                ``ceil(n / pool_factor)`` cluster means are stored (``1``: every vector). 2
                halves the index with little loss in ranking quality. Queries are never
                pooled; :meth:`explain` re-encodes the text of pooled documents.

        Returns:
            The documents' ids, in input order (``.entries``: how many entries were stored,
            chunks when chunking).

        Raises:
            EmptyTextError, DuplicateIdError, InvalidInputError, InvalidEmbeddingError,
            DimensionMismatchError: nothing is written when any input is invalid (including
                a ``pool_factor`` that is not a positive integer, or scipy missing for one
                above 1).
        """
        if images is not None:
            if embeddings is not None:
                raise InvalidInputError("pass images=... or embeddings=..., not both")
            from colmax.vision.ingest import add_pages, image_pages, vision_encoder

            encoder = vision_encoder(self._encoder)
            pages = image_pages(images, documents)
            pages_written = add_pages(
                encoder, self._backend, self._pages, pages, ids=ids, metadatas=metadatas,
                pool_factor=pool_factor, batch_size=batch_size, show_progress=show_progress,
            )  # fmt: skip
            return WrittenIds(pages_written, len(pages_written))
        pool_factor = check_pool_factor(pool_factor)
        batch = check_add(documents, ids, metadatas, embeddings, self._dim, skip_empty=skip_empty)
        if not batch.ids:
            return WrittenIds([], 0)
        metas = [dict(m or {}) for m in batch.metadatas]
        if batch.vectors is not None:  # precomputed: stored as they are, never chunked
            plan = plan_write(self._backend, None, batch.ids, batch.texts, metas)
            self._upsert(
                plan.ids, plan.texts, plan.metadatas, batch.vectors, plan.remove, pool_factor
            )
            return WrittenIds(batch.ids, len(batch.ids))
        written = self._write(
            self._chunker, batch.texts, batch.ids, metas, batch_size, show_progress, pool_factor
        )
        return WrittenIds(written.parents, len(written.entry_ids))

    def _add_texts(
        self,
        chunker: Chunker | None,
        texts: list[str],
        ids: list[str],
        metadatas: Sequence[Mapping[str, Any] | None],
        *,
        batch_size: int | None = None,
        show_progress: bool | None = None,
        pool_factor: int = 1,
    ) -> _Written:
        """:meth:`add` of texts with another chunker than the engine's (the deprecated
        ``colmax.chunking.upsert_documents``)."""
        batch = check_add(texts, ids, metadatas, None, self._dim)
        metas = [dict(m or {}) for m in batch.metadatas]
        pool = check_pool_factor(pool_factor)
        return self._write(chunker, batch.texts, batch.ids, metas, batch_size, show_progress, pool)

    def _write(
        self,
        chunker: Chunker | None,
        texts: list[str],
        ids: list[str],
        metas: list[dict[str, Any]],
        batch_size: int | None,
        show_progress: bool | None,
        pool_factor: int,
    ) -> _Written:
        plan = plan_write(self._backend, chunker, ids, texts, metas)
        vectors = encode_documents(self._encoder, plan.texts, batch_size, show_progress)
        self._upsert(plan.ids, plan.texts, plan.metadatas, vectors, plan.remove, pool_factor)
        return _Written(plan.parents, plan.ids)

    def _upsert(
        self,
        ids: list[str],
        texts: list[str],
        metas: list[dict[str, Any]],
        vectors: list[np.ndarray],
        remove: list[str],
        pool_factor: int,
    ) -> None:
        if pool_factor > 1:
            vectors = pool_documents(vectors, pool_factor)
        self._backend.upsert(ids, texts, metas, vectors, remove=remove)

    def add_files(
        self,
        paths: str | Path | Sequence[str | Path],
        *,
        dpi: int = 150,
        metadata: Mapping[str, Any] | None = None,
        pool_factor: int = 1,
        batch_size: int | None = None,
        show_progress: bool | None = None,
        commit_every: int = 64,
    ) -> list[str]:
        """Index PDFs and image files (and the folders given, recursively) page by page.

        Needs a vision retriever (``Engine.from_pretrained("vidore/colqwen2-v1.0-hf", ...)``)
        and ``colmax[vision]``. Each PDF page is rendered at ``dpi`` and its text layer becomes
        the document text (what an LLM reads); image files are pages as they are (empty text).
        Document ids are ``"<path>#page=<n>"`` for PDF pages and the path for images, so
        indexing the same files again replaces their pages. Metadata: ``"source"`` (the path),
        ``"page"`` (1-based, PDFs), ``"image"`` and ``"patch_grid"`` (page-store names: see
        :meth:`page_image`), plus ``metadata``.

        Args:
            paths: files and folders.
            dpi: PDF rendering resolution.
            metadata: extra metadata for every page.
            pool_factor: token pooling of page vectors (3 keeps about a third; see
                :meth:`add`); heatmaps still work, on pooled patches.
            batch_size: pages per forward pass.
            show_progress: progress bar (``None``: above 16 pages).
            commit_every: pages per commit: a long run keeps what it has done if it stops.

        Returns:
            The ids written, in file and page order.

        Raises:
            NoEncoderError: the engine's model does not embed images.
            InvalidInputError: a missing path, a file that is neither PDF nor image, an
                unreadable PDF, a bad ``dpi``. Paths are all checked before the first page is
                rendered; a PDF that fails to render midway keeps the pages committed before.
        """
        from colmax.vision.ingest import add_pages, vision_encoder
        from colmax.vision.pages import read_pages

        encoder = vision_encoder(self._encoder)
        pages = read_pages(paths, dpi=dpi)
        extra = check_metadatas([metadata], 1)[0] if metadata is not None else None
        if extra:
            pages = (replace(p, metadata={**extra, **p.metadata}) for p in pages)
        return add_pages(
            encoder, self._backend, self._pages, pages, pool_factor=pool_factor,
            batch_size=batch_size, show_progress=show_progress, commit_every=commit_every,
        )  # fmt: skip

    def page_image(self, id_: str) -> Any:
        """The stored page image of document ``id_`` (an RGB PIL image).

        Raises:
            UnknownIdError: no such document.
            InvalidInputError: the document has no page image.
        """
        from colmax.vision.engine_pages import page_image_name

        return self._pages.image(page_image_name(self._backend, id_))

    def page_image_path(self, id_: str) -> Path | None:
        """Where the stored page image of document ``id_`` lies on disk (inside the index
        folder; ``None`` for an in-memory engine). Read-only: the file belongs to the index.

        Raises:
            UnknownIdError: no such document.
            InvalidInputError: the document has no page image.
        """
        from colmax.vision.engine_pages import page_image_name

        return self._pages.path(page_image_name(self._backend, id_))  # type: ignore[no-any-return]

    def page_image_mime_type(self, id_: str) -> str:
        """The media type of document ``id_``'s stored page image (``"image/png"``...).

        Raises:
            UnknownIdError: no such document.
            InvalidInputError: the document has no page image.
        """
        from colmax.vision.engine_pages import page_image_name

        return self._pages.mime_type(page_image_name(self._backend, id_))  # type: ignore[no-any-return]

    def page_image_bytes(self, id_: str) -> tuple[bytes, str]:
        """The stored page image file of document ``id_`` and its media type
        (``("...", "image/png")``), for serving it as it is.

        Raises:
            UnknownIdError: no such document.
            InvalidInputError: the document has no page image.
        """
        from colmax.vision.engine_pages import page_image_name

        name = page_image_name(self._backend, id_)
        return self._pages.read(name), self._pages.mime_type(name)

    def add_stream(
        self,
        source: TokenSource,
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        documents: Sequence[str] | None = None,
        *,
        show_progress: bool | None = None,
    ) -> list[str]:
        """Add (upsert) many precomputed documents in bounded memory (``index="plaid"``).

        The vectors are read from ``source`` (:class:`~colmax.indexes.plaid.NpyFileSource`,
        :class:`~colmax.indexes.plaid.ArraySource`, ...) a chunk of documents at a time and
        coded as they come; an untrained index trains its codec on a sample of them first.
        Nothing is committed until every document is coded: an error or Ctrl-C leaves the
        index as it was. Documents are stored as they are (never chunked).

        Args:
            source: the documents' token vectors (L2-normalised on the way in).
            ids, metadatas, documents: as in :meth:`add`, one per document of ``source``.
            show_progress: progress bars with an ETA; ``None`` shows them for 1 M tokens on.

        Returns:
            The ids written, in order.

        Raises:
            InvalidInputError: not a plaid index, or arguments of the wrong length.
            InvalidEmbeddingError, DimensionMismatchError: bad vectors (nothing is written).
        """
        n = len(source.lengths)
        if source.dim != self._dim:
            raise DimensionMismatchError(
                f"the source has dimension {source.dim}, but this index uses {self._dim}"
            )
        if n and int(np.min(source.lengths)) < 1:
            raise InvalidEmbeddingError("every document of the source needs at least one token")
        if ids is not None:
            ids_ = check_ids(as_list(ids, "ids"), n)
        else:
            ids_ = [uuid.uuid4().hex for _ in range(n)]
        texts = check_texts(as_list(documents, "documents")) if documents is not None else None
        if texts is not None and len(texts) != n:
            raise InvalidInputError(f"got {len(texts)} documents for {n} vectors")
        metas = check_metadatas(metadatas, n)
        if n:
            self._backend.add_stream(
                ids_, texts or [""] * n, [m or {} for m in metas], source, show_progress
            )
        return ids_

    def delete(
        self,
        ids: Sequence[str] | None = None,
        *,
        filter: FilterLike = None,
        missing: Missing = "raise",
    ) -> int:
        """Delete documents by id or by metadata filter; returns how many entries went.

        A chunked document's id deletes all its chunks; a chunk id deletes that chunk.

        Args:
            ids: the documents to delete.
            filter: instead of ``ids``: delete every entry the filter matches (chunks carry
                their document's metadata, so a filter on it deletes whole documents). An
                empty filter is refused: it would delete everything.
            missing: ``"raise"`` (nothing is deleted when an id is unknown) or ``"skip"``
                (unknown ids are ignored).

        Raises:
            UnknownIdError: some ids are not in the index and ``missing="raise"``.
            InvalidInputError: both or neither of ``ids`` and ``filter``, an empty filter.
            FilterError: a malformed filter.
        """
        missing = check_missing(missing)
        if (ids is None) == (filter is None):
            raise InvalidInputError("delete() takes ids, or filter=..., not both or neither")
        if filter is not None:
            tree = parse_filter(filter)
            if tree == MATCH_ALL:
                raise InvalidInputError(
                    "delete(filter={}) would delete every document; to empty the index, "
                    "delete(engine.ids(), missing='skip')"
                )
            doomed = sorted(self._backend.matching_ids(tree))
            missing = "skip"  # matched a moment ago: another writer may delete some first
        else:
            ids_ = as_list(ids, "ids")
            if not ids_:
                return 0
            check_ids(ids_, len(ids_))  # types first (an unhashable id), then duplicates
            doomed = entries_of(self._backend, ids_, missing)
        deleted = self._backend.delete(doomed, missing=missing) if doomed else 0
        if deleted and self._pages.names():  # page images no document needs (folder or memory)
            from colmax.vision.engine_pages import collect_garbage

            collect_garbage(self._backend, self._pages)
        return deleted

    def get(self, ids: Sequence[str], *, missing: Missing = "raise") -> list[Document]:
        """Stored documents (or chunks, ``"<id>#<n>"``) by id, in the order given.

        A document stored as chunks comes back by its own id (the id searches give) as one
        document: its metadata without the chunk keys, its text rebuilt from the chunks from
        its first word to its last (the whitespace between two chunks as spaces).

        Args:
            ids: the ids.
            missing: ``"raise"``, or ``"skip"`` to leave out the ids that are not stored.

        Raises:
            UnknownIdError: some ids are not in the index and ``missing="raise"``.
        """
        return documents_by_id(self._backend, as_list(ids, "ids"), check_missing(missing))
