"""The local backend: SQLite for text and metadata, segments of token vectors, an index over them.

Lives in memory (``path=None``) or in an index folder (see :mod:`colmax.store.storage` for the
layout and the commit protocol). The index (``flat`` today) is an immutable snapshot that each
write replaces, so searches never take a lock while scoring.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from colmax import __version__
from colmax.backends.base import Backend
from colmax.errors import InvalidInputError, UnknownIdError
from colmax.indexes.flat import FlatIndex
from colmax.store.filters import compile_filter
from colmax.store.fsutil import publish_folder, staging_path
from colmax.store.manifest import Manifest
from colmax.store.segments import Segment
from colmax.store.storage import Commit, Storage, check_free, is_index_folder
from colmax.types import Document, Hit
from colmax.validation import metadata_json

__all__ = ["LOCAL_KINDS", "LocalBackend"]

logger = logging.getLogger(__name__)

#: Index kinds this backend serves.
LOCAL_KINDS = ("flat",)
_MAX_SEGMENTS = 8
Row = tuple[str, str, dict[str, Any]]  # id, text, metadata


def _make_index(manifest: Manifest) -> FlatIndex:
    if manifest.index_kind not in LOCAL_KINDS:
        raise InvalidInputError(
            f"unknown local index {manifest.index_kind!r}; available: {list(LOCAL_KINDS)}"
        )
    if manifest.index_settings:
        raise InvalidInputError(
            f"the flat index takes no options, got {sorted(manifest.index_settings)}"
        )
    return FlatIndex(manifest.dim)


class LocalBackend(Backend):
    """Documents in SQLite, vectors in segments, searched by an in-process index.

    Use :meth:`create` / :meth:`open` rather than the constructor.
    """

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._state_lock = threading.RLock()
        self._index = _make_index(storage.manifest)
        self.kind = storage.manifest.index_kind
        self._generation = 0
        self._reload()

    @classmethod
    def create(
        cls, path: Path | None, manifest: Manifest, *, lock_timeout: float = 60.0
    ) -> LocalBackend:
        """A new empty backend in memory (``path=None``) or in a new folder."""
        _make_index(manifest)  # unknown kinds fail before a folder is created
        if path is None:
            return cls(Storage.in_memory(manifest))
        return cls(Storage.create(path, manifest, lock_timeout))

    @classmethod
    def open(cls, path: Path, *, lock_timeout: float = 60.0) -> LocalBackend:
        """Open an existing index folder."""
        return cls(Storage.open(path, lock_timeout=lock_timeout))

    # ------------------------------------------------------------------ facts
    @property
    def dim(self) -> int:
        return self._storage.manifest.dim

    @property
    def path(self) -> Path | None:
        return self._storage.folder

    @property
    def encoder_config(self) -> dict[str, Any] | None:
        return self._storage.manifest.encoder

    @property
    def generation(self) -> int:
        """The committed generation this backend's snapshot reflects."""
        self._refresh_if_stale()
        return self._generation

    def __len__(self) -> int:
        self._refresh_if_stale()
        return len(self._index)

    def __contains__(self, id_: object) -> bool:
        return isinstance(id_, str) and bool(self._storage.docs.keys_for_ids([id_]))

    def ids(self) -> list[str]:
        return self._storage.docs.ids()

    def existing(self, ids: Sequence[str]) -> set[str]:
        return set(self._storage.docs.keys_for_ids(ids))

    def info(self) -> dict[str, Any]:
        self._refresh_if_stale()
        index = self._index
        live, dead = index.token_counts()
        return {
            "documents": len(index),
            "tokens": live,
            "dead_tokens": dead,
            "segments": len(index.segments),
            "dim": self.dim,
            "index": self.kind,
            "path": str(self.path) if self.path else None,
            "generation": self._generation,
        }

    # ------------------------------------------------------------------ writes
    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]],
        vectors: Sequence[np.ndarray],
    ) -> None:
        with self._storage.writing():
            self._refresh_if_stale()
            replaced = self._storage.docs.keys_for_ids(ids)
            next_key = self._storage.docs.meta_int("next_key")
            keys = np.arange(next_key, next_key + len(ids), dtype=np.int64)
            segment = self._index.build_segment(self._storage.next_seq(), keys, list(vectors))
            rows = [
                (int(k), i, t, metadata_json(m)) for k, i, t, m in zip(keys, ids, texts, metadatas)
            ]
            removed = np.fromiter(replaced.values(), dtype=np.int64, count=len(replaced))
            change = Commit(rows, removed.tolist(), segment, next_key=next_key + len(ids))
            self._commit(change, lambda idx: idx.with_segment(segment, removed))
            self._maybe_merge()

    def delete(self, ids: Sequence[str]) -> int:
        with self._storage.writing():
            self._refresh_if_stale()
            keys = self._keys_or_raise(ids)
            removed = np.asarray(keys, dtype=np.int64)
            self._commit(Commit(removed_keys=keys), lambda idx: idx.without(removed))
            self._maybe_merge()
        return len(keys)

    # ------------------------------------------------------------------ reads
    def get(self, ids: Sequence[str]) -> list[Document]:
        keys = self._keys_or_raise(ids)
        rows = self._storage.docs.fetch(keys)
        return [Document(*rows[k]) for k in keys]

    def get_vectors(self, ids: Sequence[str]) -> list[np.ndarray]:
        return [v for _, v in self.get_with_vectors(ids)]

    def get_with_vectors(self, ids: Sequence[str]) -> list[tuple[Document, np.ndarray]]:
        # One snapshot for rows and vectors: a concurrent delete cannot split them.
        with self._state_lock:
            index = self._index
            keys = self._keys_or_raise(ids)
            rows = self._storage.docs.fetch(keys)
        vecs = index.get_vectors(np.asarray(keys, dtype=np.int64))
        return [(Document(*rows[k]), v) for k, v in zip(keys, vecs)]

    def search(
        self, queries: Sequence[torch.Tensor], k: int, filter: Mapping[str, Any] | None = None
    ) -> list[list[Hit]]:
        where, params = compile_filter(filter)
        self._refresh_if_stale()
        with self._state_lock:
            index = self._index
            allowed = self._storage.docs.select_keys(where, params) if filter else None
        results = index.search(list(queries), k, allowed)
        rows = self._storage.docs.fetch({int(key) for r in results for key in r.keys})
        return [_hits(r.keys, r.scores, rows) for r in results]

    # ------------------------------------------------------------------ lifecycle
    def save(self, path: Path) -> Path:
        """Copy the live documents into one compact segment at ``path``.

        ``path`` may also be an existing local index of the same dimension, whose contents are
        then replaced (in one commit).
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
            other = LocalBackend.open(target)
            try:
                if other.dim != self.dim:
                    raise InvalidInputError(
                        f"{target} holds vectors of dimension {other.dim}, not {self.dim}"
                    )
                other._replace_all(snapshot, rows)
            finally:
                other.close()
        else:
            # Build the complete copy beside the target, then rename it into place: a crash
            # leaves either no index at ``target`` or the whole one.
            manifest = Manifest(
                dim=self.dim,
                index_kind=self.kind,
                encoder=self.encoder_config,
                index_settings=dict(self._storage.manifest.index_settings),
                colmax_version=__version__,
            )
            check_free(target)
            staging = staging_path(target)
            try:
                other = LocalBackend(Storage.create(staging, manifest))
                try:
                    other._replace_all(snapshot, rows)
                finally:
                    other.close()
                publish_folder(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        logger.info("saved %d documents (generation %d) to %s", len(keys), generation, target)
        return target

    def close(self) -> None:
        self._storage.close()

    # ------------------------------------------------------------------ internals
    def _keys_or_raise(self, ids: Sequence[str]) -> list[int]:
        found = self._storage.docs.keys_for_ids(ids)
        missing = [i for i in ids if i not in found]
        if missing:
            raise UnknownIdError(
                f"{len(missing)} id(s) not in the index, e.g. {missing[:5]!r}; nothing was changed"
            )
        return [found[i] for i in ids]

    def _commit(self, change: Commit, update: Callable[[Any], Any]) -> None:
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
            merged = index.merge_segments(
                self._storage.next_seq(), [s for s, _ in picked], [a for _, a in picked]
            )
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
            merged = (
                self._index.merge_segments(self._storage.next_seq(), segments, alive)
                if rows
                else None
            )
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


def _hits(
    keys: np.ndarray, scores: np.ndarray, rows: dict[int, tuple[str, str, dict]]
) -> list[Hit]:
    hits: list[Hit] = []
    for key, score in zip(keys.tolist(), scores.tolist()):
        row = rows.get(key)
        if row is not None:  # deleted by a concurrent writer after the search started
            hits.append(Hit(row[0], float(score), row[1], dict(row[2]), len(hits)))
    return hits
