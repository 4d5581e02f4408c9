"""A second process for the cross-process tests: ``python proc_worker.py`` serves JSON lines.

Commands (one per line on stdin; replies on stdout):

- ``{"cmd": "ops", "folder", "ops": [["add", [[id, version], ...]] | ["delete", [id, ...]]],
  "lock_timeout"}``: apply the operations with one engine, in order; replies
  ``{"done": n, "errors": [...]}`` (an operation that raises is recorded and skipped);
- ``{"cmd": "hold", "folder"}``: take the folder's write lock, reply ``{"locked": true}``, then
  wait for a line ``release`` on stdin, release, and reply ``{"released": true}``.

It imports colmax once, so each test pays the interpreter start only once per module.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _ops(req: dict[str, Any]) -> dict[str, Any]:
    from rel_helpers import versioned

    from colmax import Engine

    errors = []
    with Engine.load(req["folder"], lock_timeout=req.get("lock_timeout", 60.0)) as engine:
        for kind, arg in req["ops"]:
            try:
                if kind == "add":
                    made = [versioned(i, v) for i, v in arg]
                    engine.add(
                        [m[0] for m in made],
                        ids=[i for i, _ in arg],
                        metadatas=[m[1] for m in made],
                        embeddings=[m[2] for m in made],
                    )
                else:
                    engine.delete(arg)
            except Exception as exc:
                errors.append(f"{kind} {arg}: {type(exc).__name__}: {exc}")
    return {"done": len(req["ops"]), "errors": errors}


def _hold(req: dict[str, Any]) -> None:
    from colmax.store.lock import FolderLock

    with FolderLock(Path(req["folder"])).hold():
        _reply({"locked": True})
        sys.stdin.readline()
    _reply({"released": True})


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> None:
    """Serve commands until stdin closes."""
    import torch

    import colmax.engine  # noqa: F401

    torch.set_num_threads(1)
    _reply({"ready": True})
    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "hold":
            _hold(req)
        else:
            _reply(_ops(req))


if __name__ == "__main__":
    main()
