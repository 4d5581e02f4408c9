"""The page store: page images and patch grids kept in the index folder, content-addressed.

Layout (inside the index folder)::

    pages/<sha256>.png|.jpg|...   a page image (rendered PDF page as PNG, image files as given)
    pages/<sha256>.npy            a patch grid (int32 rows x cols: vector row of each patch)

A document refers to its files by name in its metadata (``"image"``, ``"patch_grid"``).

Why kept, not re-rendered on demand: a hit must return its page even when the source PDF has
moved, changed or was never a file (``add(images=[PIL image])``); the explanation heatmap must
line up with the very pixels that were embedded; and serving a stored PNG costs a file read,
while re-rendering costs a PDF parse and a rasterisation per request.

Crash safety follows the segments' protocol (:mod:`colmax.store.storage`): the files of a write
are written (temporary name, fsync, rename, fsync of the folder) *before* the backend commits
the documents that name them, so a committed document never points to a missing file. A crash
before the commit leaves unreferenced files; they and the files of deleted pages are removed by
:meth:`PageStore.collect_garbage` once older than a grace period (as ``git gc`` prunes only
old loose objects), so a concurrent writer's files, written but not yet committed, are never
taken. Names are content hashes: the same page added twice is stored once, and a file is never
rewritten in place.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from colmax.errors import IndexFormatError, InvalidInputError
from colmax.store.fsutil import fsync_dir, np_load

__all__ = ["GRACE_SECONDS", "PAGES_DIR", "PageStore", "is_page_name"]

#: Folder of the page store inside an index folder.
PAGES_DIR = "pages"
#: Unreferenced files younger than this are kept (they may belong to a write in progress).
GRACE_SECONDS = 600.0
_NAME = re.compile(r"^[0-9a-f]{64}\.(png|jpg|jpeg|webp|tif|tiff|bmp|gif|npy)$")
_MIME = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".bmp": "image/bmp",
    ".gif": "image/gif",
}


def is_page_name(name: Any) -> bool:
    """Whether ``name`` is a page-store file name (a hash and a known suffix, nothing else:
    metadata cannot point outside the store)."""
    return isinstance(name, str) and _NAME.match(name) is not None


def _name(data: bytes, suffix: str) -> str:
    return hashlib.sha256(data).hexdigest() + suffix


class PageStore:
    """Page images and patch grids, in ``<index>/pages/`` or in memory (``folder=None``)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder / PAGES_DIR if folder is not None else None
        self._memory: dict[str, bytes] = {}
        self._stored_at: dict[str, float] = {}  # in memory: a file's age, as mtime on disk
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ writing
    def put(self, data: bytes, suffix: str) -> str:
        """Store ``data`` (durable once :meth:`sync` returns); returns its name."""
        suffix = suffix.lower()
        name = _name(data, suffix)
        if not is_page_name(name):
            raise InvalidInputError(f"unsupported page file suffix {suffix!r}")
        if self.folder is None:
            with self._lock:
                self._memory[name] = data
                self._stored_at[name] = time.time()  # refreshed, as os.utime on disk
            return name
        self.folder.mkdir(exist_ok=True)
        path = self.folder / name
        if path.is_file() and path.stat().st_size == len(data):
            # Already there (same content): refresh its age so a concurrent garbage
            # collection does not take it before this write commits.
            os.utime(path)
            return name
        tmp = self.folder / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return name

    def put_image(self, image: Any) -> str:
        """Store a PIL image as PNG; returns its name."""
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return self.put(buffer.getvalue(), ".png")

    def put_grid(self, grid: np.ndarray) -> str:
        """Store a patch grid (int32 ``(rows, cols)``); returns its name."""
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(grid, dtype=np.int32), allow_pickle=False)
        return self.put(buffer.getvalue(), ".npy")

    def sync(self) -> None:
        """Make the renames of :meth:`put` durable (call before committing the documents)."""
        if self.folder is not None and self.folder.is_dir():
            fsync_dir(self.folder)

    # ------------------------------------------------------------------ reading
    def read(self, name: str) -> bytes:
        """The bytes of a stored file.

        Raises:
            IndexFormatError: a bad name, or the file is missing (a damaged folder).
        """
        if not is_page_name(name):
            raise IndexFormatError(f"{name!r} is not a page-store file name")
        if self.folder is None:
            with self._lock:
                if name in self._memory:
                    return self._memory[name]
            raise IndexFormatError(f"page file {name} is not in this engine's page store")
        try:
            return (self.folder / name).read_bytes()
        except FileNotFoundError as exc:
            raise IndexFormatError(
                f"{self.folder / name}: page file missing; the index folder is damaged"
            ) from exc

    def path(self, name: str) -> Path | None:
        """Where a stored file lives on disk (``None`` in memory)."""
        if not is_page_name(name):
            raise IndexFormatError(f"{name!r} is not a page-store file name")
        return None if self.folder is None else self.folder / name

    def image(self, name: str) -> Any:
        """A stored page image as an RGB PIL image."""
        from colmax.vision.pages import _pil

        with _pil().open(io.BytesIO(self.read(name))) as opened:
            return opened.convert("RGB")

    def grid(self, name: str) -> np.ndarray:
        """A stored patch grid."""
        try:
            grid = np_load(io.BytesIO(self.read(name)))
        except ValueError as exc:
            raise IndexFormatError(f"page file {name} is not a patch grid: {exc}") from exc
        if grid.ndim != 2 or grid.dtype != np.int32:
            raise IndexFormatError(f"page file {name} is not a 2-d int32 patch grid")
        return grid

    @staticmethod
    def mime_type(name: str) -> str:
        """The media type of an image name (``image/png``...)."""
        return _MIME.get(Path(name).suffix, "application/octet-stream")

    def names(self) -> set[str]:
        """Every stored name."""
        if self.folder is None:
            with self._lock:
                return set(self._memory)
        if not self.folder.is_dir():
            return set()
        return {p.name for p in self.folder.iterdir() if is_page_name(p.name)}

    # ------------------------------------------------------------------ maintenance
    def collect_garbage(
        self, referenced: Iterable[str], *, grace_seconds: float = GRACE_SECONDS
    ) -> int:
        """Remove files no document refers to and older than ``grace_seconds``; returns how
        many were removed (crash leftovers and the pages of deleted documents)."""
        keep = set(referenced)
        cutoff = time.time() - grace_seconds
        if self.folder is None:
            with self._lock:
                gone = [n for n, at in self._stored_at.items() if n not in keep and at < cutoff]
                for name in gone:
                    del self._memory[name], self._stored_at[name]
            return len(gone)
        if not self.folder.is_dir():
            return 0
        removed = 0
        for path in self.folder.iterdir():
            stale = path.name.endswith(".tmp") or (
                is_page_name(path.name) and path.name not in keep
            )
            with contextlib.suppress(FileNotFoundError):
                if stale and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    def has_old_files(self, grace_seconds: float = GRACE_SECONDS) -> bool:
        """Whether any file is older than ``grace_seconds`` (else nothing can be collected)."""
        cutoff = time.time() - grace_seconds
        if self.folder is None:
            with self._lock:
                return any(at < cutoff for at in self._stored_at.values())
        if not self.folder.is_dir():
            return False
        for path in self.folder.iterdir():
            try:
                if path.stat().st_mtime < cutoff:
                    return True
            except FileNotFoundError:
                continue
        return False

    def copy_to(self, index_folder: Path, names: Iterable[str]) -> None:
        """Copy the named files into another index folder's page store (``Engine.save``)."""
        target = PageStore(index_folder)
        for name in sorted(set(names)):
            target.put(self.read(name), Path(name).suffix)
        target.sync()
