"""The HTTP server over a Qdrant (qdrant-edge) index: every route answers.

A Qdrant backend keeps no token count and no generation; the handlers once read both from an
untyped info dict, so ``GET /info`` failed and ``POST``/``DELETE /documents`` failed *after*
their write had committed. The typed ``IndexInfo`` makes them ``null`` instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from colmax import Engine

pytest.importorskip("fastapi", reason='pip install "colmax[server]"')
pytest.importorskip("qdrant_edge", reason='pip install "colmax[qdrant]"')

from fastapi.testclient import TestClient

from colmax.server import ServerSettings, create_app

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
DOCS = {
    "cat": ("the cat sat on the mat", {"year": 2020}),
    "dog": ("the dog ran to the house", {"year": 2022}),
    "paris": ("paris is the capital of france", {"year": 2024}),
}


@pytest.fixture()
def client(tiny_colbert_model: Path, tmp_path: Path) -> Iterator[TestClient]:
    folder = tmp_path / "qdrant-index"
    with Engine.from_pretrained(
        tiny_colbert_model, device="cpu", index="qdrant", path=folder
    ) as engine:
        engine.add(
            [t for t, _ in DOCS.values()], ids=list(DOCS), metadatas=[m for _, m in DOCS.values()]
        )
    engine = Engine.load(folder, device="cpu")  # as `colmax serve` opens it
    with TestClient(create_app(engine, ServerSettings(api_key=KEY))) as c:
        yield c
    engine.close()


def test_info_over_qdrant(client: TestClient) -> None:
    response = client.get("/info", headers=AUTH)
    assert response.status_code == 200, response.text
    info = response.json()
    assert info["index"] == "qdrant" and info["documents"] == 3
    assert info["tokens"] is None and info["generation"] is None


def test_writes_over_qdrant_answer_after_they_commit(client: TestClient) -> None:
    body = {"documents": [{"id": "car", "text": "a big red car", "metadata": {"year": 2019}}]}
    response = client.post("/documents", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["documents"] == 4 and response.json()["generation"] is None
    body = {"query": "red car", "k": 3, "filter": {"year": 2019}}
    found = client.post("/search", json=body, headers=AUTH).json()
    assert [h["id"] for h in found["results"][0]] == ["car"]  # searchable at once
    response = client.request("DELETE", "/documents", json={"ids": ["car", "dog"]}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["deleted"] == 2 and response.json()["documents"] == 2
    assert client.get("/documents/car", headers=AUTH).status_code == 404


def test_search_and_rerank_over_qdrant(client: TestClient) -> None:
    body = {"query": "capital of france", "k": 2, "filter": {"year": {"$gte": 2021}}}
    response = client.post("/search", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    hits = response.json()["results"][0]
    assert {h["id"] for h in hits} == {"paris", "dog"}  # what the filter lets through
    rerank = client.post(
        "/rerank", json={"query": "cat", "ids": ["cat", "paris"]}, headers=AUTH
    ).json()
    assert sorted(h["id"] for h in rerank["hits"]) == ["cat", "paris"]
