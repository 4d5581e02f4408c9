"""Kill a writer with SIGKILL mid-operation and check what survives.

A *scenario* is a fixed list of operations on two index folders under a trial's root: ``main``
(created, then added to, upserted, deleted from) and ``copy`` (written by ``Engine.save``, first
as a new folder, later over an existing index). Every operation is deterministic given the
seed, so :func:`expected_states` knows the exact contents after each one.

The writer runs in a child of :mod:`crash_worker` (forked from a process that imported colmax
once, so a trial costs milliseconds, not a 4-second interpreter start). Before an operation it
appends ``start i`` to ``journal.log`` and fsyncs; after it returns, ``done i``. The child is
killed either

- at a *kill point*, counted by hooks installed in the child only: right after a durable step
  (an ``os.fsync``, ``os.replace``, ``os.rename``, ``os.unlink``/``rmdir``, or a SQLite
  ``COMMIT``), halfway through a file write (``write:``: the file holds half the bytes), or
  inside a SQLite transaction whose changes are made but not committed (``uncommitted``); or
- after a random delay, by the parent.

Afterwards :func:`check_trial` requires: every folder opens with ``Engine.load``, and the
contents equal the state after the last finished operation or, when one was in flight, the state
before or after it, never a mix; no orphan segment, temp or staging files remain after opening
(a save that was cut short is retried, as a user would, and must leave none either); and the
index accepts a new write (the dead writer's lock is gone).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rel_helpers import DIM, Doc, Model, describe_mismatch, raw_vectors

from colmax import Engine

FOLDERS = ("main", "copy")
JOURNAL = "journal.log"
EVENTS = "events.json"
WORKER = Path(__file__).resolve().parent / "crash_worker.py"


# ---------------------------------------------------------------------------- the scenario
@dataclass(frozen=True)
class Op:
    """One operation: ``create``/``add``/``delete`` on ``main``, or ``save`` main -> ``copy``."""

    kind: str
    ids: tuple[str, ...] = ()
    docs: tuple[Doc, ...] = ()


_FLAVOURS = ["ünï", "日本", "tab\there", 'quote"', "emoji 🙂"]


def scenario(seed: int) -> list[Op]:
    """The operations of one trial. The shape is fixed (it reaches both merge policies: a
    mostly-dead segment rewritten, and more than 8 segments folded); ids, texts, metadata and
    vectors vary with ``seed``."""
    rng = random.Random(seed)
    version: dict[str, int] = {}

    def docs(*names: str) -> Op:
        made = []
        for name in names:
            version[name] = version.get(name, 0) + 1
            v = version[name]
            text = f"{name} v{v} · «{rng.choice(_FLAVOURS)}»"
            meta = {"v": v, "seed": seed, "tags": [name, rng.randint(0, 9)], "n": {"x": v / 3}}
            made.append(Doc(text, meta, rng.randrange(10**6), rng.randint(1, 5)))
        return Op("add", names, tuple(made))

    d = [f"d{i}" for i in range(18)]
    return [
        Op("create"),
        docs(*d[0:6]),
        docs(*d[6:9]),
        docs(d[1], d[2], d[9]),  # upsert two, add one
        Op("delete", (d[3], d[4], d[5])),  # first segment now mostly dead: rewritten
        Op("save"),  # copy: a new folder
        *(docs(name) for name in d[10:16]),  # many small segments: the tiered merge
        Op("delete", (d[6], d[7], d[10])),
        docs(d[0], d[8], d[11]),
        Op("save"),  # copy: over an existing index
        Op("delete", (d[12], d[13])),
        docs(d[16], d[17]),
    ]


State = dict[str, "Model | None"]  # folder -> contents, None: the folder does not exist


def expected_states(ops: list[Op]) -> list[State]:
    """``states[0]``: before anything; ``states[i + 1]``: after ``ops[i]``."""
    state: State = dict.fromkeys(FOLDERS)
    states = [dict(state)]
    for op in ops:
        state = dict(state)
        main = state["main"]
        if op.kind == "create":
            state["main"] = Model()
        elif op.kind == "save":
            assert main is not None
            state["copy"] = main.copy()
        else:
            assert main is not None
            main = main.copy()
            if op.kind == "add":
                main.upsert(list(op.ids), list(op.docs))
            else:
                main.delete(list(op.ids))
            state["main"] = main
        states.append(state)
    return states


def run_scenario(root: Path, seed: int, journal: Any, start: int = 0) -> None:
    """Execute the scenario on ``root/main`` and ``root/copy``, journaling each operation.

    ``journal(line)`` must append and fsync (the worker passes one that does). With
    ``start > 0`` the folders must already hold the state before operation ``start`` (a
    snapshot of an earlier run); the engine opens them and carries on from there.
    """
    engine = Engine.load(root / "main") if start > 0 else None
    for i, op in enumerate(scenario(seed)[start:], start):
        journal(f"start {i}")
        if op.kind == "create":
            engine = Engine(dim=DIM, path=root / "main")
        elif engine is None:
            raise RuntimeError("scenario must start with create")
        elif op.kind == "add":
            engine.add(
                [d.text for d in op.docs],
                ids=list(op.ids),
                metadatas=[dict(d.metadata) for d in op.docs],
                embeddings=[d.vectors() for d in op.docs],
            )
        elif op.kind == "delete":
            engine.delete(list(op.ids))
        else:
            engine.save(root / "copy")
        journal(f"done {i}")


# ---------------------------------------------------------------------------- checking
def journal_position(root: Path) -> tuple[int, bool]:
    """``(i, finished)`` for the last journal line; ``(-1, True)`` when nothing started."""
    path = root / JOURNAL
    lines = path.read_text().split() if path.exists() else []
    words = [w for w in lines if w in ("start", "done")]
    numbers = [int(w) for w in lines if w.isdigit()]
    if not words:
        return -1, True
    return numbers[-1], words[-1] == "done"


@dataclass
class TrialResult:
    """What one trial showed."""

    how: str  # "kill@17 (replace:seg-...)", "delay 0.31s", ...
    killed: bool  # the child died of SIGKILL (False: it finished first)
    op: int  # the last operation started
    finished: bool  # ... and whether it had returned
    matched: str  # "before", "after", or "" on failure
    problems: list[str] = field(default_factory=list)
    leftover_staging: int = 0


def check_trial(root: Path, seed: int, how: str, killed: bool) -> TrialResult:
    """Open every folder of a killed trial and compare with the candidate states."""
    ops = scenario(seed)
    states = expected_states(ops)
    op, finished = journal_position(root)
    # states[op + 1] is "after op"; states[op] is "before op".
    candidates = {"after": states[op + 1]} if finished else {}
    if not finished:
        candidates = {"before": states[op], "after": states[op + 1]}
    result = TrialResult(how, killed, op, finished, "")
    observed: dict[str, Engine | None] = {}
    try:
        for name in FOLDERS:
            folder = root / name
            observed[name] = Engine.load(folder) if folder.exists() else None
    except Exception as exc:  # any failure to open is the bug this harness looks for
        result.problems.append(f"Engine.load failed: {type(exc).__name__}: {exc}")
        return result
    misses = []
    for label, state in candidates.items():
        why = _state_mismatch(observed, state)
        if why is None:
            result.matched = label
            break
        misses.append(f"{label}: {why}")
    if not result.matched:
        result.problems.append(f"op {op} ({ops[op].kind}, finished={finished}): {misses}")
    for name, engine in observed.items():
        if engine is not None:
            result.problems.extend(_folder_problems(root / name, engine))
    main = observed["main"]
    if main is None:
        # The create was cut short: creating it again must work and clear the dead writer's
        # staging folder.
        try:
            Engine(dim=DIM, path=root / "main").close()
        except Exception as exc:
            result.problems.append(f"create after recovery failed: {type(exc).__name__}: {exc}")
    elif observed["copy"] is None:
        # A save to a new folder was cut short (or never started): retrying it must work and
        # clear what the dead writer left.
        try:
            main.save(root / "copy")
        except Exception as exc:
            result.problems.append(f"save after recovery failed: {type(exc).__name__}: {exc}")
    result.leftover_staging = len(list(root.glob(".*staging*")))
    if result.leftover_staging:
        names = sorted(p.name for p in root.glob(".*staging*"))
        result.problems.append(f"staging folders left after reopening: {names}")
    for engine in observed.values():
        if engine is not None:
            engine.close()
    return result


def _state_mismatch(observed: dict[str, Engine | None], state: State) -> str | None:
    for name in FOLDERS:
        engine, model = observed[name], state[name]
        if (engine is None) != (model is None):
            return f"{name}: exists={engine is not None}, expected exists={model is not None}"
        if engine is not None and model is not None:
            why = describe_mismatch(engine, model)
            if why is not None:
                return f"{name}: {why}"
    return None


def _folder_problems(folder: Path, engine: Engine) -> list[str]:
    problems = []
    files = sorted(p.name for p in (folder / "segments").iterdir())
    if len(files) != 3 * engine.info().details["segments"]:
        problems.append(f"{folder.name}: orphan files after open: {files}")
    temps = [str(p.relative_to(folder)) for p in folder.rglob(".*.tmp")]
    if temps:
        problems.append(f"{folder.name}: temp files left after open: {temps}")
    try:  # the dead writer's lock must be gone, and the folder writable
        engine.add(embeddings=[raw_vectors(7, 2)], ids=["__probe__"])
        engine.delete(["__probe__"])
    except Exception as exc:
        problems.append(f"{folder.name}: write after recovery failed: {type(exc).__name__}: {exc}")
    return problems


# ---------------------------------------------------------------------------- the worker
@dataclass
class DryRun:
    """The durable steps of one uninterrupted run: kill point ``k`` is right after
    ``labels[k - 1]``; operation ``i`` spans kill points ``op_starts[i] + 1 ..
    op_starts[i + 1]``."""

    labels: list[str]
    op_starts: list[int]
    seconds: float
    root: Path

    def snapshot(self, op: int) -> Path:
        """The folders as they were before operation ``op`` (``op >= 1``)."""
        return self.root / f"snap-{op - 1}"

    def points_of(self, op: int) -> range:
        end = self.op_starts[op + 1] if op + 1 < len(self.op_starts) else len(self.labels)
        return range(self.op_starts[op] + 1, end + 1)


class CrashServer:
    """A :mod:`crash_worker` process that forks one writer child per trial."""

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(WORKER.parent), *sys.path]))
        self._proc = subprocess.Popen(
            [sys.executable, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._request({"ping": True})

    def _request(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(req) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"crash worker died (exit {self._proc.wait()})")
        return json.loads(line)

    def run(self, root: Path, seed: int, **options: Any) -> dict[str, Any]:
        """One trial in a fresh ``root``; ``options``: ``kill_at``, ``delay``, ``start_op`` +
        ``snapshot`` (a folder holding the state before ``start_op``), ``snapshots`` (save
        the state after each operation under ``root/snap-<i>``). Returns the worker's reply."""
        root.mkdir(parents=True)
        return self._request({"root": str(root), "seed": seed, **options})

    def dry_run(self, root: Path, seed: int) -> DryRun:
        """Run the scenario to the end, recording its kill points and a snapshot per step."""
        reply = self.run(root, seed, snapshots=True)
        if reply["killed"] or reply["status"] != 0:
            raise RuntimeError(f"dry run failed: {reply}")
        events = json.loads((root / EVENTS).read_text())
        return DryRun(events["labels"], events["op_starts"], float(reply["seconds"]), root)

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> CrashServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def trial(
    server: CrashServer,
    root: Path,
    seed: int,
    *,
    kill_at: int | None = None,
    delay: float | None = None,
    dry: DryRun | None = None,
) -> TrialResult:
    """Run one killed trial and check it.

    ``kill_at`` counts durable steps from the start of the scenario (as in ``dry.labels``).
    When ``dry`` is given the child starts from the snapshot taken before the operation that
    holds that step, so a late kill point does not replay the whole scenario first.
    """
    options: dict[str, Any] = {"kill_at": kill_at, "delay": delay}
    if kill_at is not None:
        how = f"kill after step {kill_at}"
        if dry is not None:
            op = max(i for i, s in enumerate(dry.op_starts) if s < kill_at)
            how += f" ({dry.labels[kill_at - 1]}, op {op})"
            if op > 0:
                options.update(
                    kill_at=kill_at - dry.op_starts[op],
                    start_op=op,
                    snapshot=str(dry.snapshot(op)),
                )
    else:
        how = f"kill after {delay:.3f}s"
    reply = server.run(root, seed, **options)
    result = check_trial(root, seed, how, bool(reply["killed"]))
    if reply.get("error"):
        result.problems.append(f"worker error: {reply['error']}")
    return result
