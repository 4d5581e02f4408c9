"""Durable, atomic file writes.

Every file colmax writes into an index folder goes through here: write a temporary file in the
same folder, fsync it, rename it over the target (atomic on POSIX), then fsync the folder so the
rename itself survives a power cut. A reader therefore sees the old file or the new one, never a
torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
import tokenize
from pathlib import Path
from typing import Any

import numpy as np

from colmax.errors import IndexFormatError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_npy",
    "check_no_links",
    "fsync_dir",
    "load_npy",
    "publish_folder",
    "staging_path",
]


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (renames, creations) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably."""
    _atomic_write(path, lambda handle: handle.write(data))


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON (no NaN/inf allowed) atomically and durably."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_npy(path: Path, array: np.ndarray) -> None:
    """Write one array as ``.npy`` atomically and durably (``allow_pickle=False``)."""

    def write(handle: Any) -> None:
        # Through a plain ``write`` method, not the file itself: numpy's fast path for real
        # files (``ndarray.tofile``) reports a full disk as an OSError without errno.
        np.lib.format.write_array(_Writer(handle), np.ascontiguousarray(array), allow_pickle=False)

    _atomic_write(path, write)


class _Writer:
    """A file with nothing but ``write`` (see :func:`atomic_write_npy`)."""

    def __init__(self, handle: Any) -> None:
        self.write = handle.write


def check_no_links(folder: Path) -> None:
    """Refuse an index folder that contains a symbolic link (or a non-regular file).

    colmax never creates links inside an index folder. Following one would read files from
    elsewhere as if they were part of the index, and cleaning up orphan files (which deletes
    what the database does not list) would delete files wherever the link points. The folder
    itself may be a link; its entries and those of its subfolders may not.

    Raises:
        IndexFormatError: naming the first offending entry.
    """
    if not folder.is_dir():
        return
    for entry in _entries(folder):
        if entry.is_symlink():
            raise IndexFormatError(
                f"{entry}: is a symbolic link; colmax index folders never contain links, so "
                "this folder was not written by colmax (or was altered). Copy the real files in."
            )
        if not (entry.is_file() or entry.is_dir()):
            raise IndexFormatError(f"{entry}: is neither a file nor a folder.")


def _entries(folder: Path) -> list[Path]:
    top = list(folder.iterdir())
    inner = [p for d in top if d.is_dir() and not d.is_symlink() for p in d.iterdir()]
    return top + inner


def staging_path(target: Path) -> Path:
    """A fresh hidden sibling of ``target`` to build a folder in before publishing it."""
    return target.parent / f".{target.name}.{os.getpid()}-{os.urandom(4).hex()}.staging"


def publish_folder(staging: Path, target: Path) -> None:
    """Rename a fully written folder into place (``target`` must be absent or empty)."""
    if target.exists():
        target.rmdir()  # only an empty folder; anything else raises and is left alone
    os.rename(staging, target)
    fsync_dir(target.parent)


def load_npy(path: Path, kind: str, *, mmap: bool = False) -> np.ndarray:
    """``np.load`` of an index file (never unpickling), every failure an
    :class:`IndexFormatError` naming the file (``kind``: "segment", "codec", ...).

    Args:
        path: the ``.npy`` file.
        kind: what the file belongs to, for the messages.
        mmap: memory-map it read-only instead of reading it.
    """
    if not path.is_file():
        raise IndexFormatError(f"{path}: {kind} file is missing; the index folder is incomplete.")
    try:
        if path.stat().st_size == 0:
            raise ValueError("empty file")
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError) as exc:
        # (numpy parses the .npy header with ast/tokenize: a damaged one raises those.)
        raise IndexFormatError(f"{path}: unreadable {kind} file ({exc}).") from exc
