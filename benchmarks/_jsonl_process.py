"""A helper process spoken to in JSON lines, and the rotated order that interleaves A/B runs.

Several benchmarks run a peer library in its own virtual environment (or each system in its
own process) and drive it over pipes: one JSON request per line on its stdin, one JSON reply
per line on its stdout, the first line being its "ready" message.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: Environment for helpers whose libraries would otherwise warn or fork tokenizer threads.
QUIET_ENV = {"TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}


def rotated(items: Sequence[T], shift: int) -> list[T]:
    """``items`` started at position ``shift`` (mod its length): each repeat of an
    interleaved benchmark starts with a different method, so background load hits all alike."""
    k = shift % len(items)
    return [*items[k:], *items[:k]]


class JsonLineProcess:
    """``argv`` started with pipes; :attr:`ready` is its first line.

    Args:
        name: for error messages.
        argv: the command (its Python first).
        log: file for its stderr (``None``: inherit ours).
        quiet: run with :data:`QUIET_ENV` added to the environment.
        cwd: its working directory.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str | Path],
        *,
        log: Path | None = None,
        quiet: bool = True,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log = log.open("w") if log is not None else None
        self.proc = subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, **QUIET_ENV} if quiet else None,
            cwd=cwd,
        )
        self.ready = self.read()

    def read(self) -> dict[str, Any]:
        """The next reply; RuntimeError if the process has exited."""
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            where = self.log.name if self.log is not None else "its stderr above"
            raise RuntimeError(f"{self.name} exited; see {where}")
        return json.loads(line)

    def ask(self, **request: Any) -> dict[str, Any]:
        """Send one request, return its reply."""
        if self.proc.stdin is None:
            raise RuntimeError(f"{self.name} has no stdin")
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self, quit_request: dict[str, Any] | None = None, timeout: float = 120) -> None:
        """Send ``quit_request`` (if still running), close stdin, wait for the exit."""
        if self.proc.stdin is not None:
            if quit_request is not None and self.proc.poll() is None:
                self.proc.stdin.write(json.dumps(quit_request) + "\n")
            self.proc.stdin.close()
        self.proc.wait(timeout=timeout)
        if self.log is not None:
            self.log.close()
