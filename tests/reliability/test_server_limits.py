"""Cheap requests that would cost the server a lot are refused or cut short.

On colmax e83c1de a 728-byte ``/search`` (64 queries, k=1000) answered 9.8 MB and cost 150 MB;
nothing bounded a response, a request's time, or the connections held open; work went on for
a client that had gone. Now (the numbers are :mod:`colmax.limits` defaults, each a flag):

- ``len(queries) * k`` is at most ``max_hits`` (422 naming it);
- a response over ``max_response_bytes`` is refused (422); ``include_text: false`` leaves the
  texts out;
- a read runs at most ``request_timeout`` seconds (503), and its work stops when the client
  disconnects;
- ``colmax serve`` passes ``max_connections`` to uvicorn (503 beyond it).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from colmax import Engine, limits
from colmax.encoders import load_encoder
from colmax.server import ServerSettings, create_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from server_helpers import ServerProcess

from tiny_models import make_tiny_hf_model

N_DOCS = 5000
SLOW_FILTER = {"$or": [{"n": -1 - i} for i in range(limits.MAX_FILTER_CONDITIONS)]}


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny-model index of 5,000 one-vector documents with long texts (vectors given, so
    building it costs no encoding)."""
    root = tmp_path_factory.mktemp("server_limits")
    encoder = load_encoder(str(make_tiny_hf_model(root / "model")), document_length=64)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(N_DOCS, 1, encoder.dim)).astype(np.float32)
    with Engine(encoder, path=root / "index") as engine:
        engine.add(
            [f"document {i} " + "search engine " * 100 for i in range(N_DOCS)],
            ids=[f"d{i}" for i in range(N_DOCS)],
            metadatas=[{"n": i, "g": i % 7} for i in range(N_DOCS)],
            embeddings=list(vectors),
        )
    return root / "index"


@pytest.fixture(scope="module")
def engine(index: Path) -> Iterator[Engine]:
    with Engine.load(index) as eng:
        yield eng


def _client(engine: Engine, **settings: Any) -> TestClient:
    app = create_app(engine, ServerSettings(**settings))
    return TestClient(app, base_url="http://localhost", raise_server_exceptions=False)


def test_queries_times_k_is_bounded(engine: Engine) -> None:
    with _client(engine) as client:
        body = {"queries": ["search engine"] * 64, "k": 1000, "group_chunks": False}
        response = client.post("/search", json=body)
        assert response.status_code == 422, response.text[:300]
        assert str(limits.MAX_HITS) in response.text and "max-hits" in response.text
        body["k"] = limits.MAX_HITS // 64
        assert client.post("/search", json=body).status_code == 200


def test_responses_are_bounded_and_texts_optional(engine: Engine) -> None:
    with _client(engine, max_response_bytes=200_000) as client:
        body = {"query": "search engine", "k": 200, "group_chunks": False}
        big = client.post("/search", json=body)
        assert big.status_code == 422, big.text[:300]
        assert "200000" in big.text and "include_text" in big.text
        small = client.post("/search", json={**body, "include_text": False})
        assert small.status_code == 200, small.text[:300]
        hits = small.json()["results"][0]
        assert len(hits) == 200 and all(h["text"] is None for h in hits)
        rerank = client.post(
            "/rerank", json={"query": "x", "ids": ["d1", "d2"], "include_text": False}
        )
        assert rerank.status_code == 200 and rerank.json()["hits"][0]["text"] is None


def test_a_slow_read_is_stopped_at_the_request_timeout(engine: Engine) -> None:
    body = {"query": "search engine", "k": 3, "filter": SLOW_FILTER, "group_chunks": False}
    with _client(engine) as client:
        start = time.perf_counter()
        first = client.post("/search", json=body)
        assert first.status_code == 200, first.text[:500]
        alone = time.perf_counter() - start
    if alone < 0.6:
        pytest.skip(f"the slow filter took only {alone:.2f} s here")
    with _client(engine, request_timeout=0.1) as client:
        start = time.perf_counter()
        response = client.post("/search", json=body)
        took = time.perf_counter() - start
    assert response.status_code == 503, response.text[:300]
    assert "0.1 s" in response.text
    assert took < alone / 2, (took, alone)


def test_settings_reach_uvicorn(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    import uvicorn

    from colmax.cli import main

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    assert main(["serve", str(index), "--max-connections", "7"]) == 0
    assert seen["limit_concurrency"] == 7
    assert main(["serve", str(index)]) == 0
    assert seen["limit_concurrency"] == limits.MAX_CONNECTIONS


def test_work_stops_when_the_client_disconnects(index: Path) -> None:
    """One search thread: a slow search whose client gives up must free it for the next
    request at once, not after its filter has run to the end."""
    body = {"query": "search engine", "k": 3, "filter": SLOW_FILTER, "group_chunks": False}
    with ServerProcess(index, "--search-threads=1") as server:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            start = time.perf_counter()
            assert client.post("/search", json=body).status_code == 200
            alone = time.perf_counter() - start
            if alone < 1.0:
                pytest.skip(f"the slow search took only {alone:.2f} s here")

            def give_up() -> None:
                with pytest.raises(httpx.ReadTimeout):
                    httpx.post(f"{server.url}/search", json=body, timeout=0.3)

            quitter = threading.Thread(target=give_up)
            quitter.start()
            quitter.join()
            start = time.perf_counter()
            quick = client.post("/search", json={"query": "x", "k": 1, "group_chunks": False})
            waited = time.perf_counter() - start
        assert quick.status_code == 200
        assert waited < alone / 2, (waited, alone)
