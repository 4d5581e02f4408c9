"""``documents.sqlite``: document ids, text and metadata, and the list of live segments.

SQLite (WAL mode, ``synchronous=FULL``) is the commit point of an index: one transaction
changes the documents and the segment list together, so a crash leaves either the state before
the write or the state after it. Segment files a crashed writer left behind are unreferenced and
removed on the next writable open.

Documents get an internal integer ``key`` that is never reused (``meta.next_key`` only grows), so
vectors of a deleted document can never be mistaken for a later document's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from colmax import deadline, limits
from colmax.errors import (
    EngineClosedError,
    FilterTimeoutError,
    IndexFormatError,
    IndexLockedError,
    InvalidInputError,
    StorageError,
)
from colmax.store.fsutil import file_mode

__all__ = ["DB_NAME", "SEGMENT_NAME", "CommitUncertainError", "DocumentStore", "SegmentRow"]

DB_NAME = "documents.sqlite"
_SCHEMA_VERSION = 1
_CHUNK = 500  # SQLite host parameters per statement, well under every build's limit
_POOL_SIZE = 16  # idle read connections kept open; busier moments open (and close) more
_PROGRESS_STEPS = 1000  # SQLite VM instructions between deadline checks (well under 1 ms)
SegmentRow = tuple[str, int, int]  # (name, n_docs, n_tokens)
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: A segment (or codec) name is one plain file-name component (``seg-00000012-3fa2c1d0``).
SEGMENT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_COLUMNS = {
    "documents": ("key", "id", "text", "metadata"),
    "segments": ("name", "seq", "n_docs", "n_tokens"),
    "meta": ("name", "value"),
}

#: SQLite result codes of a COMMIT that failed after its commit record may have reached the
#: log: a failed fsync (SQLITE_IOERR_FSYNC, SQLITE_IOERR_DIR_FSYNC). Recovery at the next open
#: may find the transaction complete, so its files must not be deleted.
_FSYNC_ERRORS = frozenset({1034, 1290})


class CommitUncertainError(StorageError):
    """A COMMIT failed and may nonetheless have committed (see :data:`_FSYNC_ERRORS`)."""


def _may_have_committed(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(code, int):
        return True  # unknown: assume the worst
    return code in _FSYNC_ERRORS


_SCHEMA = """
CREATE TABLE documents (
    key INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL
);
CREATE TABLE segments (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    n_docs INTEGER NOT NULL,
    n_tokens INTEGER NOT NULL
);
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('format', 'colmax-documents'), ('next_key', '0'), ('generation', '0');
"""


class DocumentStore:
    """Thread-safe access to ``documents.sqlite`` (or an in-memory database).

    Writes go through one connection behind :attr:`lock`. Reads of a file database take a
    connection of their own from a small pool and no lock: WAL mode lets them run in parallel
    with each other and with a writer, so one slow filter never holds up other readers. An
    in-memory database has one connection, shared under the lock. A filter query stops after
    :data:`colmax.limits.FILTER_TIMEOUT_S`, or earlier when the caller's
    :mod:`colmax.deadline` passes.
    """

    def __init__(
        self, conn: sqlite3.Connection, path: Path | None, read_only: bool = False
    ) -> None:
        self._conn = conn
        self.path = path
        self.lock = threading.RLock()
        self._read_only = read_only
        self._idle: list[sqlite3.Connection] = []  # pooled read connections (file databases)
        self._pool_lock = threading.Lock()
        self._held = threading.local()  # the read connection this thread is using, if any
        self._closed = False

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, path: Path | None) -> DocumentStore:
        """A new empty store at ``path`` (``None``: in memory)."""
        conn = _connect(path)
        if path is not None:
            # SQLite creates 0644 whatever the umask allows; its WAL and shared-memory files
            # copy the database's mode. One policy for the folder: see fsutil.file_mode.
            os.chmod(path, file_mode())
            conn.execute("PRAGMA journal_mode=WAL")
        with conn:
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        return cls(conn, path)

    @classmethod
    def open(cls, path: Path, *, read_only: bool = False) -> DocumentStore:
        """Open an existing store, checking that it is a colmax database.

        Nothing is written before the checks pass (a foreign or damaged file is left exactly as
        it was); then the connection switches to WAL mode.

        Raises:
            IndexFormatError: missing, not SQLite, unreadable, or not a colmax schema.
        """
        if not path.is_file():
            raise IndexFormatError(f"{path}: {DB_NAME} is missing; the index folder is incomplete.")
        _check_header(path)
        conn = None
        try:
            conn = _connect(path, read_only=read_only)
            _check_schema(conn, path)
            if not read_only:
                conn.execute("PRAGMA journal_mode=WAL")
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            # (SQLite quotes damaged schema text in its messages: they may not even decode.)
            if conn is not None:
                conn.close()
            raise IndexFormatError(f"{path}: not a readable SQLite database ({exc}).") from exc
        except IndexFormatError:
            if conn is not None:
                conn.close()
            raise
        return cls(conn, path, read_only)

    def close(self) -> None:
        with self.lock, self._pool_lock:
            self._closed = True
            for conn in self._idle:
                conn.close()
            self._idle.clear()
            self._conn.close()

    def _check_open(self) -> None:
        if not self._closed:
            return
        # sqlite3 said "Cannot operate on a closed database" (or, in memory, "damaged").
        if self.path is None:
            raise EngineClosedError("this in-memory engine is closed (its documents are gone)")
        raise EngineClosedError(
            f"the index at {self.path.parent} is closed here: open it again "
            "(Engine.load, Engine(path=...)) to use it"
        )

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on any exception).

        Raises:
            CommitUncertainError: ``COMMIT`` failed in a way that may still have made the
                transaction durable (an fsync error after the commit record was written).
                Any other failure means nothing was committed.
        """
        with self.lock:
            self._check_open()
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._rollback()
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                if _may_have_committed(exc):
                    raise CommitUncertainError(
                        f"{self.path}: the commit's outcome is unknown ({exc})"
                    ) from exc
                raise

    def _rollback(self) -> None:
        # After some failures (a full disk at COMMIT) SQLite has already rolled back.
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    @contextmanager
    def _reading(self, timeout: float | None = None) -> Iterator[sqlite3.Connection]:
        """A connection to read with; a damaged file surfaces as IndexFormatError.

        ``timeout``: seconds before the statements are interrupted (FilterTimeoutError); the
        caller's :func:`colmax.deadline.current` deadline applies in any case.
        """
        with self._connection() as conn:
            stop = _Stopper(timeout)
            if stop.active:
                conn.set_progress_handler(stop, _PROGRESS_STEPS)
            try:
                yield conn
            except sqlite3.OperationalError as exc:
                if stop.fired is not None:
                    raise stop.error() from exc
                if "locked" in str(exc) or "busy" in str(exc):
                    raise IndexLockedError(f"{self.path}: database is locked ({exc})") from exc
                raise IndexFormatError(f"{self.path}: database read failed ({exc}).") from exc
            except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
                raise IndexFormatError(f"{self.path}: damaged database ({exc}).") from exc
            finally:
                if stop.active:
                    conn.set_progress_handler(None, 0)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A pooled read connection of a file database, or the shared one under the lock.

        Nested reads in one thread get the same connection, so a read transaction
        (:meth:`read_state`) sees one snapshot throughout.
        """
        if self.path is None:
            with self.lock:
                self._check_open()
                yield self._conn
            return
        held = getattr(self._held, "conn", None)
        if held is not None:
            yield held
            return
        with self._pool_lock:
            self._check_open()
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = _connect(self.path, read_only=self._read_only)
            conn.execute("PRAGMA query_only=ON")
        self._held.conn = conn
        try:
            yield conn
        finally:
            self._held.conn = None
            if conn.in_transaction:  # a read transaction cut short by an error
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            with self._pool_lock:
                if self._closed or len(self._idle) >= _POOL_SIZE:
                    conn.close()
                else:
                    self._idle.append(conn)

    # ------------------------------------------------------------------ meta
    def meta_int(self, name: str) -> int:
        with self._reading() as conn:
            row = conn.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        value = row[0] if row is not None else None
        if not isinstance(value, str) or not value.lstrip("-").isdigit() or len(value) > 20:
            raise IndexFormatError(f"{self.path}: meta value {name!r} is missing or damaged.")
        return int(value)

    @staticmethod
    def set_meta(conn: sqlite3.Connection, name: str, value: int) -> None:
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, str(value)))

    def read_state(self) -> tuple[int, list[SegmentRow], np.ndarray]:
        """``(generation, live segments, live keys)`` read in one transaction: a consistent
        snapshot even while another process commits (separate reads could mix generations)."""
        with self._reading() as conn:
            conn.execute("BEGIN")
            try:
                state = (self.meta_int("generation"), self.segment_rows(), self.all_keys())
            finally:
                conn.execute("COMMIT")  # ends the read transaction
        return state

    # ------------------------------------------------------------------ documents
    def count(self) -> int:
        with self._reading() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0])

    def keys_for_ids(self, ids: Sequence[str]) -> dict[str, int]:
        """Map the given ids that exist to their keys.

        Raises:
            InvalidInputError: an id is not a ``str``. (A str UTF-8 cannot encode cannot have
                been stored, so it is simply not found.)
        """
        found: dict[str, int] = {}
        for i, id_ in enumerate(ids):
            if not isinstance(id_, str):
                raise InvalidInputError(
                    f"ids[{i}] must be a str, got {type(id_).__name__}: {id_!r:.80}"
                )
        ids = [i for i in ids if _encodable(i)]
        with self._reading() as conn:
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(f"SELECT id, key FROM documents WHERE id IN ({marks})", chunk)
                for id_, key in rows:
                    found[id_] = self._key(key)
        return found

    def fetch(self, keys: Iterable[int]) -> dict[int, tuple[str, str, dict[str, Any]]]:
        """``key -> (id, text, metadata)`` for the keys that still exist.

        Raises:
            IndexFormatError: a row holds something colmax never writes (a non-text id or
                text, metadata that is not a JSON object).
        """
        out: dict[int, tuple[str, str, dict[str, Any]]] = {}
        with self._reading() as conn:
            for chunk in _chunks([int(k) for k in keys]):
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT key, id, text, metadata FROM documents WHERE key IN ({marks})"
                for key, id_, text, meta in conn.execute(sql, chunk):
                    out[self._key(key)] = self._row(key, id_, text, meta)
        return out

    def _row(self, key: Any, id_: Any, text: Any, meta: Any) -> tuple[str, str, dict[str, Any]]:
        try:
            metadata = json.loads(meta) if isinstance(meta, str) else None
        except (ValueError, RecursionError):
            metadata = None
        if not isinstance(id_, str) or not isinstance(text, str) or not isinstance(metadata, dict):
            raise IndexFormatError(
                f"{self.path}: damaged document row (key {key!r}): id, text and metadata must "
                f"be text and a JSON object, got {type(id_).__name__}, {type(text).__name__}, "
                f"{str(meta)[:60]!r}."
            )
        return id_, text, metadata

    def _key(self, key: Any) -> int:
        if isinstance(key, bool) or not isinstance(key, int):
            raise IndexFormatError(f"{self.path}: damaged document key {key!r}.")
        return key

    def all_keys(self) -> np.ndarray:
        with self._reading() as conn:
            rows = conn.execute("SELECT key FROM documents ORDER BY key").fetchall()
        return np.array([self._key(r[0]) for r in rows], dtype=np.int64)

    def ids(self) -> list[str]:
        with self._reading() as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM documents ORDER BY key")]
        if not all(isinstance(i, str) for i in ids):
            raise IndexFormatError(f"{self.path}: damaged database: an id is not text.")
        return ids

    def texts_snapshot(self) -> tuple[int, list[str], list[str]]:
        """``(generation, ids, texts)`` of every document, oldest first, read in one
        transaction (what a derived index such as BM25 is built from)."""
        with self._reading() as conn:
            conn.execute("BEGIN")
            try:
                generation = self.meta_int("generation")
                rows = conn.execute("SELECT id, text FROM documents ORDER BY key").fetchall()
            finally:
                conn.execute("COMMIT")  # ends the read transaction
        if not all(isinstance(i, str) and isinstance(t, str) for i, t in rows):
            raise IndexFormatError(f"{self.path}: damaged database: an id or text is not text.")
        return generation, [r[0] for r in rows], [r[1] for r in rows]

    def select_ids(self, where: str, params: Sequence[Any]) -> list[str]:
        """Ids of documents matching a SQL condition built by :mod:`colmax.filters`.

        Raises:
            FilterTimeoutError: it ran longer than :data:`colmax.limits.FILTER_TIMEOUT_S`.
            DeadlineExceededError: the caller's deadline passed, or it was cancelled.
        """
        with self._reading(limits.FILTER_TIMEOUT_S) as conn:
            rows = conn.execute(f"SELECT id FROM documents WHERE {where}", params).fetchall()
        if not all(isinstance(r[0], str) for r in rows):
            raise IndexFormatError(f"{self.path}: damaged database: an id is not text.")
        return [r[0] for r in rows]

    def select_keys(self, where: str, params: Sequence[Any]) -> np.ndarray:
        """Keys of documents matching a SQL condition built by :mod:`colmax.filters`
        (bounded in time as :meth:`select_ids`)."""
        with self._reading(limits.FILTER_TIMEOUT_S) as conn:
            rows = conn.execute(f"SELECT key FROM documents WHERE {where}", params).fetchall()
        return np.array([self._key(r[0]) for r in rows], dtype=np.int64)

    @staticmethod
    def insert(conn: sqlite3.Connection, rows: Sequence[tuple[int, str, str, str]]) -> None:
        """Insert ``(key, id, text, metadata_json)`` rows inside a transaction."""
        conn.executemany("INSERT INTO documents VALUES (?, ?, ?, ?)", rows)

    @staticmethod
    def delete_keys(conn: sqlite3.Connection, keys: Sequence[int]) -> None:
        for chunk in _chunks([int(k) for k in keys]):
            marks = ",".join("?" * len(chunk))
            conn.execute(f"DELETE FROM documents WHERE key IN ({marks})", chunk)

    # ------------------------------------------------------------------ segments
    def segment_rows(self) -> list[SegmentRow]:
        """``(name, n_docs, n_tokens)`` of the live segments, oldest first.

        Raises:
            IndexFormatError: a row that colmax never writes: a name that is not a plain file
                name (``../x``, ``a.b``), negative or non-integer counts.
        """
        with self._reading() as conn:
            sql = "SELECT name, n_docs, n_tokens FROM segments ORDER BY seq"
            rows = conn.execute(sql).fetchall()
        for name, n_docs, n_tokens in rows:
            counts_ok = all(
                isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**62
                for n in (n_docs, n_tokens)
            )
            if not isinstance(name, str) or not SEGMENT_NAME.fullmatch(name) or not counts_ok:
                raise IndexFormatError(
                    f"{self.path}: damaged segment list: {name!r} ({n_docs!r} documents, "
                    f"{n_tokens!r} tokens)."
                )
        return [(str(n), int(d), int(t)) for n, d, t in rows]

    @staticmethod
    def add_segment(
        conn: sqlite3.Connection, name: str, seq: int, n_docs: int, n_tokens: int
    ) -> None:
        conn.execute("INSERT INTO segments VALUES (?, ?, ?, ?)", (name, seq, n_docs, n_tokens))

    @staticmethod
    def remove_segments(conn: sqlite3.Connection, names: Sequence[str]) -> None:
        conn.executemany("DELETE FROM segments WHERE name=?", [(n,) for n in names])


class _Stopper:
    """SQLite progress handler: interrupts a statement past ``timeout`` seconds or the current
    call's deadline (returning True makes SQLite stop with "interrupted")."""

    def __init__(self, timeout: float | None) -> None:
        self.call = deadline.current()
        self.timeout = timeout
        self.expires = time.monotonic() + timeout if timeout is not None else None
        self.active = self.expires is not None or self.call is not None
        self.fired: str | None = None

    def __call__(self) -> bool:
        if self.call is not None and self.call.exceeded():
            self.fired = "deadline"
        elif self.expires is not None and time.monotonic() > self.expires:
            self.fired = "timeout"
        return self.fired is not None

    def error(self) -> Exception:
        if self.fired == "deadline" and self.call is not None:
            return self.call.error()
        return FilterTimeoutError(
            f"the metadata filter ran longer than {self.timeout:g} s "
            "(colmax.limits.FILTER_TIMEOUT_S) and was stopped: it has too many conditions for "
            "this corpus; simplify it (a long list of values is one $in)"
        )


def _connect(path: Path | None, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode; the caller switches file databases to WAL."""
    if path is None:
        return sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    uri = f"{path.resolve().as_uri()}?mode={'ro' if read_only else 'rwc'}"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None, timeout=30)
    conn.execute("PRAGMA synchronous=FULL")
    # A database comes with the folder: functions that are not innocuous never run from its
    # schema (triggers, views, indexes); _check_schema refuses such objects anyway.
    conn.execute("PRAGMA trusted_schema=OFF")
    return conn


def _check_header(path: Path) -> None:
    """Refuse anything that is not an SQLite file before SQLite touches it: SQLite treats an
    empty file as a new database and would write to it."""
    with open(path, "rb") as handle:
        header = handle.read(len(_SQLITE_MAGIC))
    if header != _SQLITE_MAGIC:
        raise IndexFormatError(
            f"{path}: not an SQLite database (the file is empty, truncated or foreign)."
        )


def _check_schema(conn: sqlite3.Connection, path: Path) -> None:
    """The three tables with their columns, the format marker, a schema version we read, and
    nothing else: a trigger, view or index planted in a database that came with a folder would
    run inside colmax's own transactions."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    entries = conn.execute("SELECT type, name FROM sqlite_master").fetchall()
    unexpected = sorted(
        f"{kind} {name!r}"
        for kind, name in entries
        if not (kind == "table" and name in _COLUMNS)
        and not (kind == "index" and str(name).startswith("sqlite_autoindex_"))
    )
    if unexpected:
        raise IndexFormatError(
            f"{path}: unexpected objects in the database schema ({', '.join(unexpected[:5])}); "
            "colmax creates none, so the file was altered. Refusing to open it."
        )
    tables = {r[1] for r in entries if r[0] == "table"}
    columns_ok = all(
        name in tables
        and {r[1] for r in conn.execute(f"PRAGMA table_info({name})")} >= set(columns)
        for name, columns in _COLUMNS.items()
    )
    fmt = (
        conn.execute("SELECT value FROM meta WHERE name='format'").fetchone()
        if columns_ok
        else None
    )
    if not columns_ok or fmt != ("colmax-documents",):
        raise IndexFormatError(f"{path}: not a colmax documents database (foreign schema).")
    if not isinstance(version, int) or version > _SCHEMA_VERSION:
        raise IndexFormatError(f"{path}: schema version {version} is newer than this colmax reads.")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _chunks(items: Sequence[Any]) -> Iterator[list[Any]]:
    items = list(items)
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
