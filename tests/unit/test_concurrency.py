"""Concurrent readers and writers, in threads and across processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from colmax import Engine
from colmax.errors import IndexLockedError

DIM = 8


def vec(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.normal(size=(n, DIM)).astype(np.float32)


def test_searches_run_while_another_thread_writes() -> None:
    engine = Engine(dim=DIM)
    rng = np.random.default_rng(0)
    engine.add(embeddings=[vec(rng, 4) for _ in range(50)], ids=[f"seed{i}" for i in range(50)])
    ever_added = {f"seed{i}" for i in range(50)}
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        wrng = np.random.default_rng(1)
        try:
            for i in range(60):
                ever_added.add(f"w{i}")
                engine.add(embeddings=[vec(wrng, 3)], ids=[f"w{i}"])
                if i % 3 == 0:
                    engine.delete([f"w{i}"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            stop.set()

    def reader(seed: int) -> None:
        rrng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                hits = engine.search(query_embeddings=vec(rrng, 2), k=10)
                assert all(h.id in ever_added and np.isfinite(h.score) for h in hits)
                assert [h.rank for h in hits] == list(range(len(hits)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(engine) == 50 + 60 - 20


def test_two_engines_on_one_folder_serialise_their_writes(tmp_path: Path) -> None:
    a = Engine(dim=DIM, path=tmp_path / "idx")
    b = Engine.load(tmp_path / "idx")
    rng = np.random.default_rng(2)

    def write(engine: Engine, prefix: str) -> None:
        for i in range(15):
            engine.add(embeddings=[vec(rng, 2)], ids=[f"{prefix}{i}"])

    threads = [threading.Thread(target=write, args=(e, p)) for e, p in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    expected = {f"{p}{i}" for p in "ab" for i in range(15)}
    for engine in (a, b, Engine.load(tmp_path / "idx")):
        assert set(engine.ids()) == expected and len(engine) == 30


def test_a_second_process_writer_waits_then_gets_a_clear_error(tmp_path: Path) -> None:
    Engine(dim=DIM, path=tmp_path / "idx").add(embeddings=[np.ones((1, DIM))], ids=["x"])
    holder = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from colmax.store.lock import FolderLock
        with FolderLock(Path({str(tmp_path / "idx")!r})).hold():
            print("locked", flush=True)
            time.sleep(30)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        engine = Engine.load(tmp_path / "idx", lock_timeout=0.5)
        with pytest.raises(IndexLockedError, match="another process"):
            engine.add(embeddings=[np.ones((1, DIM))], ids=["y"])
        assert engine.ids() == ["x"]
    finally:
        proc.kill()
        proc.wait()
    engine.add(
        embeddings=[np.ones((1, DIM))], ids=["y"]
    )  # the kernel released the dead holder's lock
    assert sorted(Engine.load(tmp_path / "idx").ids()) == ["x", "y"]
