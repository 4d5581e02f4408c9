"""Start a real ``colmax serve`` process on a free loopback port, over a tiny-model index.

Used by the ``test_server_*`` modules. The server is a separate process (``python -m
colmax.cli serve``) spoken to over TCP with httpx, exactly as a chatbot backend would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for tiny_models

from colmax import Engine
from tiny_models import make_tiny_colbert_model

__all__ = ["DOCS", "ServerProcess", "build_index", "free_port"]

DOCS = {
    "cat": ("the cat sat on the mat", {"topic": "animals", "year": 2020}),
    "dog": ("the dog ran to the house", {"topic": "animals", "year": 2022}),
    "paris": ("paris is the capital of france", {"topic": "travel", "year": 2024}),
    "car": ("a big red car", {"topic": "cars", "year": 2019}),
}


def build_index(folder: Path) -> Path:
    """A tiny random ColBERT model in ``folder/model`` and an index of :data:`DOCS` in
    ``folder/index``; returns the index folder."""
    model = make_tiny_colbert_model(folder / "model")
    with Engine.from_pretrained(model, device="cpu", path=folder / "index") as engine:
        engine.add(
            [t for t, _ in DOCS.values()], ids=list(DOCS), metadatas=[m for _, m in DOCS.values()]
        )
    return folder / "index"


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``colmax serve INDEX ARGS...`` in a subprocess; ``url`` once :meth:`start` returns."""

    def __init__(
        self, index: Path, *args: str, api_key: str | None = None, log: Path | None = None
    ) -> None:
        self.index = index
        self.args = list(args)
        self.api_key = api_key
        self.log = log or index.parent / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header for this server's key (empty without one)."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def start(self, timeout: float = 180.0) -> ServerProcess:
        """Start and wait until it answers HTTP (a few tries if the port was taken meanwhile)."""
        for _ in range(3):
            port = free_port()
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
            env.pop("COLMAX_API_KEY", None)
            if self.api_key is not None:
                env["COLMAX_API_KEY"] = self.api_key  # the documented way to pass the key
            command = [sys.executable, "-m", "colmax.cli", "serve", str(self.index)]
            command += ["--port", str(port), "--device", "cpu", "--no-access-log", *self.args]
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
            self.url = f"http://127.0.0.1:{port}"
            if self._wait(timeout):
                return self
        raise RuntimeError(f"the server did not start; log:\n{self.log.read_text()[-3000:]}")

    def _wait(self, timeout: float) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                httpx.get(f"{self.url}/health", timeout=2)
                return True  # any answer (200, or 401 with a key) means it is serving
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        return False

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (graceful) or SIGKILL (a crash), then wait for the process to end."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
