"""colmax.store.fsutil.check_no_links: links and special files are refused; files that another
process renames or removes while the check runs are not (a reader opening an index folder
while a writer works in it).

The race was found by the test suite running on two workers: a reader process failed with
"...keys.npy.<random>.tmp: is neither a file nor a folder" because the writer renamed that
temporary file between the folder's listing and the check of the entry.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from colmax.errors import IndexFormatError
from colmax.store.fsutil import check_no_links


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "idx"
    (folder / "segments").mkdir(parents=True)
    (folder / "manifest.json").write_text("{}")
    (folder / "segments" / "seg-1.npy").write_bytes(b"x")
    return folder


def test_a_plain_folder_passes(tmp_path: Path) -> None:
    check_no_links(_folder(tmp_path))


@pytest.mark.parametrize("where", ["manifest.json", "segments/seg-2.npy", "dangling"])
def test_links_are_refused(tmp_path: Path, where: str) -> None:
    folder = _folder(tmp_path)
    target = tmp_path / "elsewhere" if where != "dangling" else tmp_path / "missing"
    if where != "dangling":
        target.write_text("outside")
    link = folder / where
    if link.exists():
        link.unlink()
    link.symlink_to(target)
    with pytest.raises(IndexFormatError, match="symbolic link"):
        check_no_links(folder)


def test_a_fifo_is_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    os.mkfifo(folder / "segments" / "pipe")
    with pytest.raises(IndexFormatError, match="neither a file nor a folder"):
        check_no_links(folder)


def test_files_renamed_or_removed_meanwhile_are_not_errors(tmp_path: Path) -> None:
    """A writer thread creates, renames and removes temporary files and a staging folder as
    fast as it can while the check runs over and over: at least 3,000 checks and 200 writer
    cycles, however fast the host runs either side (a count of checks alone left the writer
    60 cycles on a slow CI host)."""
    folder = _folder(tmp_path)
    stop = threading.Event()
    cycles = 0

    def writer() -> None:
        nonlocal cycles
        seg = folder / "segments"
        while not stop.is_set():
            tmp = seg / f".seg-{cycles}.npy.tmp"
            tmp.write_bytes(b"y")
            tmp.rename(seg / f"seg-{cycles}.npy")
            (seg / f"seg-{cycles}.npy").unlink()
            staging = folder / f"gen-{cycles}.staging"
            staging.mkdir()
            (staging / "part").write_bytes(b"z")
            (staging / "part").unlink()
            staging.rmdir()
            cycles += 1

    thread = threading.Thread(target=writer)
    thread.start()
    checks = 0
    deadline = time.monotonic() + 120.0
    try:
        while (checks < 3000 or cycles < 200) and time.monotonic() < deadline:
            check_no_links(folder)
            checks += 1
    finally:
        stop.set()
        thread.join()
    assert cycles >= 200  # the writer did run alongside
