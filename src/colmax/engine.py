"""The engine: the one object every door (LangChain, LlamaIndex, CLI, server) talks to."""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from colmax import __version__
from colmax.encoders.base import Encoder
from colmax.errors import (
    DuplicateIdError,
    EncoderMismatchError,
    InvalidInputError,
    NoEncoderError,
    UnknownIdError,
)
from colmax.indexes.flat import FlatIndex
from colmax.scoring import maxsim_ragged
from colmax.store.filters import compile_filter
from colmax.store.fsutil import publish_folder, staging_path
from colmax.store.manifest import Manifest
from colmax.store.segments import Segment, merge
from colmax.store.storage import Commit, Storage, check_free, is_index_folder
from colmax.types import Document, Hit
from colmax.validation import (
    as_list,
    check_add,
    check_ids,
    check_k,
    check_texts,
    metadata_json,
    to_vectors,
)

__all__ = ["Engine"]

logger = logging.getLogger(__name__)

_INDEX_KINDS = ("flat",)
Row = tuple[str, str, dict[str, Any]]  # id, text, metadata
_MAX_SEGMENTS = 8


class Engine:
    """Encode, index, search and rerank with late interaction (MaxSim).

    Args:
        encoder: a token encoder (see :func:`colmax.encoders.load_encoder`), or ``None`` for an
            engine fed only precomputed vectors (then ``dim`` is required).
        dim: vector dimension when there is no encoder.
        index: ``"flat"`` (exact MaxSim).
        path: an index folder. If it holds an index, it is opened; otherwise one is created
            there. Every ``add``/``delete`` on a folder-backed engine is committed durably before
            the call returns. ``None`` keeps everything in memory until :meth:`save`.
        lock_timeout: seconds a writer waits for another process's write to finish.

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
        index: str = "flat",
        path: str | Path | None = None,
        lock_timeout: float = 60.0,
    ) -> None:
        if index not in _INDEX_KINDS:
            raise InvalidInputError(f"unknown index {index!r}; available: {list(_INDEX_KINDS)}")
        if encoder is None and dim is None and (path is None or not is_index_folder(Path(path))):
            raise InvalidInputError("Engine needs an encoder, or dim=... for precomputed vectors")
        if encoder is not None and dim is not None and dim != encoder.dim:
            raise InvalidInputError(f"dim={dim} contradicts the encoder's dimension {encoder.dim}")
        if path is not None and is_index_folder(Path(path)):
            storage = Storage.open(Path(path), lock_timeout=lock_timeout)
            _check_compatible(storage.manifest, encoder, dim, Path(path))
        else:
            manifest = Manifest(
                dim=encoder.dim if encoder is not None else int(dim),  # type: ignore[arg-type]
                index_kind=index,
                encoder=encoder.config() if encoder is not None else None,
                colmax_version=__version__,
            )
            storage = (
                Storage.create(Path(path), manifest, lock_timeout)
                if path is not None
                else Storage.in_memory(manifest)
            )
        self._attach(encoder, storage)

    @classmethod
    def _from_storage(cls, encoder: Encoder | None, storage: Storage) -> Engine:
        engine = cls.__new__(cls)
        engine._attach(encoder, storage)
        return engine

    def _attach(self, encoder: Encoder | None, storage: Storage) -> None:
        self._encoder = encoder
        self._storage = storage
        self._state_lock = threading.RLock()
        self._dim = storage.manifest.dim
        self._index = FlatIndex(self._dim)
        self._reload()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        model: str | Path,
        *,
        index: str = "flat",
        path: str | Path | None = None,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        **encoder_kwargs: Any,
    ) -> Engine:
        """Load a model (Hub id or local folder, any supported format) and make an engine.

        ``encoder_kwargs`` override checkpoint settings (``query_length``, ``document_length``,
        ``batch_size``, ...). See :func:`colmax.encoders.load_encoder`.
        """
        from colmax.encoders import load_encoder  # transformers is slow to import: only when needed

        encoder = load_encoder(str(model), device=device, dtype=dtype, **encoder_kwargs)
        return cls(encoder, index=index, path=path)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        encoder: Encoder | None = None,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        lock_timeout: float = 60.0,
    ) -> Engine:
        """Open an index folder; the encoder recorded in its manifest is loaded again.

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
            encoder = load_encoder(device=device, dtype=dtype, **config)
        return cls(
            encoder, dim=None if encoder else manifest.dim, path=path, lock_timeout=lock_timeout
        )

    # ------------------------------------------------------------------ properties
    @property
    def encoder(self) -> Encoder | None:
        """The loaded encoder (``encode_queries`` / ``encode_documents``), or ``None``."""
        return self._encoder

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def path(self) -> Path | None:
        """The index folder this engine commits to, or ``None`` when in memory."""
        return self._storage.folder

    def __len__(self) -> int:
        self._refresh_if_stale()
        return len(self._index)

    def __contains__(self, id_: object) -> bool:
        return isinstance(id_, str) and bool(self._storage.docs.keys_for_ids([id_]))

    def __repr__(self) -> str:
        name = self._encoder.name if self._encoder else None
        return f"Engine(model={name!r}, index={self._storage.manifest.index_kind!r}, documents={len(self)}, path={self.path})"

    def ids(self) -> list[str]:
        """All document ids, oldest first."""
        return self._storage.docs.ids()

    def info(self) -> dict[str, Any]:
        """Counts and settings (what ``colmax info`` prints)."""
        self._refresh_if_stale()
        live, dead = self._index.token_counts()
        return {
            "documents": len(self._index),
            "tokens": live,
            "dead_tokens": dead,
            "segments": len(self._index.segments),
            "dim": self._dim,
            "index": self._storage.manifest.index_kind,
            "encoder": self._encoder.config() if self._encoder else None,
            "path": str(self.path) if self.path else None,
            "generation": self._generation,
        }

    # ------------------------------------------------------------------ writes
    def add(
        self,
        documents: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        embeddings: Sequence[Any] | None = None,
        skip_empty: bool = False,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> list[str]:
        """Add or replace (upsert by id) documents.

        Args:
            documents: texts. Optional when ``embeddings`` are given (then stored as text).
            ids: one unique string id per document; new UUIDs when omitted. An id already in
                the index replaces that document, its metadata and its vectors.
            metadatas: one JSON-compatible dict per document (filterable in :meth:`search`).
            embeddings: precomputed ``(n_tokens, dim)`` arrays or tensors, one per document,
                used instead of encoding (L2-normalised on the way in).
            skip_empty: drop empty/whitespace texts (logged) instead of raising.
            batch_size, show_progress: passed to the encoder.

        Returns:
            The ids written, in input order.

        Raises:
            EmptyTextError, DuplicateIdError, InvalidInputError, InvalidEmbeddingError,
            DimensionMismatchError: nothing is written when any input is invalid.
        """
        batch = check_add(documents, ids, metadatas, embeddings, self._dim, skip_empty=skip_empty)
        texts, ids_, metas, vectors = batch.texts, batch.ids, batch.metadatas, batch.vectors
        if not ids_:
            return []
        if vectors is None:
            vectors = self._encode_documents(texts, batch_size, show_progress)
        with self._storage.writing():
            self._refresh_if_stale()
            replaced = self._storage.docs.keys_for_ids(ids_)
            next_key = self._storage.docs.meta_int("next_key")
            keys = np.arange(next_key, next_key + len(ids_), dtype=np.int64)
            segment = Segment.build(self._storage.next_seq(), keys, vectors, self._dim)
            rows = [
                (int(k), i, t, metadata_json(m)) for k, i, t, m in zip(keys, ids_, texts, metas)
            ]
            removed = np.fromiter(replaced.values(), dtype=np.int64, count=len(replaced))
            change = Commit(rows, removed.tolist(), segment, next_key=next_key + len(ids_))
            self._commit(change, lambda idx: idx.with_segment(segment, removed))
            self._maybe_merge()
        return ids_

    def delete(self, ids: Sequence[str]) -> int:
        """Delete documents by id; returns how many were deleted.

        Raises:
            UnknownIdError: some ids are not in the index (nothing is deleted).
        """
        ids_ = as_list(ids, "ids")
        if len(set(ids_)) != len(ids_):
            raise DuplicateIdError("ids passed to delete() contain duplicates")
        if not ids_:
            return 0
        with self._storage.writing():
            self._refresh_if_stale()
            keys = self._keys_or_raise(ids_)
            removed = np.asarray(keys, dtype=np.int64)
            self._commit(Commit(removed_keys=keys), lambda idx: idx.without(removed))
            self._maybe_merge()
        return len(keys)

    def save(self, path: str | Path) -> Path:
        """Write the index to ``path`` (a new folder, or an existing index of the same model).

        A folder-backed engine is already durable; saving it to its own folder is a no-op.
        Writing to another path copies the live documents into one compact segment.
        """
        target = Path(path).absolute()
        if self.path is not None and target == self.path:
            return target
        with self._state_lock:
            index, generation = self._index, self._generation
        snapshot = index.segments, index.alive_masks()
        keys = index.live_keys()
        rows = self._storage.docs.fetch(keys)
        if is_index_folder(target):
            with Engine(self._encoder, dim=self._dim, path=target) as other:
                other._replace_all(snapshot, rows)
        else:
            # Build the complete copy beside the target, then rename it into place: a crash
            # leaves either no index at ``target`` or the whole one.
            manifest = Manifest(
                dim=self._dim, encoder=self._storage.manifest.encoder, colmax_version=__version__
            )
            check_free(target)
            staging = staging_path(target)
            try:
                with Engine._from_storage(
                    self._encoder, Storage.create(staging, manifest)
                ) as other:
                    other._replace_all(snapshot, rows)
                publish_folder(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        logger.info("saved %d documents (generation %d) to %s", len(keys), generation, target)
        return target

    def close(self) -> None:
        """Release the database connection (the engine is unusable afterwards)."""
        self._storage.close()

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
        ids_ = as_list(ids, "ids")
        keys = self._keys_or_raise(ids_)
        rows = self._storage.docs.fetch(keys)
        return [Document(rows[k][0], rows[k][1], rows[k][2]) for k in keys]

    def search(
        self,
        query: str | Sequence[str] | None = None,
        k: int = 10,
        filter: Mapping[str, Any] | None = None,
        *,
        query_embeddings: Sequence[Any] | None = None,
        batch_size: int | None = None,
    ) -> list[Hit] | list[list[Hit]]:
        """Top-``k`` documents by MaxSim.

        Args:
            query: one query (returns ``list[Hit]``) or a list (returns one list per query).
            k: results per query; clamped to the number of matching documents.
            filter: metadata filter (see :mod:`colmax.store.filters`).
            query_embeddings: precomputed ``(n_tokens, dim)`` query vectors instead of text
                (a list of them returns one list per query).

        Raises:
            InvalidInputError: ``k <= 0``, empty query, both or neither of query/query_embeddings.
            FilterError: malformed filter.
        """
        single, qvecs = self._queries(query, query_embeddings, batch_size)
        k = check_k(k)
        where, params = compile_filter(filter)
        self._refresh_if_stale()
        with self._state_lock:
            index = self._index
            allowed = self._storage.docs.select_keys(where, params) if filter else None
        results = index.search(qvecs, k, allowed)
        rows = self._storage.docs.fetch({int(key) for r in results for key in r.keys})
        hits = [_hits(r.keys, r.scores, rows) for r in results]
        return hits[0] if single else hits

    def rerank(
        self,
        query: str | None,
        documents: Sequence[str] | None = None,
        k: int | None = None,
        *,
        ids: Sequence[str] | None = None,
        query_embedding: Any | None = None,
        batch_size: int | None = None,
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

        Returns:
            Hits sorted by score (ties keep the input order), ``rank`` 0-based.
        """
        if documents is None and ids is None:
            raise InvalidInputError("rerank() needs documents=... (texts), ids=..., or both")
        k = check_k(k) if k is not None else None
        qvecs = self._queries(
            query, None if query_embedding is None else [query_embedding], batch_size
        )[1]
        if documents is None:
            cands, vecs = self._stored_candidates(as_list(ids, "ids"))
        else:
            texts = check_texts(as_list(documents, "documents"))
            given = check_ids(as_list(ids, "ids"), len(texts)) if ids is not None else None
            cands, vecs = self._text_candidates(texts, given, batch_size)
        if not cands:
            return []
        scores = maxsim_ragged(qvecs, vecs)[0].tolist()
        order = sorted(range(len(scores)), key=lambda i: -scores[i])[: k or len(scores)]
        return [
            Hit(cands[i][0], float(scores[i]), cands[i][1], dict(cands[i][2]), r)
            for r, i in enumerate(order)
        ]

    def _stored_candidates(self, ids: list[str]) -> tuple[list[Row], list[torch.Tensor]]:
        with self._state_lock:
            index = self._index
            keys = self._keys_or_raise(ids)
            rows = self._storage.docs.fetch(keys)
        vecs = [torch.from_numpy(v) for v in index.get_vectors(np.asarray(keys, dtype=np.int64))]
        return [rows[key] for key in keys], vecs

    def _text_candidates(
        self, texts: list[str], ids: list[str] | None, batch_size: int | None
    ) -> tuple[list[Row], list[torch.Tensor]]:
        reuse: dict[int, int] = {}  # position -> key of an indexed document with the same text
        with self._state_lock:
            index = self._index
            if ids is not None:
                found = self._storage.docs.keys_for_ids(ids)
                rows = self._storage.docs.fetch(found.values())
                reuse = {
                    i: found[id_]
                    for i, id_ in enumerate(ids)
                    if id_ in found and rows[found[id_]][1] == texts[i]
                }
        fresh = [i for i in range(len(texts)) if i not in reuse]
        vecs: list[torch.Tensor | None] = [None] * len(texts)
        if fresh:
            encoded = self._encode_documents([texts[i] for i in fresh], batch_size, None)
            for i, v in zip(fresh, encoded):
                vecs[i] = torch.from_numpy(v)
        if reuse:
            stored = index.get_vectors(np.fromiter(reuse.values(), dtype=np.int64))
            for i, v in zip(reuse, stored):
                vecs[i] = torch.from_numpy(v)
        names = ids if ids is not None else [str(i) for i in range(len(texts))]
        return [(names[i], t, {}) for i, t in enumerate(texts)], [v for v in vecs if v is not None]

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
    ) -> tuple[bool, list[torch.Tensor]]:
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
            return single, [torch.from_numpy(v) for v in vecs]
        single = isinstance(query, str)
        texts = check_texts([query] if single else as_list(query, "query"), "queries")
        if not texts:
            raise InvalidInputError("search() got an empty list of queries")
        if self._encoder is None:
            raise NoEncoderError("this engine has no encoder: pass query_embeddings=...")
        return single, list(self._encoder.encode_queries(texts, batch_size=batch_size))

    def _keys_or_raise(self, ids: list[str]) -> list[int]:
        found = self._storage.docs.keys_for_ids(ids)
        missing = [i for i in ids if i not in found]
        if missing:
            raise UnknownIdError(
                f"{len(missing)} id(s) not in the index, e.g. {missing[:5]!r}; nothing was changed"
            )
        return [found[i] for i in ids]

    def _commit(self, change: Commit, update: Any) -> None:
        generation = self._storage.commit(change, self._state_lock)
        with self._state_lock:
            self._index, self._generation = update(self._index), generation
        live, _ = self._index.token_counts()
        self._storage.write_manifest({"documents": len(self._index), "tokens": live}, generation)

    def _maybe_merge(self) -> None:
        """Rewrite segments that are mostly dead, and fold small ones once there are many."""
        index = self._index
        chosen = index.merge_candidates(_MAX_SEGMENTS)
        if not chosen:
            return
        segments, alive = index.segments, index.alive_masks()
        picked = [(segments[i], alive[i]) for i in chosen]
        merged = None
        if any(a.any() for _, a in picked):
            merged = merge(self._storage.next_seq(), [s for s, _ in picked], [a for _, a in picked])
        dropped = [s.name for s, _ in picked]
        chosen_set = set(chosen)
        keep = [s for i, s in enumerate(segments) if i not in chosen_set]
        new_segments = keep + ([merged] if merged is not None else [])
        live = index.live_keys()
        self._commit(
            Commit(new_segment=merged, dropped_segments=dropped),
            lambda idx: idx.refreshed(new_segments, live),
        )

    def _replace_all(
        self,
        snapshot: tuple[list[Segment], list[np.ndarray]],
        rows: dict[int, tuple[str, str, dict]],
    ) -> None:
        segments, alive = snapshot
        with self._storage.writing():
            self._refresh_if_stale()
            merged = merge(self._storage.next_seq(), segments, alive) if rows else None
            old_keys = self._index.live_keys().tolist()
            table = [(k, r[0], r[1], metadata_json(r[2])) for k, r in sorted(rows.items())]
            next_key = max(self._storage.docs.meta_int("next_key"), max(rows, default=-1) + 1)
            change = Commit(
                table, old_keys, merged, [s.name for s in self._index.segments], next_key
            )
            live = np.asarray(sorted(rows), dtype=np.int64)
            self._commit(change, lambda idx: idx.refreshed([merged] if merged else [], live))

    def _reload(self) -> None:
        with self._state_lock:
            self._generation = self._storage.generation()
            segments = self._storage.read_segments()
            live = self._storage.docs.all_keys()
            self._index = self._index.refreshed(segments, live)

    def _refresh_if_stale(self) -> None:
        """Pick up commits another process made to the same folder."""
        if self._storage.folder is not None and self._storage.generation() != self._generation:
            self._reload()


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


def _hits(
    keys: np.ndarray, scores: np.ndarray, rows: dict[int, tuple[str, str, dict]]
) -> list[Hit]:
    hits: list[Hit] = []
    for key, score in zip(keys.tolist(), scores.tolist()):
        row = rows.get(key)
        if row is not None:  # deleted by a concurrent writer after the search started
            hits.append(Hit(row[0], float(score), row[1], dict(row[2]), len(hits)))
    return hits
