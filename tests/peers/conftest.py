"""Fixtures for the parity tests against PyLate, colbert-ai and RAGatouille.

The peers live in their own virtual environment (``scripts/make_peer_env.sh`` builds
``.venv-peers``: they need transformers < 5, colmax runs on 5). The tests run colmax in this
process and the peers in a subprocess with the peers' Python, exchanging JSON and ``.npy``
files.

Where the peers' environment is missing the tests skip, unless ``COLMAX_REQUIRE_PEERS=1``
(set by ``.ci/run``): then a missing or broken peers environment is a failure. Point
``COLMAX_PEERS_PYTHON`` at another interpreter to use it instead of ``.venv-peers/bin/python``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "peer_worker.py"
_PROBE = (
    "import sys; sys.path.insert(0, sys.argv[1]); import peer_worker; "
    "peer_worker.alias_langchain(); import pylate, colbert, ragatouille"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "peers: compares colmax with PyLate / RAGatouille")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = str(Path(__file__).resolve().parent)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.peers)


def _required() -> bool:
    return os.environ.get("COLMAX_REQUIRE_PEERS", "") not in ("", "0")


def _unavailable(reason: str) -> None:
    if _required():
        pytest.fail(f"COLMAX_REQUIRE_PEERS=1 but {reason}", pytrace=False)
    pytest.skip(f"{reason} (build it with: bash scripts/make_peer_env.sh)")


def run_peer(python: Path, args: Sequence[str | Path], *, timeout: float = 3600) -> None:
    """Run a command with the peers' Python from a scratch directory; fail with its stderr."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    env.pop("PYTHONPATH", None)  # never let colmax's environment leak into the peers'
    proc = subprocess.run(
        [str(python), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        tail = (proc.stdout[-3000:] + "\n" + proc.stderr[-6000:]).strip()
        pytest.fail(f"peer command failed ({proc.returncode}): {args}\n{tail}", pytrace=False)


@pytest.fixture(scope="session")
def peers_python() -> Path:
    """The peers' interpreter, checked to import PyLate, colbert-ai and RAGatouille."""
    python = Path(os.environ.get("COLMAX_PEERS_PYTHON", ROOT / ".venv-peers" / "bin" / "python"))
    if not python.is_file():
        _unavailable(f"the peers' environment is missing ({python})")
    proc = subprocess.run(
        [str(python), "-c", _PROBE, str(WORKER.parent)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        _unavailable(f"the peers' environment is broken: {proc.stderr.strip()[-2000:]}")
    return python


@pytest.fixture(scope="session")
def peer(peers_python: Path) -> Callable[..., None]:
    """``peer("rerank", checkpoint, request, out)``: run ``peer_worker.py`` with the peers' Python."""

    def run(*args: str | Path, timeout: float = 3600) -> None:
        run_peer(peers_python, [WORKER, *args], timeout=timeout)

    return run


@pytest.fixture(scope="session")
def parity_dir(peers_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Checkpoints made by colbert-ai and PyLate from MiniLM, with PyLate's embeddings of the
    parity texts (``scripts/make_checkpoints.py``), built once per session."""
    out = tmp_path_factory.mktemp("parity")
    run_peer(peers_python, [ROOT / "scripts" / "make_checkpoints.py", "--out", out])
    return out


@pytest.fixture(scope="session")
def stanford_checkpoint(parity_dir: Path) -> Path:
    """The colbert-ai format MiniLM checkpoint (what RAGatouille loads)."""
    return parity_dir / "stanford"
