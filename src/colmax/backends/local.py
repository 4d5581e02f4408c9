"""The local backend: SQLite for text and metadata, segments of token vectors, an index over them.

Lives in memory (``path=None``) or in an index folder (see :mod:`colmax.store.storage` for the
layout and the commit protocol). The index (``flat``: exact; ``plaid``: compressed, see
:mod:`colmax.indexes.plaid`) is an immutable snapshot that each write replaces, so searches never
take a lock while scoring. The backend drives every kind through the
:class:`~colmax.indexes.base.SegmentedIndex` interface; only :data:`INDEX_CLASSES` names them.

A plaid index starts exact (float16 segments) and is trained once the live corpus reaches
``train_tokens``: the write that crosses it trains a codec on the live vectors, codes every
document into one segment and commits codec and segment together. Later adds are coded against
that codec; :meth:`LocalBackend.rebuild` trains again (the manifest's ``index.drift`` says when
that is worth it).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from colmax import __version__, deadline
from colmax.backends.base import Backend, BackendInfo, BackendOptions, Missing
from colmax.errors import IndexFormatError, InvalidInputError, StorageError, UnknownIdError
from colmax.filters import MATCH_ALL, FilterLike, parse_filter, to_sql
from colmax.indexes.base import SegmentedIndex
from colmax.indexes.flat import FlatIndex
from colmax.indexes.plaid import PlaidIndex, PlaidSettings, TokenSource
from colmax.store.fsutil import publish_folder, remove_stale_staging, staging_path
from colmax.store.io_errors import storage_errors
from colmax.store.manifest import Manifest
from colmax.store.storage import Commit, Storage, check_free, is_index_folder
from colmax.types import Document, Hit
from colmax.validation import metadata_json

__all__ = ["INDEX_CLASSES", "LOCAL_KINDS", "LocalBackend"]

logger = logging.getLogger(__name__)


def _flat(manifest: Manifest) -> SegmentedIndex:
    if manifest.index_settings:
        raise InvalidInputError(
            f"the flat index takes no options, got {sorted(manifest.index_settings)}"
        )
    return FlatIndex(manifest.dim)


def _plaid(manifest: Manifest) -> SegmentedIndex:
    raw = {k: v for k, v in manifest.index_settings.items() if k not in _STATE_KEYS}
    return PlaidIndex(manifest.dim, PlaidSettings.from_json(raw))


#: The index kinds this backend serves: kind -> empty index from a manifest.
INDEX_CLASSES: dict[str, Callable[[Manifest], SegmentedIndex]] = {"flat": _flat, "plaid": _plaid}
#: Index kinds this backend serves.
LOCAL_KINDS: tuple[str, ...] = tuple(INDEX_CLASSES)
_MAX_SEGMENTS = 8
_READ_ATTEMPTS = 3  # reads of one snapshot while other processes keep committing
_T = TypeVar("_T")
_RELOAD_PATIENCE = 10.0  # seconds a reader keeps retrying while writers replace segments
#: Keys of the manifest's ``index`` section the backend writes (state, not user settings).
_STATE_KEYS = ("drift",)
Row = tuple[str, str, dict[str, Any]]  # id, text, metadata


def _make_index(manifest: Manifest) -> SegmentedIndex:
    make = INDEX_CLASSES.get(manifest.index_kind)
    if make is None:
        raise InvalidInputError(
            f"unknown local index {manifest.index_kind!r}; available: {list(LOCAL_KINDS)}"
        )
    return make(manifest)


class LocalBackend(Backend):
    """Documents in SQLite, vectors in segments, searched by an in-process index.

    Use :meth:`create` / :meth:`open` rather than the constructor.
    """

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._state_lock = threading.RLock()
        self._index: SegmentedIndex = _make_index(storage.manifest)
        self.kind = storage.manifest.index_kind
        self._generation = 0
        self._reload()

    @classmethod
    def create(
        cls, folder: Path | None, manifest: Manifest, options: BackendOptions | None = None
    ) -> LocalBackend:
        """A new empty backend in memory (``folder=None``) or in a new folder.

        ``options.index`` are the kind's settings (plaid: :class:`PlaidSettings`; flat: none).
        """
        options = options or BackendOptions()
        if options.index:
            manifest.index_settings = dict(options.index)
        _make_index(manifest)  # unknown kinds and bad settings fail before a folder is created
        if folder is None:
            return cls(Storage.in_memory(manifest))
        return cls(Storage.create(folder, manifest, options.lock_timeout))

    @classmethod
    def open(
        cls, folder: Path, manifest: Manifest | None = None, options: BackendOptions | None = None
    ) -> LocalBackend:
        """Open an existing index folder.

        ``options.index`` may hold search widths (plaid: ``nprobe``, ``ndocs``, ``nfinal``):
        they apply in this process and are not written to the folder.

        Raises:
            InvalidInputError: options this index kind cannot change after creation.
        """
        options = options or BackendOptions()
        backend = cls(Storage.open(folder, lock_timeout=options.lock_timeout))
        if options.index:
            try:
                backend.set_search_options(options.index)
            except InvalidInputError as exc:
                backend.close()
                raise InvalidInputError(
                    f"{folder} is an existing {backend.kind!r} index; its settings are fixed "
                    f"when it is created ({exc})"
                ) from exc
        return backend

    def set_search_options(self, options: Mapping[str, Any]) -> None:
        with self._state_lock:
            self._index = self._index.with_search_options(options)

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
    def chunking(self) -> dict[str, int] | None:
        return self._storage.manifest.chunking

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

    def text_snapshot(self) -> tuple[int, list[str], list[str]]:
        return self._storage.docs.texts_snapshot()

    def matching_ids(self, filter: FilterLike) -> set[str]:
        where, params = to_sql(filter)
        return set(self._storage.docs.select_ids(where, params))

    def info(self) -> BackendInfo:
        self._refresh_if_stale()
        with self._state_lock:
            index, generation = self._index, self._generation
        live, dead = index.token_counts()
        report = index.report()
        return BackendInfo(
            documents=len(index),
            dim=self.dim,
            index=self.kind,
            path=str(self.path) if self.path else None,
            tokens=live,
            generation=generation,
            details={
                "dead_tokens": dead,
                "segments": len(index.segments),
                **({self.kind: report} if report is not None else {}),
            },
        )

    # ------------------------------------------------------------------ writes
    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]],
        vectors: Sequence[np.ndarray],
        *,
        remove: Sequence[str] = (),
    ) -> None:
        with self._storage.writing():
            self._refresh_if_stale()
            replaced = self._storage.docs.keys_for_ids([*ids, *remove])
            next_key = self._storage.docs.meta_int("next_key")
            keys = np.arange(next_key, next_key + len(ids), dtype=np.int64)
            segment = self._index.build_segment(self._storage.next_seq(), keys, list(vectors))
            rows = [
                (int(k), i, t, metadata_json(m)) for k, i, t, m in zip(keys, ids, texts, metadatas)
            ]
            removed = np.fromiter(replaced.values(), dtype=np.int64, count=len(replaced))
            change = Commit(rows, removed.tolist(), segment, next_key=next_key + len(ids))
            self._commit(change, lambda idx: idx.with_segment(segment, removed))
            # The upsert is committed: what follows is upkeep, and must not make it raise (a
            # client retrying an add without ids would store the documents twice).
            if self._index.needs_training():
                self._upkeep(self._rebuild_locked, "training the plaid codec")
            else:
                self._upkeep(self._maybe_merge, "merging segments")

    def rebuild(self) -> BackendInfo:
        """Train the plaid codec again on the live vectors and re-code every document.

        Worth it when ``info().details["plaid"]["rebuild_recommended"]`` (the corpus grew or
        moved away from the sample the centroids were trained on). Coded documents are re-coded
        from their decoded vectors (the originals are not kept), which adds their quantisation
        error once more. Blocks other writers while it runs; readers continue on the previous
        snapshot.

        Raises:
            InvalidInputError: the index is not a plaid index.
        """
        if self._index.codec_reader() is None:  # kinds without a codec have nothing to train
            raise InvalidInputError(f"this applies to index='plaid', not {self.kind!r}")
        with self._storage.writing():
            self._refresh_if_stale()
            self._rebuild_locked()
        return self.info()

    def optimize(self) -> BackendInfo:
        """Rewrite mostly-dead and small segments now instead of at the next write."""
        with self._storage.writing():
            self._refresh_if_stale()
            self._maybe_merge()
        return self.info()

    def _rebuild_locked(self, show_progress: bool | None = None) -> None:
        index = self._index
        if len(index) == 0:
            return
        seq = self._storage.next_seq()
        codec, coded, live = index.trained(seq, self._storage.folder, show_progress)
        dropped = [s.name for s in index.segments]
        change = Commit(new_segment=coded, dropped_segments=dropped, codec=codec)
        self._commit(change, lambda idx: idx.with_codec(codec, [coded] if coded else [], live))
        logger.info("%s codec %s trained; %d documents coded", self.kind, codec.name, len(live))

    def add_stream(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]],
        source: TokenSource,
        show_progress: bool | None = None,
    ) -> None:
        """Upsert documents whose vectors are read from ``source`` a chunk at a time (plaid).

        Memory holds one chunk of float vectors, the training sample and the coded output's
        bookkeeping, never the whole input: without a codec yet, the codec is trained on a
        sample of the live and the new vectors, and every document is coded into one new
        segment; with one, the new documents are coded with it. Nothing is committed until
        the segment is complete: an error or KeyboardInterrupt leaves the last committed
        state (and no files behind).

        Raises:
            InvalidInputError: not a plaid index.
            InvalidEmbeddingError, DimensionMismatchError: bad vectors in ``source``.
        """
        with self._storage.writing():
            self._refresh_if_stale()
            index = self._index
            replaced = self._storage.docs.keys_for_ids(ids)
            removed = np.fromiter(replaced.values(), dtype=np.int64, count=len(replaced))
            next_key = self._storage.docs.meta_int("next_key")
            keys = np.arange(next_key, next_key + len(ids), dtype=np.int64)
            base = index.without(removed) if len(removed) else index
            seq = self._storage.next_seq()
            rows = [
                (int(k), i, t, metadata_json(m)) for k, i, t, m in zip(keys, ids, texts, metadatas)
            ]
            codec, segment = base.streamed(seq, keys, source, self._storage.folder, show_progress)
            if codec is None:  # coded with the index's codec: one more segment
                change = Commit(rows, removed.tolist(), segment, next_key=next_key + len(ids))
                self._commit(change, lambda idx: idx.with_segment(segment, removed))
                self._upkeep(self._maybe_merge, "merging segments")
                return
            live = np.union1d(base.live_keys(), keys)
            dropped = [s.name for s in base.segments]
            change = Commit(
                rows, removed.tolist(), segment, dropped, next_key + len(ids), codec=codec
            )
            self._commit(change, lambda idx: idx.with_codec(codec, [segment], live))

    def delete(self, ids: Sequence[str], *, missing: Missing = "raise") -> int:
        with self._storage.writing():
            self._refresh_if_stale()
            keys = self._keys(ids, missing)
            if not keys:
                return 0
            removed = np.asarray(keys, dtype=np.int64)
            self._commit(Commit(removed_keys=keys), lambda idx: idx.without(removed))
            self._upkeep(self._maybe_merge, "merging segments")
        return len(keys)

    # ------------------------------------------------------------------ reads
    def get(self, ids: Sequence[str], *, missing: Missing = "raise") -> list[Document]:
        keys = self._keys(ids, missing)
        rows = self._storage.docs.fetch(keys)
        return [Document(*rows[k]) for k in keys if k in rows]

    def get_vectors(self, ids: Sequence[str]) -> list[np.ndarray]:
        return [v for _, v in self.get_with_vectors(ids)]

    def get_with_vectors(
        self, ids: Sequence[str], *, missing: Missing = "raise"
    ) -> list[tuple[Document, np.ndarray]]:
        def read() -> list[tuple[Document, np.ndarray]]:
            index, keys, rows = self._snapshot(ids, missing)
            if missing == "skip":  # the snapshot may be older than the rows: keep what both hold
                live = index.live_keys()
                keys = [k for k in keys if k in rows and _holds(live, k)]
            vecs = index.get_vectors(np.asarray(keys, dtype=np.int64))
            return [(Document(*rows[k]), v) for k, v in zip(keys, vecs)]

        return self._consistent(read)

    def score_stored(self, query: torch.Tensor, ids: Sequence[str]) -> list[tuple[Document, float]]:
        def read() -> list[tuple[Document, float]]:  # the index scores in place
            index, keys, rows = self._snapshot(ids, "raise")
            scores = index.score_keys(query, np.asarray(keys, dtype=np.int64))
            return [(Document(*rows[k]), float(s)) for k, s in zip(keys, scores, strict=True)]

        return self._consistent(read)

    def _snapshot(
        self, ids: Sequence[str], missing: Missing
    ) -> tuple[Any, list[int], dict[int, tuple[str, str, dict]]]:
        """The index snapshot with the keys and rows of ``ids``, taken together (a write in
        this process swaps rows and vectors under the same lock)."""
        self._refresh_if_stale()
        with self._state_lock:
            keys = self._keys(ids, missing)
            return self._index, keys, self._storage.docs.fetch(keys)

    def _consistent(self, read: Callable[[], _T]) -> _T:
        """``read()``, again while another process's commits land between the database rows
        and this process's snapshot (rows that name keys the snapshot does not hold yet)."""
        for _ in range(_READ_ATTEMPTS):
            try:
                return read()
            except UnknownIdError:  # an id that is not stored: the caller's mistake
                raise
            except KeyError as exc:  # the index's own "keys not in the index"
                lost = exc
        raise UnknownIdError(
            f"the documents changed {_READ_ATTEMPTS} times while they were read ({lost}); try again"
        ) from lost

    def search(
        self, queries: Sequence[torch.Tensor], k: int, filter: FilterLike = None
    ) -> list[list[Hit]]:
        tree = parse_filter(filter)
        where, params = to_sql(tree)
        self._refresh_if_stale()
        with self._state_lock:
            index = self._index
        # Outside the lock: a slow filter must not hold up other searches or writers. The
        # keys may be a generation newer than the snapshot (a concurrent write): keys the
        # snapshot lacks are ignored, and rows deleted meanwhile are dropped by _hits.
        allowed = self._storage.docs.select_keys(where, params) if tree != MATCH_ALL else None
        deadline.check()  # before the scoring, the costly part
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
        index, generation, rows = self._live_rows()
        snapshot = index.segments, index.alive_masks()
        if is_index_folder(target):
            other = LocalBackend.open(target)
            try:
                if other.dim != self.dim or other.kind != self.kind:
                    raise InvalidInputError(
                        f"{target} holds a {other.kind!r} index of dimension {other.dim}, not "
                        f"{self.kind!r} of dimension {self.dim}"
                    )
                other._replace_all(snapshot, rows, index.codec)
            finally:
                other.close()
        else:
            # Build the complete copy beside the target, then rename it into place: a crash
            # leaves either no index at ``target`` or the whole one.
            mine = self._storage.manifest
            manifest = Manifest(
                dim=self.dim,
                index_kind=self.kind,
                encoder=self.encoder_config,
                index_settings={
                    k: v for k, v in mine.index_settings.items() if k not in _STATE_KEYS
                },
                colmax_version=__version__,
                chunking=mine.chunking,
            )
            remove_stale_staging(target)  # an earlier save to it that was killed
            check_free(target)
            staging = staging_path(target)
            try:
                with storage_errors("saving the index", target):
                    other = LocalBackend(Storage.create(staging, manifest))
                    try:
                        other._replace_all(snapshot, rows, index.codec)
                    finally:
                        other.close()
                    publish_folder(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        logger.info("saved %d documents (generation %d) to %s", len(rows), generation, target)
        return target

    def close(self) -> None:
        self._storage.close()

    # ------------------------------------------------------------------ internals
    def _keys(self, ids: Sequence[str], missing: Missing) -> list[int]:
        found = self._storage.docs.keys_for_ids(ids)
        if missing == "skip":
            return [found[i] for i in ids if i in found]
        absent = [i for i in ids if i not in found]
        if absent:
            raise UnknownIdError(
                f"{len(absent)} id(s) not in the index, e.g. {absent[:5]!r}; nothing was changed"
            )
        return [found[i] for i in ids]

    def _commit(self, change: Commit, update: Callable[[Any], Any]) -> None:
        # The new snapshot is built first (snapshots are immutable; under the writer lock no
        # other commit can come between) and swapped in under the state lock that also covers
        # the transaction: a reader never sees the new rows with the old vectors.
        new_index = update(self._index)

        def swap(generation: int) -> None:
            # A reader that refreshed from disk already holds this change (never go back).
            if self._generation < generation:
                self._index, self._generation = new_index, generation

        generation = self._storage.commit(change, self._state_lock, swap)
        live, _ = self._index.token_counts()
        report = self._index.report()
        if report is not None:  # where a user looks for "should I rebuild?"
            self._storage.manifest.index_settings["drift"] = report
        self._storage.write_manifest({"documents": len(self._index), "tokens": live}, generation)

    def _upkeep(self, step: Callable[[], None], what: str) -> None:
        """Run ``step`` after a committed write; a failure is logged, never raised (the next
        write tries again)."""
        try:
            step()
        except Exception as exc:
            logger.warning("%s after a committed write failed (%s); retried later", what, exc)

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
        snapshot: tuple[list[Any], list[np.ndarray]],
        rows: dict[int, tuple[str, str, dict]],
        codec: Any = None,
    ) -> None:
        """Replace everything by the live documents of ``snapshot`` (another index's), in one
        commit. ``codec``: the codec ``snapshot``'s coded segments use; it is adopted."""
        segments, alive = snapshot
        with self._storage.writing():
            self._refresh_if_stale()
            target: SegmentedIndex = self._index
            if codec is not None:
                target = target.with_codec(codec, [], np.zeros(0, dtype=np.int64))
            merged = (
                target.merge_segments(self._storage.next_seq(), segments, alive) if rows else None
            )
            # The copies get keys this folder never gave: keys are never reused, which lets a
            # reader of an older snapshot drop rows it does not know (the source's own keys
            # could name other documents here, and a search then returned the wrong one).
            source = np.asarray(sorted(rows), dtype=np.int64)
            first = self._storage.docs.meta_int("next_key")
            live = first + np.arange(len(source), dtype=np.int64)
            if merged is not None:
                merged = dataclasses.replace(
                    merged, keys=live[np.searchsorted(source, merged.keys)]
                )
            copied = (rows[was] for was in source.tolist())
            table = [
                (key, id_, text, metadata_json(meta))
                for key, (id_, text, meta) in zip(live.tolist(), copied)
            ]
            old_keys = self._index.live_keys().tolist()
            change = Commit(
                table,
                old_keys,
                merged,
                [s.name for s in self._index.segments],
                first + len(source),
                codec,
            )
            self._commit(change, lambda idx: target.refreshed([merged] if merged else [], live))

    def _reload(self) -> None:
        # Generation, segment list and keys come from one read transaction (consistent). A
        # writer in another process deletes the files of segments a merge replaced right after
        # its commit, so a listed file can vanish before we map it: then read again.
        deadline = time.monotonic() + _RELOAD_PATIENCE
        while True:
            generation, rows, live = self._storage.docs.read_state()
            try:
                index = self._read_index(rows, live)
                break
            except IndexFormatError:
                if self._storage.generation() == generation or time.monotonic() > deadline:
                    raise  # really missing, not replaced
        with self._state_lock:
            if generation > self._generation or self._generation == 0:  # never go back
                self._index, self._generation = index, generation

    def _read_index(self, rows: list[tuple[str, int, int]], live: np.ndarray) -> SegmentedIndex:
        index = self._index
        read_codec = index.codec_reader()
        if read_codec is not None:
            codec = self._storage.read_codec(read_codec, known=index.codec)
            if codec is not index.codec:  # first open, or another process retrained
                index = index.with_codec(codec, [], np.zeros(0, dtype=np.int64))
            segments = self._storage.read_segments(index.segment_reader(codec), rows=rows)
        else:
            segments = self._storage.read_segments(rows=rows)
        index = index.refreshed(segments, live)
        missing = np.setdiff1d(live, index.live_keys())
        if len(missing):
            raise IndexFormatError(
                f"{self.path}: {len(missing)} document(s) have no vectors in any segment "
                f"(keys {missing[:5].tolist()}); the index folder is damaged."
            )
        return index

    def _live_rows(self) -> tuple[Any, int, dict[int, tuple[str, str, dict[str, Any]]]]:
        """The current snapshot, its generation and the rows of all its live keys.

        Refreshed first (another process's commits), and read again when a commit lands
        between the snapshot and the rows: an updated document's old key is gone from the
        database and its new key is not in the snapshot, so neither version would be copied.
        """
        for _ in range(_READ_ATTEMPTS):
            self._refresh_if_stale()
            with self._state_lock:
                index, generation = self._index, self._generation
            keys = index.live_keys()
            rows = self._storage.docs.fetch(keys)
            if len(rows) == len(keys):  # keys are never reused: same count, same rows
                return index, generation, rows
        raise StorageError(
            f"the documents changed {_READ_ATTEMPTS} times while they were read; try again"
        )

    def _refresh_if_stale(self) -> None:
        """Pick up commits another process made to the same folder."""
        if self._storage.folder is not None and self._storage.generation() != self._generation:
            self._reload()


def _holds(live: np.ndarray, key: int) -> bool:
    i = int(np.searchsorted(live, key))
    return i < len(live) and int(live[i]) == key


def _hits(
    keys: np.ndarray, scores: np.ndarray, rows: dict[int, tuple[str, str, dict]]
) -> list[Hit]:
    hits: list[Hit] = []
    for key, score in zip(keys.tolist(), scores.tolist()):
        row = rows.get(key)
        if row is not None:  # deleted by a concurrent writer after the search started
            hits.append(Hit(row[0], float(score), row[1], dict(row[2]), len(hits)))
    return hits
