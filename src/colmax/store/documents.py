"""``documents.sqlite``: document ids, text and metadata, and the list of live segments.

SQLite (WAL mode, ``synchronous=FULL``) is the commit point of an index: one transaction
changes the documents and the segment list together, so a crash leaves either the state before
the write or the state after it. Segment files a crashed writer left behind are unreferenced and
removed on the next writable open.

Documents get an internal integer ``key`` that is never reused (``meta.next_key`` only grows), so
vectors of a deleted document can never be mistaken for a later document's.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from colmax.errors import IndexFormatError

__all__ = ["DB_NAME", "DocumentStore", "SegmentRow"]

DB_NAME = "documents.sqlite"
_SCHEMA_VERSION = 1
_CHUNK = 500  # SQLite host parameters per statement, well under every build's limit
SegmentRow = tuple[str, int, int]  # (name, n_docs, n_tokens)

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
    """Thread-safe wrapper over one SQLite connection (file or in-memory).

    All access goes through one lock; statements are short (the heavy work, encoding and
    scoring, happens outside), so contention stays low.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path | None) -> None:
        self._conn = conn
        self.path = path
        self.lock = threading.RLock()

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, path: Path | None) -> DocumentStore:
        """A new empty store at ``path`` (``None``: in memory)."""
        conn = _connect(path)
        with conn:
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        return cls(conn, path)

    @classmethod
    def open(cls, path: Path, *, read_only: bool = False) -> DocumentStore:
        """Open an existing store, checking that it is a colmax database."""
        if not path.is_file():
            raise IndexFormatError(f"{path}: {DB_NAME} is missing; the index folder is incomplete.")
        try:
            conn = _connect(path, read_only=read_only)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            fmt = (
                conn.execute("SELECT value FROM meta WHERE name='format'").fetchone()
                if "meta" in tables
                else None
            )
        except sqlite3.DatabaseError as exc:
            raise IndexFormatError(f"{path}: not a readable SQLite database ({exc}).") from exc
        if not {"documents", "segments", "meta"} <= tables or fmt != ("colmax-documents",):
            conn.close()
            raise IndexFormatError(f"{path}: not a colmax documents database (foreign schema).")
        if version > _SCHEMA_VERSION:
            conn.close()
            raise IndexFormatError(
                f"{path}: schema version {version} is newer than this colmax reads."
            )
        return cls(conn, path)

    def close(self) -> None:
        with self.lock:
            self._conn.close()

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on any exception)."""
        with self.lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # ------------------------------------------------------------------ meta
    def meta_int(self, name: str) -> int:
        with self.lock:
            row = self._conn.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        if row is None or not row[0].lstrip("-").isdigit():
            raise IndexFormatError(f"{self.path}: meta value {name!r} is missing or damaged.")
        return int(row[0])

    @staticmethod
    def set_meta(conn: sqlite3.Connection, name: str, value: int) -> None:
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, str(value)))

    # ------------------------------------------------------------------ documents
    def count(self) -> int:
        with self.lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0])

    def keys_for_ids(self, ids: Sequence[str]) -> dict[str, int]:
        """Map the given ids that exist to their keys."""
        found: dict[str, int] = {}
        with self.lock:
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT id, key FROM documents WHERE id IN ({marks})", chunk
                )
                found.update(rows)
        return found

    def fetch(self, keys: Iterable[int]) -> dict[int, tuple[str, str, dict[str, Any]]]:
        """``key -> (id, text, metadata)`` for the keys that still exist."""
        out: dict[int, tuple[str, str, dict[str, Any]]] = {}
        with self.lock:
            for chunk in _chunks([int(k) for k in keys]):
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT key, id, text, metadata FROM documents WHERE key IN ({marks})"
                for key, id_, text, meta in self._conn.execute(sql, chunk):
                    out[key] = (id_, text, json.loads(meta))
        return out

    def all_keys(self) -> np.ndarray:
        with self.lock:
            rows = self._conn.execute("SELECT key FROM documents ORDER BY key").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def ids(self) -> list[str]:
        with self.lock:
            return [r[0] for r in self._conn.execute("SELECT id FROM documents ORDER BY key")]

    def select_keys(self, where: str, params: Sequence[Any]) -> np.ndarray:
        """Keys of documents matching a SQL condition built by :mod:`colmax.store.filters`."""
        with self.lock:
            rows = self._conn.execute(f"SELECT key FROM documents WHERE {where}", params).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

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
        with self.lock:
            return list(
                self._conn.execute("SELECT name, n_docs, n_tokens FROM segments ORDER BY seq")
            )

    @staticmethod
    def add_segment(
        conn: sqlite3.Connection, name: str, seq: int, n_docs: int, n_tokens: int
    ) -> None:
        conn.execute("INSERT INTO segments VALUES (?, ?, ?, ?)", (name, seq, n_docs, n_tokens))

    @staticmethod
    def remove_segments(conn: sqlite3.Connection, names: Sequence[str]) -> None:
        conn.executemany("DELETE FROM segments WHERE name=?", [(n,) for n in names])


def _connect(path: Path | None, *, read_only: bool = False) -> sqlite3.Connection:
    if path is None:
        conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    else:
        uri = f"{path.resolve().as_uri()}?mode={'ro' if read_only else 'rwc'}"
        conn = sqlite3.connect(
            uri, uri=True, check_same_thread=False, isolation_level=None, timeout=30
        )
        if not read_only:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    return conn


def _chunks(items: Sequence[Any]) -> Iterator[list[Any]]:
    items = list(items)
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
