"""Two processes on one index folder: a reader sees only committed generations, writers are
serialised by the file lock, and a blocked writer gets ``IndexLockedError`` after its timeout.

Extends ``tests/unit/test_concurrency.py`` (lock held by a process that is then killed) with a
real second writer process, readers racing it, and the timing of the lock wait. One helper
process (:mod:`proc_worker`) serves the whole module, so colmax is imported once.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rel_helpers import check_versioned_hit, raw_vectors, versioned

from colmax import Engine
from colmax.errors import IndexLockedError

HERE = Path(__file__).resolve().parent


class Helper:
    """The second process."""

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), *sys.path]))
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "proc_worker.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.reply(timeout=120) == {"ready": True}

    def send(self, obj: dict[str, Any] | str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
        self.proc.stdin.flush()

    def ready(self) -> bool:
        """A reply is waiting (the helper finished its command)."""
        assert self.proc.stdout is not None
        return bool(select.select([self.proc.stdout], [], [], 0)[0])

    def reply(self, timeout: float = 120) -> dict[str, Any]:
        assert self.proc.stdout is not None
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            raise TimeoutError("helper process did not answer")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"helper process died (exit {self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def _helpers() -> Iterator[list[Helper]]:
    live = [Helper()]  # started once per module: starting one imports torch (seconds)
    yield live
    live[0].close()


@pytest.fixture
def helper(_helpers: list[Helper]) -> Helper:
    """The module's helper process; a new one where it died in an earlier test (that test
    failed for it; the next ones must not fail for the same reason)."""
    if _helpers[0].proc.poll() is not None:
        _helpers[0] = Helper()
    return _helpers[0]


def _add(engine: Engine, pairs: list[tuple[str, str]]) -> None:
    made = [versioned(i, v) for i, v in pairs]
    engine.add(
        [m[0] for m in made],
        ids=[i for i, _ in pairs],
        metadatas=[m[1] for m in made],
        embeddings=[m[2] for m in made],
    )


def _apply(live: dict[str, str], op: list[Any]) -> dict[str, str]:
    live = dict(live)
    if op[0] == "add":
        for id_, version in op[1]:
            live.pop(id_, None)
            live[id_] = version
    else:
        for id_ in op[1]:
            del live[id_]
    return live


def _no_merge_ops() -> list[list[Any]]:
    """Batch adds and single deletes that never leave a segment more than half dead and never
    exceed 8 segments: no merge, so no segment file is ever removed under the reader."""
    ops: list[list[Any]] = []
    for b in range(7):
        ops.append(["add", [[f"b{b}.{j}", f"g{len(ops)}"] for j in range(4)]])
        if b:
            ops.append(["delete", [f"b{b - 1}.0"]])
        if b > 1:
            ops.append(["delete", [f"b{b - 2}.1"]])
    return ops


def _race_reader(folder: Path, helper: Helper, generations: list[dict[str, str]]) -> list[str]:
    """Read ``folder`` until the helper finishes; returns the problems seen."""
    problems: list[str] = []
    reader = Engine.load(folder)
    orders = [list(g) for g in generations]
    sets = [set(g) for g in generations]
    floor = 0
    n = 0
    while not helper.ready() or n < 3:
        n += 1
        try:
            ids = reader.ids()
            matches = [g for g, order in enumerate(orders) if order == ids]
            if not matches:
                problems.append(f"ids() showed an uncommitted state: {ids}")
                continue
            if max(matches) < floor:
                problems.append(f"went back from generation {floor} to {max(matches)}")
            floor = min((g for g in matches if g >= floor), default=floor)
            query = raw_vectors(n, 3)
            hits = reader.search(query_embeddings=query, k=100)
            got = {h.id for h in hits}
            # A search runs on the snapshot it started from; documents deleted before it
            # fetches their rows are dropped (documented): live(g1) & live(g2), g1 <= g2.
            if not any(
                sets[g1] & sets[g2] == got
                for g1 in range(floor, len(sets))
                for g2 in range(g1, len(sets))
            ):
                problems.append(f"search showed an uncommitted state: {sorted(got)}")
            for hit in hits:
                check_versioned_hit(hit, query)
        except Exception as exc:
            problems.append(f"{type(exc).__name__}: {exc}")
    reader.close()
    return problems


def test_a_reader_process_sees_only_committed_generations(fast_dir: Path, helper: Helper) -> None:
    folder = fast_dir / "idx"
    with Engine(dim=8, path=folder) as engine:
        _add(engine, [("seed", "g0")])
    ops = _no_merge_ops()
    generations = [{"seed": "g0"}]
    for op in ops:
        generations.append(_apply(generations[-1], op))
    helper.send({"cmd": "ops", "folder": str(folder), "ops": ops})
    problems = _race_reader(folder, helper, generations)
    assert helper.reply() == {"done": len(ops), "errors": []}
    assert not problems, problems[:5]
    with Engine.load(folder) as final:
        assert final.ids() == list(generations[-1])


def test_a_reader_process_survives_concurrent_merges(fast_dir: Path, helper: Helper) -> None:
    folder = fast_dir / "idx"
    with Engine(dim=8, path=folder) as engine:
        _add(engine, [("seed", "g0")])
    ops: list[list[Any]] = []
    for i in range(50):  # one-document segments, half deleted: merges all the time
        ops.append(["add", [[f"w{i}", "g1"]]])
        if i % 2:
            ops.append(["delete", [f"w{i}"]])
    generations = [{"seed": "g0"}]
    for op in ops:
        generations.append(_apply(generations[-1], op))
    helper.send({"cmd": "ops", "folder": str(folder), "ops": ops})
    problems = _race_reader(folder, helper, generations)
    assert helper.reply(timeout=300)["errors"] == []
    assert not problems, problems[:5]


def test_two_writer_processes_are_serialised(fast_dir: Path, helper: Helper) -> None:
    """Both upsert the same ids at once: nothing is lost or mixed, and the last write wins."""
    folder = fast_dir / "idx"
    Engine(dim=8, path=folder).close()
    ids = [f"x{i}" for i in range(6)]
    ops = [["add", [[i, f"B{n}"] for i in ids[n % 3 :: 2]]] for n in range(20)]
    helper.send({"cmd": "ops", "folder": str(folder), "ops": ops})
    with Engine.load(folder) as mine:
        for n in range(20):
            _add(mine, [(i, f"A{n}") for i in ids[n % 2 :: 2]])
        assert helper.reply(timeout=300) == {"done": 20, "errors": []}
        last = {"A": {}, "B": {}}  # writer -> id -> its last version of that id
        for n in range(20):
            for i in ids[n % 2 :: 2]:
                last["A"][i] = f"A{n}"
            for i in ids[n % 3 :: 2]:
                last["B"][i] = f"B{n}"
        for engine in (mine, Engine.load(folder)):
            assert sorted(engine.ids()) == ids and len(engine) == len(ids)
            query = raw_vectors(5, 3)
            for hit in engine.search(query_embeddings=query, k=10):
                version = check_versioned_hit(hit, query)
                assert version in (last["A"].get(hit.id), last["B"].get(hit.id)), hit.text


def test_a_blocked_writer_waits_its_timeout_then_gets_a_clear_error(
    fast_dir: Path, helper: Helper
) -> None:
    folder = fast_dir / "idx"
    with Engine(dim=8, path=folder) as engine:
        _add(engine, [("a", "v1")])
    helper.send({"cmd": "hold", "folder": str(folder)})
    assert helper.reply() == {"locked": True}
    released = False
    try:
        engine = Engine.load(folder, lock_timeout=1.0)  # opening never waits for writers
        before = (engine.ids(), [d.text for d in engine.get(["a"])])
        for write in (lambda: _add(engine, [("b", "v1")]), lambda: engine.delete(["a"])):
            start = time.monotonic()
            with pytest.raises(IndexLockedError, match="another process is writing") as err:
                write()
            waited = time.monotonic() - start
            assert 0.9 <= waited < 5.0, waited
            assert str(folder) in str(err.value)
            assert (engine.ids(), [d.text for d in engine.get(["a"])]) == before
        start = time.monotonic()  # readers never take the write lock
        engine.search(query_embeddings=raw_vectors(1, 2), k=5)
        assert len(engine) == 1 and engine.ids() == ["a"]
        assert time.monotonic() - start < 0.9
        # A patient writer waits for the holder instead, and succeeds once it lets go.
        patient = Engine.load(folder, lock_timeout=60.0)
        done: list[float] = []
        thread = threading.Thread(
            target=lambda: (_add(patient, [("c", "v1")]), done.append(time.monotonic()))
        )
        thread.start()
        time.sleep(0.5)
        assert not done, "the writer did not wait for the lock"
        released_at = time.monotonic()
        helper.send("release")
        released = True
        assert helper.reply() == {"released": True}
        thread.join(timeout=60)
        assert done and done[0] >= released_at
    finally:
        if not released:  # keep the helper usable for the other tests
            helper.send("release")
            helper.reply()
    assert sorted(Engine.load(folder).ids()) == ["a", "c"]
