"""One permission policy for every file of an index folder: what the process umask allows.

Files get ``0o666 & ~umask`` and folders ``0o777 & ~umask``, as any file a program creates
with ``open()``. On colmax e83c1de files written atomically (manifest, segments) were always
0600 while ``documents.sqlite`` followed the umask (0644): a folder shared with a group was
half unreadable to it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from rel_helpers import DIM, raw_vectors

from colmax import Engine


@pytest.fixture(params=[0o022, 0o077, 0o002], ids=lambda m: f"umask-{m:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


@pytest.mark.parametrize("kind", ["flat", "plaid"])
def test_every_file_follows_the_umask(umask: int, kind: str, fast_dir: Path) -> None:
    with Engine(dim=DIM, index=kind, path=fast_dir / "idx") as engine:
        engine.add(["a", "b"], ids=["a", "b"], embeddings=[raw_vectors(1, 3), raw_vectors(2, 2)])
        engine.delete(["a"])
        engine.save(fast_dir / "copy")
    wrong = []
    for folder in (fast_dir / "idx", fast_dir / "copy"):
        for path in [folder, *folder.rglob("*")]:
            mode = stat.S_IMODE(path.stat().st_mode)
            want = (0o777 if path.is_dir() else 0o666) & ~umask
            if mode != want:
                wrong.append(f"{path.relative_to(fast_dir)}: {mode:04o}, expected {want:04o}")
    assert not wrong, wrong
