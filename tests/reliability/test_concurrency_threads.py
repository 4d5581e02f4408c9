"""Many threads searching while another thread upserts and deletes, in memory and on a folder.

Extends ``tests/unit/test_concurrency.py`` (which checks ids only, in memory) with exact checks
on every hit: its text, metadata and score belong to one version of the document; that version
was live at some moment during the search (added before the search ended, not removed before it
started); every document live for the whole search is returned (``k`` covers the corpus); no id
twice; ranks and score order hold. Filtered searches, ``get`` and ``rerank(ids=...)`` run
alongside on documents no one touches and must always see them exactly.
"""

from __future__ import annotations

import gc
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from rel_helpers import check_versioned_hit, raw_vectors, versioned

from colmax import Engine

STABLE = [f"s{i}" for i in range(8)]
POOL = [f"p{i}" for i in range(12)]


@dataclass
class History:
    """When each version was added and removed, in writer operation numbers."""

    started: int = -1  # the last operation the writer began
    finished: int = -1  # the last operation that returned
    added: dict[tuple[str, str], int] = field(default_factory=dict)
    removed: dict[tuple[str, str], int] = field(default_factory=dict)
    current: dict[str, str] = field(default_factory=dict)  # id -> live version

    def live_throughout(self, first: int, last: int) -> set[tuple[str, str]]:
        """Versions added by an operation that finished by ``first`` and not removed by one
        that started by ``last``."""
        # Copies (one C-level step each): the writer thread adds entries meanwhile, and a
        # Python-level loop over the live dicts can fail with "changed size during iteration".
        added, removed = dict(self.added), dict(self.removed)
        return {
            key
            for key, op in added.items()
            if op <= first and not (key in removed and removed[key] <= last)
        }


def _add(engine: Engine, pairs: list[tuple[str, str]]) -> None:
    made = [versioned(i, v) for i, v in pairs]
    engine.add(
        [m[0] for m in made],
        ids=[i for i, _ in pairs],
        metadatas=[
            {**m[1], "kind": "stable" if i in STABLE else "pool"} for (i, _), m in zip(pairs, made)
        ],
        embeddings=[m[2] for m in made],
    )


def _writer(engine: Engine, history: History, n_ops: int, errors: list[str]) -> None:
    rng = random.Random(7)
    try:
        for op in range(n_ops):
            live = sorted(history.current)
            deletable = [i for i in live if i in POOL]
            if deletable and rng.random() < 0.35:
                ids = rng.sample(deletable, rng.randint(1, min(3, len(deletable))))
                for id_ in ids:
                    history.removed[(id_, history.current.pop(id_))] = op
                history.started = op
                engine.delete(ids)
            else:
                ids = rng.sample(POOL, rng.randint(1, 4))
                pairs = [(id_, f"v{op}") for id_ in ids]
                for id_, version in pairs:
                    if id_ in history.current:  # an upsert removes the previous version
                        history.removed[(id_, history.current[id_])] = op
                    history.current[id_] = version
                    history.added[(id_, version)] = op
                history.started = op
                _add(engine, pairs)
            history.finished = op
    except Exception as exc:
        errors.append(f"writer: {type(exc).__name__}: {exc}")


def _reader(
    engine: Engine, history: History, seed: int, stop: threading.Event, out: list[str]
) -> None:
    rng = np.random.default_rng(seed)
    n = 0
    try:
        while not stop.is_set():
            n += 1
            query = raw_vectors(seed * 1000 + n, 2)
            first = history.finished
            if n % 3 == 0:  # a filter selecting only the untouched documents
                hits = engine.search(query_embeddings=query, k=50, filter={"kind": "stable"})
                assert sorted(h.id for h in hits) == STABLE, [h.id for h in hits]
            else:
                hits = engine.search(query_embeddings=query, k=50)
            last = history.started
            ids = [h.id for h in hits]
            assert len(set(ids)) == len(ids), f"an id appears twice: {ids}"
            assert [h.rank for h in hits] == list(range(len(hits)))
            assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
            seen = set()
            for hit in hits:
                version = check_versioned_hit(hit, query)
                key = (hit.id, version)
                if hit.id in POOL:
                    assert history.added[key] <= last, f"{key} returned before it was written"
                    removed = history.removed.get(key)
                    assert removed is None or removed > first, (
                        f"{key} was removed before the search"
                    )
                seen.add(key)
            if n % 3:
                missing = {k for k in history.live_throughout(first, last) if k[0] in POOL} - seen
                assert not missing, f"live documents missing from k=all results: {missing}"
            if n % 5 == 0:
                docs = engine.get(STABLE)
                assert [d.text for d in docs] == [versioned(i, "v0")[0] for i in STABLE]
                ranked = engine.rerank(None, ids=STABLE, query_embedding=query)
                assert sorted(h.id for h in ranked) == STABLE
                for hit in ranked:
                    check_versioned_hit(hit, query)
            rng.random()
    except Exception as exc:
        out.append(f"reader {seed}: {type(exc).__name__}: {exc}")


def _run(engine: Engine, n_ops: int, n_readers: int = 3) -> tuple[History, list[str]]:
    _add(engine, [(i, "v0") for i in STABLE])
    history = History()
    errors: list[str] = []
    stop = threading.Event()
    readers = [
        threading.Thread(target=_reader, args=(engine, history, s + 1, stop, errors))
        for s in range(n_readers)
    ]
    writer = threading.Thread(target=_writer, args=(engine, history, n_ops, errors))
    for t in [*readers, writer]:
        t.start()
    writer.join(timeout=300)
    stop.set()
    for t in readers:
        t.join(timeout=60)
    return history, errors


def _final_state_matches(engine: Engine, history: History) -> None:
    expected = {*STABLE, *history.current}
    assert set(engine.ids()) == expected and len(engine) == len(expected)
    for doc in engine.get(sorted(history.current)):
        assert doc.text == versioned(doc.id, history.current[doc.id])[0]


def test_threads_search_while_one_writes_in_memory() -> None:
    engine = Engine(dim=8)
    history, errors = _run(engine, n_ops=150)
    assert not errors, "\n".join(errors[:10])
    _final_state_matches(engine, history)


def test_threads_search_while_one_writes_on_a_folder(fast_dir: Path) -> None:
    engine = Engine(dim=8, path=fast_dir / "idx")
    history, errors = _run(engine, n_ops=150)
    assert not errors, "\n".join(errors[:10])
    _final_state_matches(engine, history)
    _final_state_matches(Engine.load(fast_dir / "idx"), history)


class _Finalized:
    """A reference cycle whose finalizer lets other threads run, as closing a file or a database
    connection does: the garbage collector runs it at any allocation, mid-parse included."""

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        time.sleep(0)


def test_index_files_load_from_many_threads_at_once(tmp_path: Path) -> None:
    """numpy parses .npy headers with ast, whose CPython 3.11 constructor failed with
    "SystemError: AST constructor recursion depth mismatch" when threads switched mid-parse
    (seen once in test_threads_search_while_one_writes_on_a_folder)."""
    from colmax.store.fsutil import load_npy

    paths = []
    for i in range(8):
        paths.append(tmp_path / f"part{i}.npy")
        np.save(paths[-1], np.arange(10 + i, dtype=np.float16).reshape(-1, 1))
    errors: list[str] = []

    def load() -> None:
        try:
            for _ in range(600):
                for path in paths:
                    load_npy(path, "segment", mmap=True)
                    _Finalized()
        except Exception as exc:  # every failure is the finding
            errors.append(repr(exc))

    thresholds = gc.get_threshold()
    gc.set_threshold(50, 5, 5)  # collect often, as a busy process does
    try:
        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        gc.set_threshold(*thresholds)
    assert not errors, errors[:3]


@pytest.mark.parametrize("where", ["memory", "folder"])
def test_reads_by_id_while_the_same_ids_are_rewritten(where: str, fast_dir: Path) -> None:
    """rerank(ids=...), explain and get_with_vectors read the rows and the vectors of ids that
    a writer thread keeps replacing. A commit used to write the new rows, release the state
    lock, then swap in the new vectors: a read between the two found rows whose keys the
    index did not hold yet and failed with a plain KeyError (an HTTP 500 in the server)."""
    engine = Engine(dim=8, path=fast_dir / "idx" if where == "folder" else None)
    rng = np.random.default_rng(0)
    engine.add(embeddings=[rng.standard_normal((3, 8)) for _ in range(2)], ids=["x", "y"])
    stop = threading.Event()
    writes = 0
    failures: list[str] = []

    def writer() -> None:
        nonlocal writes
        r = np.random.default_rng(1)
        while not stop.is_set():
            engine.add(embeddings=[r.standard_normal((1 + writes % 4, 8))], ids=["x"])
            writes += 1

    thread = threading.Thread(target=writer)
    thread.start()
    query = np.ones((2, 8), dtype=np.float32)
    reads = 0
    deadline = time.monotonic() + 60
    try:  # enough reads and writes to interleave, however fast this host runs either side
        while (reads < 300 or writes < 100) and time.monotonic() < deadline:
            try:
                hits = engine.rerank(None, ids=["x", "y"], query_embedding=query)
                assert sorted(h.id for h in hits) == ["x", "y"]
                if reads % 10 == 0:
                    assert engine.explain(None, "x", query_embedding=query).score is not None
            except Exception as exc:  # every failure is the finding
                failures.append(f"{type(exc).__name__}: {exc}")
            reads += 1
    finally:
        stop.set()
        thread.join()
    assert writes >= 100 and reads >= 300, (writes, reads)
    assert not failures, f"{len(failures)} of {reads} reads failed, e.g. {failures[:3]}"
