"""Fork server for the crash tests: ``python crash_worker.py`` reads one JSON request per line.

Request ``{"root", "seed", "kill_at", "delay"}``: fork a child that runs the scenario of
:mod:`crash_harness` in ``root``. With ``kill_at=k`` the child SIGKILLs itself at its ``k``-th
kill point: right after a durable step, halfway through a file write, or inside a SQLite
transaction before its COMMIT; with ``delay=s`` this process SIGKILLs it after ``s`` seconds;
with neither (a dry run) the child finishes and writes the labels of its kill points to
``root/events.json``. Reply ``{"killed", "status", "seconds", "error"}``.

Importing colmax (and torch) takes seconds; forking a process that has imported them but never
run a torch operation takes milliseconds and is safe (no thread pool exists yet to be cloned).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_EVENT_FUNCTIONS = ("fsync", "replace", "rename", "unlink", "rmdir")


class _HalfWrites:
    """A file whose every ``write`` stops halfway at a kill point, then finishes."""

    def __init__(self, handle: Any, points: KillPoints) -> None:
        self._handle = handle
        self._points = points

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        half = len(view) // 2
        self._handle.write(view[:half])
        self._handle.flush()  # the first half is in the file when the kill lands
        self._points.step(f"write:{_describe(self._handle.fileno())}")
        self._handle.write(view[half:])
        return len(view)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _HalfWrites:
        self._handle.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._handle.__exit__(*exc)


class KillPoints:
    """Counts kill points in this process and SIGKILLs it at the ``kill_at``-th one."""

    def __init__(self, kill_at: int | None, kill_on: tuple[str, int] | None = None) -> None:
        self.kill_at = kill_at
        self.kill_on = kill_on  # (label, n): die after the n-th step with that label
        self.labels: list[str] = []
        self.op_starts: list[int] = []  # steps taken before each operation started
        self.real_fsync = os.fsync

    def step(self, label: str) -> None:
        self.labels.append(label)
        if self.kill_at is not None and len(self.labels) >= self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.kill_on is not None and self.labels.count(self.kill_on[0]) >= self.kill_on[1]:
            os.kill(os.getpid(), signal.SIGKILL)

    def install(self) -> None:
        """Wrap the ``os`` functions colmax's storage uses, its file writes (a kill point
        halfway through each ``write``) and SQLite transactions (one before COMMIT, with the
        changes made but not committed, and one after)."""
        for name in _EVENT_FUNCTIONS:
            setattr(os, name, self._wrap(name, getattr(os, name)))
        real_fdopen = os.fdopen

        def fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            handle = real_fdopen(fd, mode, *args, **kwargs)
            return _HalfWrites(handle, self) if "w" in mode else handle

        os.fdopen = fdopen  # type: ignore[assignment]
        from colmax.store import documents

        original = documents.DocumentStore.transaction

        @contextlib.contextmanager
        def transaction(store: Any) -> Iterator[Any]:
            with original(store) as conn:
                yield conn
                self.step("uncommitted")
            self.step("commit")

        documents.DocumentStore.transaction = transaction  # type: ignore[method-assign]

    def _wrap(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            out = func(*args, **kwargs)
            target = args[-1] if args else ""
            self.step(f"{name}:{_describe(target)}")
            return out

        return wrapped


def _describe(target: Any) -> str:
    if isinstance(target, int):  # a file descriptor: name the file (or folder) behind it
        try:
            target = os.readlink(f"/proc/self/fd/{target}")
        except OSError:
            return f"fd{target}"
    return Path(target).name or str(target)


def _copy_folders(src: Path, dst: Path, names: tuple[str, ...]) -> None:
    """Copy index folders between operations (no write in flight, so the copy is consistent)."""
    for name in names:
        if (src / name).exists():
            shutil.copytree(
                src / name, dst / name, ignore=shutil.ignore_patterns("write.lock", "*-shm")
            )


def _break_add_atomicity() -> None:
    """Make ``Engine.add`` commit one document at a time: a deliberately broken writer, used to
    prove that the checks notice a half-applied operation."""
    from colmax import Engine

    original = Engine.add

    def add_one_by_one(
        self: Any,
        documents: Any = None,
        ids: Any = None,
        metadatas: Any = None,
        *,
        embeddings: Any = None,
    ) -> list[str]:
        for i in range(len(ids)):
            original(
                self,
                [documents[i]],
                ids=[ids[i]],
                metadatas=[metadatas[i]],
                embeddings=[embeddings[i]],
            )
        return list(ids)

    Engine.add = add_one_by_one  # type: ignore[method-assign]


def _child(req: dict[str, Any]) -> None:
    import torch
    from crash_harness import EVENTS, FOLDERS, JOURNAL, run_scenario

    torch.set_num_threads(1)
    root = Path(req["root"])
    kill_on = req.get("kill_on")
    points = KillPoints(req.get("kill_at"), tuple(kill_on) if kill_on else None)
    fd = os.open(root / JOURNAL, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def journal(line: str) -> None:
        if line.startswith("start"):
            points.op_starts.append(len(points.labels))
        os.write(fd, (line + "\n").encode())
        points.real_fsync(fd)  # the journal's own fsyncs are not kill points
        if line.startswith("done") and req.get("snapshots"):
            _copy_folders(root, root / f"snap-{line.split()[1]}", FOLDERS)

    start = int(req.get("start_op") or 0)
    if start:
        _copy_folders(Path(req["snapshot"]), root, FOLDERS)
    points.install()
    if req.get("non_atomic_add"):
        _break_add_atomicity()
    run_scenario(root, int(req["seed"]), journal, start)
    (root / EVENTS).write_text(json.dumps({"labels": points.labels, "op_starts": points.op_starts}))


def _serve_one(req: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    error_path = Path(req["root"]) / "worker-error.txt"
    pid = os.fork()
    if pid == 0:  # the child: never return into the server loop
        code = 0
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)  # stdout is the server's reply channel
            _child(req)
        except BaseException:
            error_path.write_text(traceback.format_exc())
            code = 3
        os._exit(code)
    delay = req.get("delay")
    if delay is not None:
        time.sleep(float(delay))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    return {
        "killed": killed,
        "status": os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1,
        "seconds": time.perf_counter() - start,
        "error": error_path.read_text() if error_path.exists() else None,
    }


def main() -> None:
    """Serve requests from stdin until it closes."""
    import crash_harness  # noqa: F401

    import colmax.engine  # noqa: F401  (import once, before forking)

    for line in sys.stdin:
        req = json.loads(line)
        reply = {"pong": True} if req.get("ping") else _serve_one(req)
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
