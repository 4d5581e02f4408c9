"""The engine: the one object every door (LangChain, LlamaIndex, CLI, server) talks to.

:class:`Engine` holds an encoder and a backend and is split by concept: opening and creating
indexes (:mod:`colmax.engine.opening`), writes (:mod:`colmax.engine.writing`), reads
(:mod:`colmax.engine.reading`, pipelines in :mod:`colmax.engine.searching`). It names no
backend: :mod:`colmax.backends.registry` finds the one of each index kind.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from colmax.backends.base import Backend
from colmax.chunking.splitter import Chunker
from colmax.encoders.base import Encoder
from colmax.engine.opening import (
    OpenOptions,
    check_compatible,
    chunking_of,
    deprecated_options,
    make_chunker,
    open_or_create,
)
from colmax.engine.reading import Reading
from colmax.engine.searching import Parts
from colmax.engine.writing import Writing
from colmax.errors import InvalidInputError
from colmax.hybrid.side import HybridSide
from colmax.store.manifest import Manifest
from colmax.store.storage import is_index_folder
from colmax.types import IndexInfo
from colmax.validation import check_positive_int
from colmax.vision.store import PageStore

__all__ = ["Engine"]

logger = logging.getLogger(__name__)


class Engine(Writing, Reading):
    """Encode, index, search and rerank with late interaction (MaxSim).

    The three constructors take the same options: ``Engine(encoder, ...)``,
    ``Engine.from_pretrained(model, ...)`` (loads the model first) and ``Engine.load(path,
    ...)`` (opens a folder with the model it records).

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
            ``collection``, shard and replication settings, see ``docs/qdrant.md``; for
            ``"plaid"``: build settings, and search widths ``nprobe``, ``ndocs``, ``nfinal``
            also when opening).
        chunk_tokens: split added texts into chunks of at most this many tokens, stored as
            ``"<id>#<n>"`` and grouped back into their documents by :meth:`search`. Recorded
            in a new index folder, so every door that opens it later splits the same way;
            given when opening a folder, it applies to this engine's writes.
        chunk_overlap: tokens shared by neighbouring chunks.

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
        chunk_tokens: int | None = None,
        chunk_overlap: int = 0,
    ) -> None:
        options = OpenOptions(
            index, dict(index_options or {}), lock_timeout, chunk_tokens, chunk_overlap
        )
        folder = Path(path) if path is not None else None
        chunker = chunking_of(None, options, encoder)  # a bad chunk size fails before any write
        backend = open_or_create(folder, encoder, dim, options)
        self._encoder = encoder
        self._backend: Backend = backend
        self._dim = backend.dim
        self._hybrid = HybridSide(backend)
        self._pages = PageStore(backend.path)
        self._chunker: Chunker | None = chunker or chunking_of(backend.chunking, options, encoder)

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
        lock_timeout: float = 60.0,
        index_options: Mapping[str, Any] | None = None,
        chunk_tokens: int | None = None,
        chunk_overlap: int = 0,
        qdrant_url: str | None = None,
        api_key: str | None = None,
        collection: str | None = None,
        **encoder_kwargs: Any,
    ) -> Engine:
        """Load a model (Hub id or local folder, any supported format) and make an engine.

        ``encoder_kwargs`` override checkpoint settings (``query_length``, ``document_length``,
        ``batch_size``, ``compile``, ...; see :func:`colmax.encoders.load_encoder`). The other
        options are those of :class:`Engine`. ``qdrant_url=``, ``api_key=`` and
        ``collection=`` are deprecated spellings of the same ``index_options``.
        """
        from colmax.encoders import load_encoder  # transformers is slow to import: only when needed

        options = deprecated_options(
            index_options, qdrant_url=qdrant_url, api_key=api_key, collection=collection
        )
        encoder = load_encoder(str(model), device=device, dtype=dtype, **encoder_kwargs)
        return cls(
            encoder,
            index=index,
            path=path,
            lock_timeout=lock_timeout,
            index_options=options,
            chunk_tokens=chunk_tokens,
            chunk_overlap=chunk_overlap,
        )

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        encoder: Encoder | None = None,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        compile: bool = False,
        query_runtime: str | None = None,
        lock_timeout: float = 60.0,
        index_options: Mapping[str, Any] | None = None,
        chunk_tokens: int | None = None,
        chunk_overlap: int = 0,
        download: bool = False,
        api_key: str | None = None,
        qdrant_url: str | None = None,
    ) -> Engine:
        """Open an index folder; the encoder recorded in its manifest is loaded again.

        That model comes from a local folder or the Hugging Face cache; ``download=True``
        fetches it from the Hub when it is in neither (the name is read from the folder, so
        a folder from someone else would otherwise decide what is downloaded and run).
        ``compile`` runs that encoder through ``torch.compile`` and ``query_runtime`` picks
        what encodes queries (see :func:`colmax.encoders.load_encoder`). ``index_options`` may repeat the settings the
        index was made with, and change what can change (plaid search widths). For a Qdrant
        server index pass ``{"api_key": ..., "url": ...}``: the key is never stored
        (``COLMAX_QDRANT_API_KEY`` works too) and is sent only when ``url`` (or
        ``$COLMAX_QDRANT_URL``) names the server the manifest records, so that a folder from
        someone else cannot collect it. ``api_key=`` and ``qdrant_url=`` are deprecated
        spellings of those. The other options are those of :class:`Engine`.

        Raises:
            IndexFormatError: the folder is not a colmax index or is damaged.
            EncoderMismatchError: ``encoder`` differs from the one the index was built with.
        """
        path = Path(path)
        manifest = Manifest.read(path)
        if encoder is None and manifest.encoder is not None:
            from colmax.encoders import load_encoder
            from colmax.encoders.settings import FORMATS as TEXT_FORMATS

            config = dict(manifest.encoder)
            config.pop("device", None)
            config.pop("dtype", None)
            if config.get("format") in TEXT_FORMATS:
                # Written before the prompt setting: its documents were encoded without the
                # checkpoint's default prompt, so its queries must be too.
                config.setdefault("prompt", "")
            encoder = load_encoder(
                device=device,
                dtype=dtype,
                compile=compile,
                download=download,
                query_runtime=query_runtime,
                **config,
            )
        return cls(
            encoder,
            dim=None if encoder else manifest.dim,
            path=path,
            lock_timeout=lock_timeout,
            index_options=deprecated_options(index_options, api_key=api_key, qdrant_url=qdrant_url),
            chunk_tokens=chunk_tokens,
            chunk_overlap=chunk_overlap,
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

    @property
    def chunker(self) -> Chunker | None:
        """How :meth:`add` splits texts (:class:`~colmax.chunking.Chunker`), or ``None``."""
        return self._chunker

    def __len__(self) -> int:
        return len(self._backend)

    def __contains__(self, id_: object) -> bool:
        return id_ in self._backend

    def __repr__(self) -> str:
        name = self._encoder.name if self._encoder else None
        return f"Engine(model={name!r}, index={self._backend.kind!r}, documents={len(self)}, path={self.path})"

    def ids(self) -> list[str]:
        """All stored ids (documents, or chunks), oldest first."""
        return self._backend.ids()

    def info(self) -> IndexInfo:
        """Counts and settings (what ``colmax info`` prints)."""
        b = self._backend.info()
        chunker = self._chunker
        return IndexInfo(
            documents=b.documents,
            dim=b.dim,
            index=b.index,
            path=b.path,
            tokens=b.tokens,
            generation=b.generation,
            encoder=self._encoder.config() if self._encoder else None,
            chunking={"tokens": chunker.max_tokens, "overlap": chunker.overlap}
            if chunker
            else None,
            details=dict(b.details),
        )

    def _parts(self) -> Parts:
        return Parts(self._encoder, self._backend, self._hybrid, self._pages)

    # ------------------------------------------------------------------ settings & maintenance
    def set_chunking(self, chunk_tokens: int | None, chunk_overlap: int = 0) -> None:
        """Split the texts this engine adds from now on into chunks of ``chunk_tokens``
        (``None``: store them whole). Not recorded in the folder (see ``chunk_tokens`` of
        :class:`Engine` for that)."""
        if chunk_tokens is not None:
            check_positive_int(chunk_tokens, "chunk_tokens")
        self._chunker = make_chunker(self._encoder, chunk_tokens, chunk_overlap)

    def set_search_widths(
        self, *, nprobe: int | None = None, ndocs: int | None = None, nfinal: int | None = None
    ) -> None:
        """Change how much a plaid index looks at per query, in this process (not recorded).

        Wider is slower and closer to exact search (see ``docs/plaid.md``).

        Raises:
            InvalidInputError: not a plaid index, or an invalid value.
        """
        given = {"nprobe": nprobe, "ndocs": ndocs, "nfinal": nfinal}
        options = {name: value for name, value in given.items() if value is not None}
        if not options:
            raise InvalidInputError("set_search_widths() needs nprobe=, ndocs= or nfinal=")
        self._backend.set_search_options(options)

    def rebuild(self) -> IndexInfo:
        """Train the compressed index again on the documents it holds now and re-code them
        (plaid: worth it when ``info().details["plaid"]["rebuild_recommended"]``). The original
        vectors are not kept: documents are re-coded from their decoded approximations, so
        each rebuild adds their quantisation error once more (rebuild when advised, not
        routinely; docs/plaid.md, "Drift").

        Raises:
            InvalidInputError: the index kind has nothing to rebuild (flat, qdrant).
        """
        self._backend.rebuild()
        return self.info()

    def optimize(self) -> IndexInfo:
        """Compact the index now (drop deleted vectors, merge segments; Qdrant edge: also
        build graphs) rather than at a later write. Results do not change."""
        self._backend.optimize()
        return self.info()

    # ------------------------------------------------------------------ lifecycle
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
            check_compatible(manifest, self._encoder, None if self._encoder else self._dim, target)
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
