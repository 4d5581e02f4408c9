"""Explanations, token pooling and hybrid search through a real `colmax serve` process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_helpers import DOCS, ServerProcess, build_index

from colmax import Engine

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

KEY = "test-key-features"
QUERY = "the capital of france"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_index(tmp_path_factory.mktemp("server_features"))


@pytest.fixture(scope="module")
def server(index: Path) -> Iterator[ServerProcess]:
    with ServerProcess(index, api_key=KEY) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as c:
        yield c


def _check_explanation(hit: dict, query: str) -> None:
    e = hit["explanation"]
    assert e["query"] == query
    assert e["score"] == pytest.approx(sum(m["similarity"] for m in e["matches"]), abs=1e-4)
    for m in e["matches"]:
        if m["doc_span"] is not None:
            start, end = m["doc_span"]
            assert hit["text"][start:end] == m["doc_token"]


@pytest.mark.parametrize("group_chunks", [True, False])
def test_search_with_explanations(client: httpx.Client, group_chunks: bool) -> None:
    body = {"query": QUERY, "k": 3, "explain": True, "group_chunks": group_chunks}
    response = client.post("/search", json=body)
    assert response.status_code == 200, response.text
    hits = response.json()["results"][0]
    assert len(hits) == 3
    for hit in hits:
        _check_explanation(hit, QUERY)
        assert hit["explanation"]["id"] == hit["id"]
        assert hit["explanation"]["score"] == pytest.approx(hit["score"], abs=5e-3)
    plain = client.post("/search", json={"query": QUERY, "k": 3}).json()["results"][0]
    assert [h["id"] for h in plain] == [h["id"] for h in hits]
    assert all(h["explanation"] is None for h in plain)


def test_rerank_with_explanations(client: httpx.Client) -> None:
    texts = [DOCS["paris"][0], DOCS["car"][0]]
    body = {"query": QUERY, "documents": texts, "explain": True}
    hits = client.post("/rerank", json=body).json()["hits"]
    assert len(hits) == 2
    for hit in hits:
        _check_explanation(hit, QUERY)
        assert hit["explanation"]["score"] == pytest.approx(hit["score"], abs=1e-3)
    by_id = client.post("/rerank", json={"query": QUERY, "ids": ["cat"], "explain": True})
    assert by_id.json()["hits"][0]["explanation"]["id"] == "cat"


def test_explain_must_be_a_boolean(client: httpx.Client) -> None:
    response = client.post("/search", json={"query": QUERY, "explain": "very"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == "explain"


def test_openapi_documents_the_explanation(client: httpx.Client) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert "ExplanationOut" in schemas and "MatchOut" in schemas
    assert "explain" in schemas["SearchRequest"]["properties"]
    assert "explain" in schemas["RerankRequest"]["properties"]


def test_add_with_pool_factor(index: Path, client: httpx.Client) -> None:
    text = "the big red car ran to the house of the cat"
    docs = [{"id": "pooled", "text": text}]
    response = client.post("/documents", json={"documents": docs, "pool_factor": 2})
    assert response.status_code == 200, response.text
    docs = [{"id": "whole", "text": text}]
    assert client.post("/documents", json={"documents": docs}).status_code == 200
    with Engine.load(index, device="cpu") as engine:
        n = len(engine.encoder.encode_documents([text])[0])  # type: ignore[union-attr]
        rows = [len(v) for v in engine.backend.get_vectors(["pooled", "whole"])]
    assert rows == [-(-n // 2), n]
    # Explanations of a pooled document re-encode its text: spans are still there.
    body = {"query": "red car", "ids": ["pooled"], "explain": True}
    hit = client.post("/rerank", json=body).json()["hits"][0]
    _check_explanation(hit, "red car")
    assert any(m["doc_span"] is not None for m in hit["explanation"]["matches"])


@pytest.mark.parametrize("factor", [0, -1, "two", 1.5, 65])
def test_bad_pool_factor_is_a_422_and_writes_nothing(client: httpx.Client, factor: object) -> None:
    body = {"documents": [{"id": "never", "text": "never written"}], "pool_factor": factor}
    response = client.post("/documents", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == "pool_factor"
    assert client.get("/documents/never").status_code == 404


@pytest.mark.parametrize("mode", ["rrf", "minmax", "rerank"])
def test_hybrid_search_matches_the_engine(index: Path, client: httpx.Client, mode: str) -> None:
    body = {"query": "the cat and the dog", "k": 3, "hybrid": mode, "candidates": 3}
    body["group_chunks"] = False  # as the engine returns them (parents fetch 4 k per side)
    response = client.post("/search", json={**body, "weight": 0.6})
    assert response.status_code == 200, response.text
    hits = response.json()["results"][0]
    with Engine.load(index, device="cpu") as engine:
        expected = engine.search("the cat and the dog", k=3, hybrid=mode, candidates=3, weight=0.6)
    assert [(h["id"], h["scores"]) for h in hits] == [(h.id, h.scores) for h in expected]  # type: ignore[union-attr]
    assert [h["score"] for h in hits] == pytest.approx([h.score for h in expected])  # type: ignore[union-attr]
    assert any("bm25" in h["scores"] for h in hits)
    filtered = client.post("/search", json={**body, "filter": {"topic": "animals"}})
    assert {h["id"] for h in filtered.json()["results"][0]} <= {"cat", "dog"}


def test_hybrid_follows_deletes(client: httpx.Client) -> None:
    docs = [{"id": "gone", "text": "zebras grazing near the tram"}]
    assert client.post("/documents", json={"documents": docs}).status_code == 200
    body = {"query": "zebras", "hybrid": "rerank"}
    assert [h["id"] for h in client.post("/search", json=body).json()["results"][0]] == ["gone"]
    assert client.request("DELETE", "/documents", json={"ids": ["gone"]}).status_code == 200
    assert client.post("/search", json=body).json()["results"][0] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"hybrid": "bm25"}, "hybrid"),
        ({"hybrid": "rrf", "candidates": 0}, "candidates"),
        ({"hybrid": "rrf", "weight": 2}, "weight"),
        ({"weight": 0.3}, None),  # tuning without hybrid
    ],
)
def test_bad_hybrid_requests_are_422(client: httpx.Client, body: dict, field: str | None) -> None:
    response = client.post("/search", json={"query": QUERY, **body})
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"][-1] == field if field else "go with 'hybrid'" in detail["msg"]


def test_query_runtime_option(index: Path, tmp_path: Path) -> None:
    """`colmax serve --query-runtime onnxruntime` answers as the PyTorch engine does."""
    pytest.importorskip("onnxruntime")
    with Engine.load(index, device="cpu", query_runtime="torch") as engine:
        want = engine.search(QUERY, k=4)
    with (
        ServerProcess(index, "--query-runtime", "onnxruntime", log=tmp_path / "s.log") as proc,
        httpx.Client(base_url=proc.url, timeout=60) as c,
    ):
        response = c.post("/search", json={"query": QUERY, "k": 4})
    assert response.status_code == 200, response.text
    got = response.json()["results"][0]
    assert [h["id"] for h in got] == [r.id for r in want]
    assert [h["score"] for h in got] == pytest.approx([r.score for r in want], abs=1e-4)
