"""Durable, atomic file writes.

Every file colmax writes into an index folder goes through here: write a temporary file in the
same folder, fsync it, rename it over the target (atomic on POSIX), then fsync the folder so the
rename itself survives a power cut. A reader therefore sees the old file or the new one, never a
torn one.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import tempfile
import threading
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
    "current_umask",
    "file_mode",
    "fsync_dir",
    "load_npy",
    "np_load",
    "publish_folder",
    "remove_stale_staging",
    "staging_path",
]


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (renames, creations) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (briefly racy with other threads)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The permissions of every file colmax creates in an index folder: ``0o666 & ~umask``,
    what ``open()`` would give (directories get ``0o777 & ~umask`` from ``mkdir`` itself)."""
    return 0o666 & ~current_umask()


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())  # mkstemp makes 0600 whatever the umask
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
        try:
            mode = entry.lstat().st_mode
        except FileNotFoundError:
            # Listed, then gone: another process writing this index renamed or removed it (its
            # temporary files and staging folders come and go while readers open the index).
            continue
        if stat.S_ISLNK(mode):
            raise IndexFormatError(
                f"{entry}: is a symbolic link; colmax index folders never contain links, so "
                "this folder was not written by colmax (or was altered). Copy the real files in."
            )
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise IndexFormatError(f"{entry}: is neither a file nor a folder.")


def _entries(folder: Path) -> list[Path]:
    top = list(folder.iterdir())
    inner: list[Path] = []
    for sub in top:
        if sub.is_dir() and not sub.is_symlink():
            try:
                inner.extend(sub.iterdir())
            except FileNotFoundError:  # removed meanwhile by a writer (a staging folder)
                continue
    return top + inner


#: ``<host>-<pid>-<random>`` in a staging folder's name (``<pid>-<random>`` before issue 18).
_STAGING_TAG = re.compile(r"(?:(?P<host>[0-9a-f]{8})-)?(?P<pid>[0-9]+)-[0-9a-f]{8}")
_STAGING_SUFFIX = ".staging"


def _host_tag() -> str:
    """Eight hex digits naming this machine: a process id means nothing on another host."""
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def staging_path(target: Path) -> Path:
    """A fresh hidden sibling of ``target`` to build a folder in before publishing it.

    Named ``.<target>.<host>-<pid>-<random>.staging``, so that :func:`remove_stale_staging`
    can tell one left by a dead process of this machine.
    """
    tag = f"{_host_tag()}-{os.getpid()}-{os.urandom(4).hex()}"
    return target.parent / f".{target.name}.{tag}{_STAGING_SUFFIX}"


def remove_stale_staging(target: Path) -> list[Path]:
    """Delete the staging folders of ``target`` (also nested ones, a save builds its copy in a
    staging folder of a staging folder) whose writers were processes of this machine that no
    longer run: a write killed before it published its folder.

    Staging folders of live processes, of this one, and of other machines (a shared file
    system) are left alone.

    Returns:
        The folders removed.
    """
    removed = []
    pattern = f".*{glob.escape(target.name)}.*{_STAGING_SUFFIX}"
    for entry in target.parent.glob(pattern):
        pids = _staging_pids(entry.name, target.name)
        if pids is None or entry.is_symlink() or not entry.is_dir():
            continue
        if any(pid == os.getpid() or _alive(pid) for pid in pids):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _staging_pids(name: str, target: str) -> list[int] | None:
    """The writer pids in a staging folder name of ``target`` made on this machine, or None
    when ``name`` is not one."""
    pids = []
    while name.startswith(".") and name.endswith(_STAGING_SUFFIX):
        base, _, tag = name[1 : -len(_STAGING_SUFFIX)].rpartition(".")
        match = _STAGING_TAG.fullmatch(tag)
        if match is None or not base:
            return None
        if match["host"] is not None and match["host"] != _host_tag():
            return None
        pids.append(int(match["pid"]))
        name = base
    return pids if pids and name == target else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or an absurd number): leave it alone
    return True


def publish_folder(staging: Path, target: Path) -> None:
    """Rename a fully written folder into place (``target`` must be absent or empty)."""
    if target.exists():
        target.rmdir()  # only an empty folder; anything else raises and is left alone
    os.rename(staging, target)
    fsync_dir(target.parent)


# numpy parses every .npy header with ``ast.literal_eval``. On CPython 3.11, ``ast.parse`` run by
# two threads at once can fail with "SystemError: AST constructor recursion depth mismatch" when a
# garbage-collection finalizer switches threads mid-parse (the depth counter is shared); a search
# thread reloading segments while another thread does the same saw it. Headers are tiny, so one
# lock around every np.load in colmax costs nothing measurable.
_NPY_LOCK = threading.Lock()


def np_load(source: Any, **options: Any) -> Any:
    """``np.load`` behind colmax's lock (see ``_NPY_LOCK``); never unpickles."""
    with _NPY_LOCK:
        return np.load(source, allow_pickle=False, **options)


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
        return np_load(path, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError) as exc:
        # (numpy parses the .npy header with ast/tokenize: a damaged one raises those.)
        raise IndexFormatError(f"{path}: unreadable {kind} file ({exc}).") from exc
