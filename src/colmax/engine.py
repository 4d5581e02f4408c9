"""The engine: the one object every door (LangChain, LlamaIndex, CLI, server) talks to."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from colmax import __version__, limits
from colmax.backends.base import Backend
from colmax.backends.local import LOCAL_KINDS, LocalBackend
from colmax.encoders.base import Encoder
from colmax.engine_explain import explain_document, explain_hits
from colmax.engine_hybrid import HybridSide, check_hybrid
from colmax.errors import (
    DimensionMismatchError,
    EncoderMismatchError,
    InvalidEmbeddingError,
    InvalidInputError,
    NoEncoderError,
    UnknownIdError,
)
from colmax.explain import Explanation
from colmax.indexes.plaid.stream import TokenSource
from colmax.pooling import pool_documents
from colmax.scoring import maxsim_ragged
from colmax.store.filters import compile_filter
from colmax.store.manifest import Manifest
from colmax.store.storage import is_index_folder
from colmax.types import Document, Hit
from colmax.validation import (
    as_list,
    check_add,
    check_flag,
    check_ids,
    check_k,
    check_metadatas,
    check_pool_factor,
    check_texts,
    to_vectors,
)
from colmax.vision.store import PageStore

__all__ = ["Engine"]

logger = logging.getLogger(__name__)

_QDRANT = "qdrant"
_INDEX_KINDS = (*LOCAL_KINDS, _QDRANT)
Row = tuple[str, str, dict[str, Any]]  # id, text, metadata


class Engine:
    """Encode, index, search and rerank with late interaction (MaxSim).

    Args:
        encoder: a token encoder (see :func:`colmax.encoders.load_encoder`), or ``None`` for an
            engine fed only precomputed vectors (then ``dim`` is required).
        dim: vector dimension when there is no encoder.
        index: ``"flat"`` (exact MaxSim, the default for new indexes), ``"plaid"`` (compressed,
            for large corpora) or ``"qdrant"`` (a Qdrant multivector collection, needs
            ``colmax[qdrant]``). When ``path`` holds an index, its
            own kind is used and a different ``index`` is an error.
        path: an index folder. If it holds an index, it is opened; otherwise one is created
            there. Every ``add``/``delete`` on a folder-backed engine is committed durably before
            the call returns. ``None`` keeps everything in memory until :meth:`save`.
        lock_timeout: seconds a writer waits for another process's write to finish.
        index_options: settings of the chosen index (for ``"qdrant"``: ``url``, ``api_key``,
            ``collection``, shard and replication settings; see ``docs/qdrant.md``).

    Examples:
        >>> import numpy as np
        >>> engine = Engine(dim=4)
        >>> engine.add(embeddings=[np.eye(4)[:2], np.eye(4)[2:]], ids=["a", "b"])
        ['a', 'b']
        >>> [h.id for h in engine.search(query_embeddings=np.eye(4)[:1], k=1)]
        ['a']
    """

    def __init__(
        self,
        encoder: Encoder | None = None,
        *,
        dim: int | None = None,
        index: str | None = None,
        path: str | Path | None = None,
        lock_timeout: float = 60.0,
        index_options: Mapping[str, Any] | None = None,
    ) -> None:
        if index is not None and index not in _INDEX_KINDS:
            raise InvalidInputError(f"unknown index {index!r}; available: {list(_INDEX_KINDS)}")
        folder = Path(path) if path is not None else None
        existing = folder is not None and is_index_folder(folder)
        if encoder is None and dim is None and not existing:
            raise InvalidInputError("Engine needs an encoder, or dim=... for precomputed vectors")
        if encoder is not None and dim is not None and dim != encoder.dim:
            raise InvalidInputError(f"dim={dim} contradicts the encoder's dimension {encoder.dim}")
        options = dict(index_options or {})
        backend: Backend
        if folder is not None and existing:
            manifest = Manifest.read(folder)
            if index is not None and index != manifest.index_kind:
                raise InvalidInputError(
                    f"{folder} holds a {manifest.index_kind!r} index, not {index!r}; "
                    "omit index=... to open it as it is"
                )
            _check_compatible(manifest, encoder, dim, folder)
            backend = _open_backend(folder, manifest, lock_timeout, options)
        else:
            manifest = Manifest(
                dim=encoder.dim if encoder is not None else int(dim),  # type: ignore[arg-type]
                index_kind=index or "flat",
                encoder=encoder.config() if encoder is not None else None,
                colmax_version=__version__,
            )
            backend = _create_backend(folder, manifest, lock_timeout, options)
        self._attach(encoder, backend)

    @classmethod
    def _from_backend(cls, encoder: Encoder | None, backend: Backend) -> Engine:
        engine = cls.__new__(cls)
        engine._attach(encoder, backend)
        return engine

    def _attach(self, encoder: Encoder | None, backend: Backend) -> None:
        self._encoder = encoder
        self._backend = backend
        self._dim = backend.dim
        self._hybrid = HybridSide(backend)
        self._pages = PageStore(backend.path)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        model: str | Path,
        *,
        index: str | None = None,
        path: str | Path | None = None,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        index_options: Mapping[str, Any] | None = None,
        qdrant_url: str | None = None,
        api_key: str | None = None,
        collection: str | None = None,
        **encoder_kwargs: Any,
    ) -> Engine:
        """Load a model (Hub id or local folder, any supported format) and make an engine.

        ``encoder_kwargs`` override checkpoint settings (``query_length``, ``document_length``,
        ``batch_size``, ...). See :func:`colmax.encoders.load_encoder`. ``qdrant_url``,
        ``api_key`` and ``collection`` are shortcuts for the same ``index_options`` of
        ``index="qdrant"``.
        """
        from colmax.encoders import load_encoder  # transformers is slow to import: only when needed

        options = _merge_qdrant_options(index_options, qdrant_url, api_key, collection)
        encoder = load_encoder(str(model), device=device, dtype=dtype, **encoder_kwargs)
        return cls(encoder, index=index, path=path, index_options=options)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        encoder: Encoder | None = None,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        lock_timeout: float = 60.0,
        api_key: str | None = None,
        qdrant_url: str | None = None,
        compile: bool = False,
        download: bool = False,
    ) -> Engine:
        """Open an index folder; the encoder recorded in its manifest is loaded again.

        That model comes from a local folder or the Hugging Face cache; ``download=True``
        fetches it from the Hub when it is in neither (the name is read from the folder, so
        a folder from someone else would otherwise decide what is downloaded and run).
        ``compile`` runs that encoder through ``torch.compile`` (see
        :func:`colmax.encoders.load_encoder`). ``api_key`` is for a Qdrant server index (the
        manifest never stores it; the ``COLMAX_QDRANT_API_KEY`` environment variable works
        too); it is sent only when ``qdrant_url`` (or ``$COLMAX_QDRANT_URL``) names the server
        the manifest records, so that a folder from someone else cannot collect your key.

        Raises:
            IndexFormatError: the folder is not a colmax index or is damaged.
            EncoderMismatchError: ``encoder`` differs from the one the index was built with.
        """
        path = Path(path)
        manifest = Manifest.read(path)
        if encoder is None and manifest.encoder is not None:
            from colmax.encoders import load_encoder

            config = dict(manifest.encoder)
            config.pop("device", None)
            config.pop("dtype", None)
            encoder = load_encoder(
                device=device, dtype=dtype, compile=compile, download=download, **config
            )
        options = {
            name: value
            for name, value in (("api_key", api_key), ("url", qdrant_url))
            if value is not None
        } or None
        return cls(
            encoder,
            dim=None if encoder else manifest.dim,
            path=path,
            lock_timeout=lock_timeout,
            index_options=options,
        )

    # ------------------------------------------------------------------ properties
    @property
    def encoder(self) -> Encoder | None:
        """The loaded encoder (``encode_queries`` / ``encode_documents``), or ``None``."""
        return self._encoder

    @property
    def dim(self) -> int:
        """Dimension of every token vector in the index."""
        return self._dim

    @property
    def path(self) -> Path | None:
        """The index folder this engine commits to, or ``None`` when in memory."""
        return self._backend.path

    @property
    def backend(self) -> Backend:
        """Where documents and vectors live (:class:`~colmax.backends.base.Backend`)."""
        return self._backend

    def __len__(self) -> int:
        return len(self._backend)

    def __contains__(self, id_: object) -> bool:
        return id_ in self._backend

    def __repr__(self) -> str:
        name = self._encoder.name if self._encoder else None
        return f"Engine(model={name!r}, index={self._backend.kind!r}, documents={len(self)}, path={self.path})"

    def ids(self) -> list[str]:
        """All document ids, oldest first."""
        return self._backend.ids()

    def info(self) -> dict[str, Any]:
        """Counts and settings (what ``colmax info`` prints)."""
        info = self._backend.info()
        info["encoder"] = self._encoder.config() if self._encoder else None
        return info

    # ------------------------------------------------------------------ writes
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
    ) -> list[str]:
        """Add or replace (upsert by id) documents.

        Args:
            documents: texts. Optional when ``embeddings`` are given (then stored as text).
            ids: one unique string id per document; new UUIDs when omitted. An id already in
                the index replaces that document, its metadata and its vectors.
            metadatas: one JSON-compatible dict per document (filterable in :meth:`search`).
            embeddings: precomputed ``(n_tokens, dim)`` arrays or tensors, one per document,
                used instead of encoding (L2-normalised on the way in).
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
            The ids written, in input order.

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
            return add_pages(
                encoder, self._backend, self._pages, pages, ids=ids, metadatas=metadatas,
                pool_factor=pool_factor, batch_size=batch_size, show_progress=show_progress,
            )  # fmt: skip
        pool_factor = check_pool_factor(pool_factor)
        batch = check_add(documents, ids, metadatas, embeddings, self._dim, skip_empty=skip_empty)
        texts, ids_, metas, vectors = batch.texts, batch.ids, batch.metadatas, batch.vectors
        if not ids_:
            return []
        if vectors is None:
            vectors = self._encode_documents(texts, batch_size, show_progress)
        if pool_factor > 1:
            vectors = pool_documents(vectors, pool_factor)
        self._backend.upsert(ids_, texts, [m or {} for m in metas], vectors)
        return ids_

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

        return self._pages.path(page_image_name(self._backend, id_))

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
        index as it was.

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
        if not isinstance(self._backend, LocalBackend) or self._backend.kind != "plaid":
            raise InvalidInputError("add_stream() needs an index='plaid' engine")
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

    def delete(self, ids: Sequence[str]) -> int:
        """Delete documents by id; returns how many were deleted.

        Raises:
            UnknownIdError: some ids are not in the index (nothing is deleted).
        """
        ids_ = as_list(ids, "ids")
        if not ids_:
            return 0
        check_ids(ids_, len(ids_))  # types first (an unhashable id), then duplicates
        deleted = self._backend.delete(ids_)
        if self._pages.names():  # page images no document needs any more (folder or memory)
            from colmax.vision.engine_pages import collect_garbage

            collect_garbage(self._backend, self._pages)
        return deleted

    def save(self, path: str | Path) -> Path:
        """Write the index to ``path`` (a new folder, or an existing index of the same model).

        A folder-backed engine is already durable; saving it to its own folder is a no-op.
        Writing to another path copies the live documents (compacted).
        """
        target = Path(path).absolute()
        if self.path is not None and target == self.path:
            return target
        if is_index_folder(target):
            manifest = Manifest.read(target)
            _check_compatible(manifest, self._encoder, None if self._encoder else self._dim, target)
        saved = self._backend.save(target)
        from colmax.vision.engine_pages import copy_pages

        copy_pages(self._backend, self._pages, saved)
        return saved

    def close(self) -> None:
        """Release files and connections (the engine is unusable afterwards)."""
        self._backend.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reads
    def get(self, ids: Sequence[str]) -> list[Document]:
        """Stored documents by id, in the order given.

        Raises:
            UnknownIdError: some ids are not in the index.
        """
        return self._backend.get(as_list(ids, "ids"))

    def search(
        self,
        query: str | Sequence[str] | None = None,
        k: int = 10,
        filter: Mapping[str, Any] | None = None,
        *,
        query_embeddings: Sequence[Any] | None = None,
        batch_size: int | None = None,
        explain: bool = False,
        hybrid: str | None = None,
        candidates: int = 100,
        weight: float = 0.5,
    ) -> list[Hit] | list[list[Hit]]:
        """Top-``k`` documents by MaxSim, or by MaxSim fused with BM25 (``hybrid``).

        Args:
            query: one query (returns ``list[Hit]``) or a list (returns one list per query).
            k: results per query; clamped to the number of matching documents.
            filter: metadata filter (see :mod:`colmax.store.filters`).
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
                :mod:`colmax.engine_hybrid` for how the BM25 index is kept current.
            candidates: hybrid only: hits taken from each side before fusing.
            weight: hybrid only: weight of the late-interaction side in ``[0, 1]`` (BM25
                gets ``1 - weight``; 0.5 with ``"rrf"`` is plain RRF).

        Raises:
            InvalidInputError: ``k <= 0``, empty query, both or neither of query/query_embeddings,
                bad hybrid options.
            FilterError: malformed filter.
        """
        k = check_k(k)
        check_flag(explain, "explain")
        compile_filter(filter)  # malformed filters fail before any encoding work
        if hybrid is not None:
            check_hybrid(hybrid, candidates, weight, text_query=query is not None)
        single, texts, qvecs = self._queries(query, query_embeddings, batch_size)
        if hybrid is None:
            hits = self._backend.search(qvecs, k, filter)
        else:
            hits = [
                self._hybrid.search(
                    t or "", q, k, filter, mode=hybrid, candidates=candidates, weight=weight
                )
                for t, q in zip(texts, qvecs)
            ]
        if explain:
            hits = [
                self._explain_pages(t, q, explain_hits(self._encoder, self._backend, t, q, h))
                for t, q, h in zip(texts, qvecs, hits)
            ]
        return hits[0] if single else hits

    def _explain_pages(self, query: str | None, qvecs: torch.Tensor, hits: list[Hit]) -> list[Hit]:
        """Heatmap data for page hits (no-op for text documents)."""
        from colmax.vision.engine_pages import explain_pages

        return explain_pages(self._encoder, self._backend, self._pages, query, qvecs, hits)

    def rerank(
        self,
        query: str | None,
        documents: Sequence[str] | None = None,
        k: int | None = None,
        *,
        ids: Sequence[str] | None = None,
        query_embedding: Any | None = None,
        batch_size: int | None = None,
        explain: bool = False,
    ) -> list[Hit]:
        """Score candidates from anywhere against one query; best first.

        Args:
            query: the query text (or ``None`` with ``query_embedding``).
            documents: candidate texts. Without ``ids`` they are all encoded now and hit ids are
                their positions as strings (``"0"``, ``"1"``, ...).
            k: keep the best ``k`` (default: all).
            ids: alone: ids of documents in the index, scored with their stored vectors
                (nothing is re-encoded; unknown ids raise ``UnknownIdError``). With
                ``documents``: one id per text; a candidate whose id is in the index with the
                same text reuses the stored vectors, the others are encoded.
            query_embedding: a precomputed ``(n_tokens, dim)`` query instead of ``query``.
            explain: give each returned hit its :class:`~colmax.explain.Explanation` (of the
                vectors just scored; see :meth:`explain`).

        Returns:
            Hits sorted by score (ties keep the input order), ``rank`` 0-based.

        Raises:
            InvalidInputError: no candidates given, or more than
                :data:`colmax.limits.MAX_RERANK_CANDIDATES` (1,000): rerank in batches.
        """
        if documents is None and ids is None:
            raise InvalidInputError("rerank() needs documents=... (texts), ids=..., or both")
        _check_candidates(documents if documents is not None else ids)
        k = check_k(k) if k is not None else None
        check_flag(explain, "explain")
        _, texts, qvecs = self._queries(
            query, None if query_embedding is None else [query_embedding], batch_size
        )
        if documents is None:
            stored = self._backend.get_with_vectors(as_list(ids, "ids"))
            cands: list[Row] = [(d.id, d.text, d.metadata) for d, _ in stored]
            vecs = [torch.from_numpy(np.asarray(v, dtype=np.float32)) for _, v in stored]
        else:
            texts_ = check_texts(as_list(documents, "documents"))
            given = check_ids(as_list(ids, "ids"), len(texts_)) if ids is not None else None
            cands, vecs = self._text_candidates(texts_, given, batch_size)
        if not cands:
            return []
        scores = maxsim_ragged(qvecs, vecs)[0].tolist()
        order = sorted(range(len(scores)), key=lambda i: -scores[i])[: k or len(scores)]
        hits = [
            Hit(cands[i][0], float(scores[i]), cands[i][1], dict(cands[i][2]), r)
            for r, i in enumerate(order)
        ]
        if explain:  # of the very vectors just scored
            enc, text, q = self._encoder, texts[0], qvecs[0]
            hits = [
                replace(h, explanation=explain_document(enc, text, q, Document(*cands[i]), vecs[i]))
                for h, i in zip(hits, order)
            ]
        return hits

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
            doc_id: the id of a stored document.
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
        _, texts, qvecs = self._queries(
            query, None if query_embedding is None else [query_embedding], None
        )
        doc, vecs = self._backend.get_with_vectors([doc_id])[0]
        e = explain_document(
            self._encoder, texts[0], qvecs[0], doc, vecs, max_passages=max_passages
        )
        hit = Hit(doc.id, e.score, doc.text, doc.metadata, 0, explanation=e)
        return self._explain_pages(texts[0], qvecs[0], [hit])[0].explanation or e

    def _text_candidates(
        self, texts: list[str], ids: list[str] | None, batch_size: int | None
    ) -> tuple[list[Row], list[torch.Tensor]]:
        reuse: dict[int, np.ndarray] = {}  # position -> stored vectors of the same text
        if ids is not None:
            present = sorted(self._backend.existing(ids))
            try:
                stored = {d.id: (d.text, v) for d, v in self._backend.get_with_vectors(present)}
            except UnknownIdError:  # deleted meanwhile by another writer: encode them all
                stored = {}
            reuse = {
                i: stored[id_][1]
                for i, id_ in enumerate(ids)
                if id_ in stored and stored[id_][0] == texts[i]
            }
        fresh = [i for i in range(len(texts)) if i not in reuse]
        vecs: list[np.ndarray | None] = [reuse.get(i) for i in range(len(texts))]
        if fresh:
            encoded = self._encode_documents([texts[i] for i in fresh], batch_size, None)
            for i, v in zip(fresh, encoded):
                vecs[i] = v
        names = ids if ids is not None else [str(i) for i in range(len(texts))]
        tensors = [torch.from_numpy(np.asarray(v, dtype=np.float32)) for v in vecs if v is not None]
        return [(names[i], t, {}) for i, t in enumerate(texts)], tensors

    # ------------------------------------------------------------------ internals

    def _encode_documents(
        self, texts: list[str], batch_size: int | None, show_progress: bool | None
    ) -> list[np.ndarray]:
        if self._encoder is None:
            raise NoEncoderError(
                "this engine has no encoder: pass precomputed embeddings instead of text"
            )
        out = self._encoder.encode_documents(
            texts, batch_size=batch_size, show_progress=show_progress
        )
        return [t.numpy() for t in out]

    def _queries(
        self, query: Any, query_embeddings: Sequence[Any] | None, batch_size: int | None
    ) -> tuple[bool, list[str | None], list[torch.Tensor]]:
        """``(single, texts, vectors)``: texts are ``None`` for queries given as vectors."""
        if (query is None) == (query_embeddings is None):
            raise InvalidInputError(
                "pass exactly one of a query text (or list) and query_embeddings=..."
            )
        if query_embeddings is not None:
            embs = query_embeddings
            single = isinstance(embs, (np.ndarray, torch.Tensor)) and embs.ndim == 2
            vecs = to_vectors(
                [embs] if single else as_list(embs, "query_embeddings"),
                self._dim,
                "query_embeddings",
            )
            return single, [None] * len(vecs), [torch.from_numpy(v) for v in vecs]
        single = isinstance(query, str)
        texts = check_texts([query] if single else as_list(query, "query"), "queries")
        if not texts:
            raise InvalidInputError("search() got an empty list of queries")
        if self._encoder is None:
            raise NoEncoderError("this engine has no encoder: pass query_embeddings=...")
        vectors = list(self._encoder.encode_queries(texts, batch_size=batch_size))
        return single, list(texts), vectors


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
            f"MAX_RERANK_CANDIDATES), got {len(candidates)}: rerank in batches, or search first"
        )


def _check_compatible(
    manifest: Manifest, encoder: Encoder | None, dim: int | None, path: Path
) -> None:
    if dim is not None and dim != manifest.dim:
        raise EncoderMismatchError(f"{path} holds vectors of dimension {manifest.dim}, not {dim}")
    if encoder is None:
        return
    if encoder.dim != manifest.dim:
        raise EncoderMismatchError(
            f"{path} was built with dimension {manifest.dim}, but the encoder gives {encoder.dim}; "
            "open it with Engine.load(path) to use the model it was built with"
        )
    built = (manifest.encoder or {}).get("model_name_or_path")
    if built is not None and built != encoder.config().get("model_name_or_path"):
        raise EncoderMismatchError(
            f"{path} was built with model {built!r}, not {encoder.name!r}; "
            "open it with Engine.load(path) to use the model it was built with"
        )


def _create_backend(
    folder: Path | None, manifest: Manifest, lock_timeout: float, options: dict[str, Any]
) -> Backend:
    if manifest.index_kind == _QDRANT:
        return _qdrant_backend().create(
            folder, dim=manifest.dim, encoder_config=manifest.encoder, **options
        )
    manifest.index_settings = options
    return LocalBackend.create(folder, manifest, lock_timeout=lock_timeout)


def _open_backend(
    folder: Path, manifest: Manifest, lock_timeout: float, options: dict[str, Any]
) -> Backend:
    if manifest.index_kind == _QDRANT:
        return _qdrant_backend().open(folder, manifest, **options)
    if options:
        raise InvalidInputError(
            f"{folder} is an existing {manifest.index_kind!r} index; its settings are fixed "
            f"when it is created (got {sorted(options)})"
        )
    return LocalBackend.open(folder, lock_timeout=lock_timeout)


def _qdrant_backend() -> Any:
    try:
        from colmax.backends.qdrant import QdrantBackend
    except ImportError as exc:
        raise InvalidInputError(
            f'index="qdrant" needs the qdrant extra: pip install "colmax[qdrant]" ({exc})'
        ) from exc
    return QdrantBackend


def _merge_qdrant_options(
    options: Mapping[str, Any] | None,
    url: str | None,
    api_key: str | None,
    collection: str | None,
) -> dict[str, Any] | None:
    merged = dict(options or {})
    for name, value in (("url", url), ("api_key", api_key), ("collection", collection)):
        if value is not None:
            merged[name] = value
    return merged or None
