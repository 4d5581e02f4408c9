"""Persistence of an index: an index folder on disk, or the same structures in memory.

Folder layout::

    my-index/
      manifest.json        format, model settings, dim, dtype, counts (see manifest.py)
      documents.sqlite     ids, text, metadata, the list of live segments (the commit point)
      segments/*.npy       immutable segments: packed float16 token vectors (see segments.py),
                           or coded tokens of a plaid index (``pseg-*``)
      codecs/*.npy         plaid only: the centroids and residual buckets the coded segments
                           use; the current one is named in the database (``meta.codec``)
      write.lock           inter-process writer lock

A write first writes any new segment files, then commits one SQLite transaction that changes
documents and the segment list together, then refreshes the manifest summary, then deletes
segment files no longer listed. A crash before the commit leaves the old state plus orphan files
(removed on the next writable open); a crash after it leaves the new state.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from colmax.errors import IndexFormatError
from colmax.store.documents import (
    DB_NAME,
    SEGMENT_NAME,
    CommitUncertainError,
    DocumentStore,
    SegmentRow,
)
from colmax.store.fsutil import fsync_dir, publish_folder, remove_stale_staging, staging_path
from colmax.store.io_errors import storage_errors
from colmax.store.lock import FolderLock
from colmax.store.manifest import MANIFEST_NAME, Manifest
from colmax.store.segments import SEGMENT_DIR, Segment

__all__ = [
    "CODEC_DIR",
    "Commit",
    "Storage",
    "check_free",
    "is_index_folder",
    "remove_segment_files",
]

logger = logging.getLogger(__name__)

#: Folder of the plaid codec files, ``codecs/<name>.<part>.npy``.
CODEC_DIR = "codecs"

Row = tuple[int, str, str, str]  # key, id, text, metadata JSON
SegmentReader = Callable[[Path, str, int, int, int], Any]
CodecReader = Callable[[Path, str, int], Any]


def remove_segment_files(folder: Path, name: str) -> None:
    """Delete every file of segment ``name`` (``segments/<name>.*``)."""
    for path in (folder / SEGMENT_DIR).glob(f"{name}.*"):
        path.unlink(missing_ok=True)


def is_index_folder(path: Path) -> bool:
    return (path / MANIFEST_NAME).is_file()


class Commit:
    """What one write changes; applied in a single transaction by :meth:`Storage.commit`.

    ``codec`` (plaid indexes) is a new codec (an object with ``name`` and ``write(folder)``)
    that becomes the current one in the same transaction as the segment changes.
    """

    def __init__(
        self,
        rows: Sequence[Row] = (),
        removed_keys: Sequence[int] = (),
        new_segment: Any = None,
        dropped_segments: Sequence[str] = (),
        next_key: int | None = None,
        codec: Any = None,
    ) -> None:
        self.rows = rows
        self.removed_keys = removed_keys
        self.new_segment = new_segment
        self.dropped_segments = dropped_segments
        self.next_key = next_key
        self.codec = codec


class Storage:
    """Documents database + segments, on disk (``folder``) or in memory (``folder is None``)."""

    def __init__(
        self, docs: DocumentStore, manifest: Manifest, folder: Path | None, lock_timeout: float
    ) -> None:
        self.docs = docs
        self.manifest = manifest
        self.folder = folder
        self.write_lock = FolderLock(folder, lock_timeout) if folder else _MemoryLock()
        self._memory_segments: dict[str, Any] = {}
        self._memory_codec: Any = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def in_memory(cls, manifest: Manifest) -> Storage:
        return cls(DocumentStore.create(None), manifest, None, 0.0)

    @classmethod
    def create(cls, folder: Path, manifest: Manifest, lock_timeout: float = 60.0) -> Storage:
        """Create a new index folder atomically (built beside it, then renamed into place)."""
        folder = folder.absolute()
        check_free(folder)
        with storage_errors("creating the index folder", folder):
            folder.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_staging(folder)  # an earlier create of it that was killed
            tmp = staging_path(folder)
            try:
                tmp.mkdir()
                (tmp / SEGMENT_DIR).mkdir()
                DocumentStore.create(tmp / DB_NAME).close()
                manifest.write(tmp)
                fsync_dir(tmp)
                publish_folder(tmp, folder)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return cls.open(folder, lock_timeout=lock_timeout)

    @classmethod
    def open(cls, folder: Path, *, lock_timeout: float = 60.0) -> Storage:
        folder = folder.absolute()
        if not folder.is_dir():
            raise IndexFormatError(f"{folder}: no such index folder")
        manifest = Manifest.read(folder)
        docs = DocumentStore.open(folder / DB_NAME)
        storage = cls(docs, manifest, folder, lock_timeout)
        storage.collect_garbage()
        with contextlib.suppress(OSError):  # garbage only: never a reason to fail an open
            remove_stale_staging(folder)  # a save over this folder that was killed
        return storage

    def close(self) -> None:
        self.docs.close()

    # ------------------------------------------------------------------ reading
    def generation(self) -> int:
        return self.docs.meta_int("generation")

    def read_segments(
        self, reader: SegmentReader | None = None, rows: list[SegmentRow] | None = None
    ) -> list[Any]:
        """The segments the database lists, opened (memory-mapped) and validated.

        ``reader(folder, name, dim, n_docs, n_tokens)`` opens one segment (default: the fp16
        :meth:`Segment.read`); index kinds with other segment types pass their own.
        """
        rows = self.docs.segment_rows() if rows is None else rows
        if self.folder is None:
            return [self._memory_segments[name] for name, _, _ in rows]
        dim = self.manifest.dim
        read = reader or Segment.read
        return [read(self.folder, name, dim, n_docs, n_tokens) for name, n_docs, n_tokens in rows]

    def codec_name(self) -> str | None:
        """Name of the committed codec (plaid indexes), ``None`` when there is none."""
        if self.folder is None:
            return self._memory_codec.name if self._memory_codec is not None else None
        with self.docs.lock:
            return _codec_name(self.docs)

    def read_codec(self, reader: CodecReader, known: Any = None) -> Any:
        """The committed codec opened with ``reader(folder, name, dim)``, or ``None``.

        ``known`` (a codec already open) is returned as it is when it is still the current one,
        so a refresh does not re-read unchanged files.
        """
        if self.folder is None:
            return self._memory_codec
        name = self.codec_name()
        if name is None:
            return None
        if known is not None and getattr(known, "name", None) == name:
            return known
        return reader(self.folder, name, self.manifest.dim)

    def next_seq(self) -> int:
        return self.docs.meta_int("generation") + 1

    # ------------------------------------------------------------------ writing
    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the writer lock (threads and processes); I/O failures inside become
        :class:`~colmax.errors.StorageError` (see :mod:`colmax.store.io_errors`)."""
        with storage_errors("writing to the index", self.folder), self.write_lock.hold():
            yield

    def commit(
        self,
        change: Commit,
        state_lock: threading.Lock | threading.RLock,
        on_commit: Callable[[int], None] | None = None,
    ) -> int:
        """Apply ``change`` durably; returns the new generation. Call inside :meth:`writing`.

        ``state_lock`` is held around the transaction and ``on_commit(generation)`` (the
        caller's swap to its new in-memory state), so in-process readers switch to the new
        state at the same moment the database does: never new rows with old vectors.

        Raises:
            StorageError: the write failed before its commit point (:class:`DiskFullError`
                when space ran out); nothing changed and the new files are already removed.
                Clean-up after the commit point never raises (it is logged).
        """
        try:
            with storage_errors("writing to the index", self.folder):
                self._write_files(change)
                generation = self._transaction(change, state_lock, on_commit)
        except CommitUncertainError:
            raise  # the new files may be referenced now: the next open decides
        except BaseException:
            # Not every failure means "not committed": Ctrl-C during COMMIT's fsync is raised
            # when COMMIT returns, and a save may re-write the codec the folder already uses.
            # Only files the database does not name are removed.
            self._discard_files(change)
            raise
        self._after_commit(change)
        return generation

    def _write_files(self, change: Commit) -> None:
        if self.folder is None:
            return
        if change.new_segment is not None:
            change.new_segment.write(self.folder)
            fsync_dir(self.folder / SEGMENT_DIR)
        if change.codec is not None:
            change.codec.write(self.folder)
            fsync_dir(self.folder / CODEC_DIR)

    def _transaction(
        self,
        change: Commit,
        state_lock: threading.Lock | threading.RLock,
        on_commit: Callable[[int], None] | None,
    ) -> int:
        seg = change.new_segment
        with state_lock:
            generation = self._write_rows(change)
            if seg is not None and self.folder is None:
                self._memory_segments[seg.name] = seg
            if on_commit is not None:
                on_commit(generation)
        return generation

    def _write_rows(self, change: Commit) -> int:
        """The database side of a commit, in one transaction; returns the new generation."""
        seg = change.new_segment
        with self.docs.transaction() as conn:
            generation = (
                int(conn.execute("SELECT value FROM meta WHERE name='generation'").fetchone()[0])
                + 1
            )
            if change.removed_keys:
                DocumentStore.delete_keys(conn, change.removed_keys)
            if change.rows:
                DocumentStore.insert(conn, change.rows)
            if change.dropped_segments:
                DocumentStore.remove_segments(conn, change.dropped_segments)
            if seg is not None:
                DocumentStore.add_segment(conn, seg.name, generation, seg.n_docs, seg.n_tokens)
            if change.next_key is not None:
                DocumentStore.set_meta(conn, "next_key", change.next_key)
            if change.codec is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('codec', ?)", (change.codec.name,)
                )
            DocumentStore.set_meta(conn, "generation", generation)
        return generation

    def _discard_files(self, change: Commit) -> None:
        """Remove the files of a write that did not commit, at once (on a full disk the space
        is needed now, not at the next open), except those the database names: the write
        may have committed before the failure was raised, or (a save over an earlier copy)
        the codec is the one already committed. When the database cannot tell, the files
        stay; garbage collection removes them at a later open if they are unused."""
        if self.folder is None:
            return
        try:
            with self.docs.lock:
                segments = {name for name, _, _ in self.docs.segment_rows()}
                codec = _codec_name(self.docs)
        except Exception:  # an unknown state keeps every file
            logger.warning("could not read the index after a failed write", exc_info=True)
            return
        try:
            seg = change.new_segment
            if seg is not None and seg.name not in segments:
                remove_segment_files(self.folder, seg.name)
            if change.codec is not None and change.codec.name != codec:
                for path in (self.folder / CODEC_DIR).glob(f"{change.codec.name}.*"):
                    path.unlink(missing_ok=True)
        except OSError:
            logger.warning("could not remove the files of a failed write", exc_info=True)

    def _after_commit(self, change: Commit) -> None:
        """Delete what the committed change replaced. Best-effort: the change is durable, so a
        failure here is logged (the next writable open retries) and never raised."""
        if change.codec is not None:
            self._memory_codec = change.codec if self.folder is None else None
        for name in change.dropped_segments:
            self._memory_segments.pop(name, None)
        if self.folder is None:
            return
        try:
            if change.codec is not None:
                _remove_codecs_except(self.folder, change.codec.name)
            for name in change.dropped_segments:
                remove_segment_files(self.folder, name)
        except OSError:
            logger.warning("could not delete replaced index files (retried at the next open)")

    def write_manifest(self, counts: dict[str, int], generation: int) -> None:
        """Refresh the manifest's summary after a commit. Best-effort: the database is the
        commit point and the summary only informs, so a failure is logged, never raised."""
        self.manifest.counts = counts
        self.manifest.generation = generation
        if self.folder is not None:
            try:
                self.manifest.write(self.folder)
            except OSError as exc:
                logger.warning(
                    "could not refresh the manifest summary of %s (%s); the write itself is "
                    "committed",
                    self.folder,
                    exc,
                )

    def collect_garbage(self) -> None:
        """Remove segment and temp files no committed state refers to (left by a crash)."""
        if self.folder is None:
            return
        # Skip quietly when another writer is busy: it may own the files we would remove.
        with contextlib.suppress(Exception), self.write_lock.hold(timeout=0):
            # Every file of segment ``name`` is ``segments/<name>.<part>...`` whatever the
            # segment kind, so files are matched by the name before the first dot.
            listed = {name for name, _, _ in self.docs.segment_rows()}
            present = {p.name.split(".", 1)[0] for p in (self.folder / SEGMENT_DIR).glob("*")}
            if not listed <= present:
                return  # damaged or incomplete: delete nothing, opening will report it
            for path in (self.folder / SEGMENT_DIR).glob("*"):
                if path.name.split(".", 1)[0] not in listed:
                    path.unlink(missing_ok=True)
            for path in self.folder.glob(".*.tmp"):
                path.unlink(missing_ok=True)
            with self.docs.lock:
                current = _codec_name(self.docs)
            # Only next to the current codec's files: a database that names none, or a codec
            # whose files are gone, is damaged (opening reports it), and its codec files may
            # be the only copy left. (A codec a crash left before the first training commit
            # stays until the next training replaces it.)
            if current is not None and (self.folder / CODEC_DIR / f"{current}.meta.npy").is_file():
                _remove_codecs_except(self.folder, current)


def _codec_name(docs: DocumentStore) -> str | None:
    """The committed codec's name (call under ``docs.lock``).

    Raises:
        IndexFormatError: not one plain file-name component (``../../elsewhere/x``): it would
            be followed out of ``codecs/``, and the clean-up would delete the real codec.
    """
    # The meta table holds text; DocumentStore only offers meta_int.
    row = docs._conn.execute("SELECT value FROM meta WHERE name='codec'").fetchone()
    if row is None:
        return None
    if not isinstance(row[0], str) or not SEGMENT_NAME.fullmatch(row[0]):
        raise IndexFormatError(f"{docs.path}: damaged codec name {str(row[0])[:80]!r}.")
    return row[0]


def _remove_codecs_except(folder: Path, keep: str | None) -> None:
    """Delete codec files other than those of ``keep`` (a replaced codec, or a crash's)."""
    for path in (folder / CODEC_DIR).glob("*"):
        if path.name.split(".", 1)[0] != keep:
            path.unlink(missing_ok=True)


class _MemoryLock:
    def __init__(self) -> None:
        self._lock = threading.RLock()

    @contextmanager
    def hold(self, timeout: float | None = None) -> Iterator[None]:
        with self._lock:
            yield


def check_free(folder: Path) -> None:
    """Refuse to write into anything but a missing or empty folder."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise IndexFormatError(
            f"{folder} already exists and is not an empty folder; colmax will not overwrite files "
            "it did not create. Choose another path or remove it."
        )
