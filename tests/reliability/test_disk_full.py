"""A full disk (here: a per-file size limit, ``RLIMIT_FSIZE``) during a write.

Rules: a write that fails before its commit point raises a :class:`~colmax.errors.StorageError`
(:class:`~colmax.errors.DiskFullError` when space ran out), leaves the index exactly as it was
and removes the files it had started at once (not at the next open); a write whose commit went
through never raises, whatever fails after it (the manifest summary, a merge of segments), so a
client that retries a failed call without ids cannot store a document twice.

On colmax e83c1de each of these raised a raw ``OSError`` or ``sqlite3.OperationalError``, the
failed write's segment files stayed on the full disk, and a failed manifest refresh made a
committed ``add`` raise.
"""

from __future__ import annotations

import errno
import logging
import resource
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rel_helpers import DIM, engine_fingerprint, raw_vectors

from colmax import Engine
from colmax.errors import ColmaxError, DiskFullError, StorageError

LIMIT = 1 << 20  # bytes per file while the "disk" is full
BIG = (LIMIT // (2 * DIM)) + 1000  # tokens whose float16 segment file exceeds LIMIT


@contextmanager
def file_size_limit(nbytes: int) -> Iterator[None]:
    """Writes past ``nbytes`` in any file fail with EFBIG (as ENOSPC would on a full disk)."""
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills us
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} - {
        "write.lock",
        "documents.sqlite-wal",
        "documents.sqlite-shm",
    }


@pytest.fixture
def engine(fast_dir: Path) -> Iterator[Engine]:
    with Engine(dim=DIM, path=fast_dir / "idx") as eng:
        eng.add(["one", "two"], ids=["a", "b"], embeddings=[raw_vectors(1, 3), raw_vectors(2, 4)])
        yield eng


def _assert_unchanged(engine: Engine, before: Any, files: set[str]) -> None:
    assert engine_fingerprint(engine) == before
    assert engine.path is not None
    assert _files(engine.path) == files, "the failed write left files behind"
    with Engine.load(engine.path) as again:
        assert engine_fingerprint(again) == before
    # Space is back: the next write works (no transaction was left open).
    engine.add(["three"], ids=["c"], embeddings=[raw_vectors(3, 2)])
    assert engine.ids() == ["a", "b", "c"]


def test_a_segment_that_does_not_fit(engine: Engine) -> None:
    before, files = engine_fingerprint(engine), _files(engine.path)
    with file_size_limit(LIMIT), pytest.raises(DiskFullError) as info:
        engine.add(["huge"], ids=["h"], embeddings=[raw_vectors(9, BIG)])
    assert isinstance(info.value, OSError) and info.value.errno == errno.EFBIG
    _assert_unchanged(engine, before, files)


def test_a_database_write_that_does_not_fit(engine: Engine) -> None:
    """The vectors fit, the text does not (SQLite fails at its commit)."""
    before, files = engine_fingerprint(engine), _files(engine.path)
    with file_size_limit(LIMIT), pytest.raises(StorageError):
        engine.add(["x" * (2 * LIMIT)], ids=["h"], embeddings=[raw_vectors(9, 2)])
    _assert_unchanged(engine, before, files)


def test_a_new_folder_that_does_not_fit(fast_dir: Path) -> None:
    source = Engine(dim=DIM)
    source.add(["huge"], ids=["h"], embeddings=[raw_vectors(9, BIG)])
    with file_size_limit(LIMIT), pytest.raises(DiskFullError):
        source.save(fast_dir / "copy")
    assert sorted(p.name for p in fast_dir.iterdir()) == [], "staging or target left behind"


def test_a_failed_manifest_refresh_does_not_undo_a_committed_add(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The manifest is a summary written after the commit point; its write failing is logged."""
    import colmax.store.manifest as manifest_module

    def no_space(path: Path, obj: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(manifest_module, "atomic_write_json", no_space)
    with caplog.at_level(logging.WARNING):
        assert engine.add(["three"], ids=["c"], embeddings=[raw_vectors(3, 2)]) == ["c"]
        assert engine.delete(["a"]) == 1
    assert "manifest" in caplog.text
    monkeypatch.undo()
    with Engine.load(engine.path) as again:
        assert again.ids() == ["b", "c"]


@pytest.mark.parametrize("write", ["upsert", "delete"])
def test_a_merge_that_does_not_fit_after_the_commit(
    fast_dir: Path, write: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two of three documents of a segment replaced (or deleted): the write commits, then the
    mostly-dead segment is rewritten, and that rewrite (the big survivor) does not fit."""
    with Engine(dim=DIM, path=fast_dir / "idx") as engine:
        engine.add(
            ["a", "b", "big"],
            ids=["a", "b", "big"],
            embeddings=[raw_vectors(1, 2), raw_vectors(2, 2), raw_vectors(3, BIG)],
        )
        segments_before = engine.info().details["segments"]
        with file_size_limit(LIMIT), caplog.at_level(logging.WARNING):
            if write == "upsert":
                engine.add(["a2", "b2"], ids=["a", "b"], embeddings=[raw_vectors(4, 2)] * 2)
                expected = ["big", "a", "b"]
            else:
                assert engine.delete(["a", "b"]) == 2
                expected = ["big"]
        assert "merging segments" in caplog.text
        assert engine.ids() == expected
        assert engine.info().details["segments"] >= segments_before  # the merge did not happen
        listed = 3 * engine.info().details["segments"]
        assert len(list((fast_dir / "idx" / "segments").iterdir())) == listed, "merge files left"
        with Engine.load(fast_dir / "idx") as again:
            assert again.ids() == expected
            hit = again.search(query_embeddings=raw_vectors(3, BIG)[:4], k=1)[0]
            assert hit.id == "big"


def test_errors_are_colmax_errors_and_os_errors() -> None:
    """Callers catching ``OSError`` (as they did before) or ``ColmaxError`` both see them."""
    assert issubclass(DiskFullError, StorageError)
    assert issubclass(StorageError, ColmaxError) and issubclass(StorageError, OSError)
    assert np.dtype(np.float16).itemsize * DIM * BIG > LIMIT
