"""What the HTTP server tells a client when the index, not the request, is at fault, and whom
it answers at all.

- Damage, a locked folder and a full disk are server-side conditions: 500 / 503 / 507, never
  a 4xx that tells the client to change its request (e83c1de answered index damage with 422).
- No response body names a path on the server (e83c1de put the index folder's absolute path in
  422 and 503 bodies); the details go to the server's log.
- Without an API key the server answers only requests addressed to a loopback name, so a web
  page that rebinds its own DNS name to 127.0.0.1 cannot reach it (e83c1de checked no Host).

The app runs in-process (Starlette's test client), over a flat index and an embedded Qdrant
(qdrant-edge) index.
"""

from __future__ import annotations

import json
import logging
import resource
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rel_helpers import DIM, raw_vectors

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from colmax import Engine
from colmax.server import ServerSettings, create_app
from colmax.store.lock import FolderLock

KEY = "hygiene-key-1"
BACKENDS = ["flat", "qdrant"]


def _engine(kind: str, folder: Path, **kwargs: Any) -> Engine:
    if kind == "qdrant":
        pytest.importorskip("qdrant_edge", reason='pip install "colmax[qdrant]"')
    engine = Engine(dim=DIM, index=kind, path=folder, **kwargs)
    engine.add(
        ["alpha text", "beta text"],
        ids=["a", "b"],
        metadatas=[{"n": 1}, {"n": 2}],
        embeddings=[raw_vectors(1, 3), raw_vectors(2, 2)],
    )
    return engine


def _client(engine: Engine, *, host: str = "127.0.0.1", **settings: Any) -> TestClient:
    app = create_app(engine, ServerSettings(**settings))
    return TestClient(app, base_url=f"http://{host}", raise_server_exceptions=False)


def _no_paths(response: Any, *folders: Path) -> None:
    body = response.text
    for folder in folders:
        for form in {str(folder), str(folder.resolve())}:
            assert form not in body, f"{response.status_code} body names {form}: {body[:300]}"


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, fast_dir: Path) -> Iterator[Engine]:
    eng = _engine(request.param, fast_dir / "idx", lock_timeout=0.2)
    yield eng
    eng.close()


def _vector_query(k: int = 2) -> dict[str, Any]:
    return {"query_embeddings": raw_vectors(5, 2).tolist(), "k": k}


# ---------------------------------------------------------------------------- server-side faults
def test_a_damaged_document_row_is_a_500_without_paths(fast_dir: Path) -> None:
    engine = _engine("flat", fast_dir / "idx")
    with sqlite3.connect(fast_dir / "idx" / "documents.sqlite") as conn:
        conn.execute("UPDATE documents SET metadata = 'not json' WHERE id = 'a'")
    with _client(engine, api_key=KEY) as client:
        response = client.get("/documents/a", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 500, response.text
    _no_paths(response, fast_dir)
    engine.close()


def test_a_locked_folder_is_a_503_without_paths(engine: Engine, fast_dir: Path) -> None:
    if engine.backend.kind == "qdrant":
        pytest.skip("an edge shard has no inter-process writer lock to hold")
    lock = FolderLock(fast_dir / "idx", timeout=5)
    with lock.hold(), _client(engine, api_key=KEY) as client:
        response = client.request(
            "DELETE", "/documents", json={"ids": ["a"]}, headers={"Authorization": f"Bearer {KEY}"}
        )
    assert response.status_code == 503, response.text
    assert engine.ids() == ["a", "b"]
    _no_paths(response, fast_dir)


def test_a_full_disk_is_a_507_without_paths(fast_dir: Path, caplog: Any) -> None:
    from colmax.encoders import load_encoder
    from tiny_models import make_tiny_hf_model

    encoder = load_encoder(str(make_tiny_hf_model(fast_dir / "model")), document_length=64)
    engine = Engine(encoder, path=fast_dir / "idx")
    engine.add(["alpha"], ids=["a"])
    text = "search engine " * 20
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        with _client(engine, api_key=KEY) as client, caplog.at_level(logging.ERROR):
            resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
            response = client.post(
                "/documents",
                json={"documents": [{"id": f"d{i}", "text": text} for i in range(50)]},
                headers={"Authorization": f"Bearer {KEY}"},
            )
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert response.status_code == 507, response.text
    _no_paths(response, fast_dir)
    assert str(fast_dir) in caplog.text, "the details belong in the server log"
    assert engine.ids() == ["a"]
    engine.close()


def test_client_errors_name_no_paths(engine: Engine, fast_dir: Path) -> None:
    with _client(engine, api_key=KEY) as client:
        headers = {"Authorization": f"Bearer {KEY}"}
        for response in (
            client.post("/search", json={"query": "x"}, headers=headers),  # no encoder
            client.get("/documents/nope", headers=headers),
            client.post("/search", json={"query": "x", "filter": {"$bad": 1}}, headers=headers),
        ):
            assert 400 <= response.status_code < 500, response.text
            _no_paths(response, fast_dir)


# ---------------------------------------------------------------------------- Host check
@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "localhost:8000"])
def test_without_a_key_loopback_names_are_answered(engine: Engine, host: str) -> None:
    with _client(engine, host=host) as client:
        assert client.get("/health").status_code == 200


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8000", "10.1.2.3"])
def test_without_a_key_other_host_names_are_refused(engine: Engine, host: str) -> None:
    """DNS rebinding: a page on attacker.example resolves its name to 127.0.0.1 and sends
    requests there; the browser still says ``Host: attacker.example``."""
    with _client(engine, host=host) as client:
        response = client.get("/health")
        assert response.status_code == 400, response.text
        assert client.post("/search", json={"query": "x"}).status_code == 400


def test_allowed_hosts_and_a_key_open_the_door(engine: Engine) -> None:
    with _client(engine, host="search.internal", allowed_hosts=("search.internal",)) as client:
        assert client.get("/health").status_code == 200
    with _client(engine, host="search.example", api_key=KEY) as client:
        response = client.get("/health", headers={"Authorization": f"Bearer {KEY}"})
        assert response.status_code == 200


# ---------------------------------------------------------------------------- both backends
def test_reads_and_writes_work_over_both_backends(
    engine: Engine, request: pytest.FixtureRequest
) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    with _client(engine, api_key=KEY) as client:
        info = client.get("/info", headers=headers)
        assert info.status_code == 200, info.text
        assert info.json()["documents"] == 2
        got = client.get("/documents/a", headers=headers)
        assert got.status_code == 200 and got.json()["metadata"] == {"n": 1}
        deleted = client.request("DELETE", "/documents", json={"ids": ["b"]}, headers=headers)
        assert deleted.status_code == 200, deleted.text
        assert json.loads(deleted.text)["documents"] == 1
        assert client.get("/documents/b", headers=headers).status_code == 404
