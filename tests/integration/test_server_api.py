"""The HTTP API through a real `colmax serve` process: auth, limits, round trip, concurrency."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_helpers import ServerProcess, build_index

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

KEY = "test-key-8c1f"
LIMITS = {"max_k": 50, "max_queries": 4, "max_documents": 5, "max_text_chars": 2000}
BODY_LIMIT = 20_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("server_api")
    index = build_index(folder)
    args = [f"--{k.replace('_', '-')}={v}" for k, v in LIMITS.items()]
    args += [f"--max-body-bytes={BODY_LIMIT}", "--chunk-tokens=12", "--chunk-overlap=2"]
    with ServerProcess(index, *args, api_key=KEY) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as c:
        yield c


ROUTES = [
    ("GET", "/health", None),
    ("GET", "/info", None),
    ("GET", "/openapi.json", None),
    ("GET", "/docs", None),
    ("POST", "/search", {"query": "cat"}),
    ("POST", "/rerank", {"query": "cat", "documents": ["a cat"]}),
    ("POST", "/documents", {"documents": [{"id": "x", "text": "never written"}]}),
    ("DELETE", "/documents", {"ids": ["cat"]}),
    ("GET", "/documents/cat", None),
    ("GET", "/no-such-route", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
@pytest.mark.parametrize(
    "auth",
    [None, "Bearer wrong-key", f"Basic {KEY}", f"Bearer {KEY}x", "Bearer"],
    ids=["none", "wrong", "basic", "longer", "empty"],
)
def test_every_route_needs_the_key(
    server: ServerProcess, method: str, path: str, body: dict | None, auth: str | None
) -> None:
    headers = {"Authorization": auth} if auth else {}
    response = httpx.request(method, server.url + path, json=body, headers=headers, timeout=60)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "API key" in response.json()["detail"]


def test_nothing_was_written_without_the_key(client: httpx.Client) -> None:
    assert client.get("/documents/x").status_code == 404
    assert client.get("/documents/cat").status_code == 200


def test_the_key_opens_every_route(client: httpx.Client) -> None:
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/info").json()["settings"]["auth"] is True
    assert "KEY" not in str(client.get("/info").json()) and KEY not in client.get("/info").text
    assert client.get("/docs").status_code == 200


def test_openapi_declares_the_enforced_limits(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) >= {"/health", "/info", "/search", "/rerank", "/documents"}
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    search = schema["components"]["schemas"]["SearchRequest"]["properties"]
    assert search["k"]["maximum"] == LIMITS["max_k"]


def test_body_over_the_limit_is_413_declared_or_streamed(client: httpx.Client) -> None:
    big = {"query": "x", "filter": {"pad": "y" * BODY_LIMIT}}
    response = client.post("/search", json=big)
    assert response.status_code == 413 and "larger than" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        yield b'{"query": "x", "filter": {"pad": "'
        for _ in range(BODY_LIMIT // 1000 + 1):
            yield b"y" * 1000
        yield b'"}}'

    response = client.post(
        "/search", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert client.get("/health").status_code == 200  # and the server is fine


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/search", {"query": "cat", "k": LIMITS["max_k"] + 1}, "k"),
        ("/search", {"query": "cat", "k": 0}, "k"),
        # strict JSON types: pydantic's lax mode took true as k=1, "2" as 2, 1 as true
        ("/search", {"query": "cat", "k": True}, "valid integer"),
        ("/search", {"query": "cat", "k": "2"}, "valid integer"),
        ("/search", {"query": "cat", "explain": 1}, "valid boolean"),
        ("/rerank", {"query": "cat", "documents": ["d"], "k": True}, "valid integer"),
        ("/search", {"queries": ["q"] * (LIMITS["max_queries"] + 1)}, "queries"),
        ("/search", {"queries": []}, "queries"),
        ("/search", {"query": "x" * (LIMITS["max_text_chars"] + 1)}, "query"),
        ("/search", {"query": "cat", "queries": ["dog"]}, "exactly one"),
        ("/search", {"query": "cat", "top_k": 3}, "top_k"),
        ("/search", {"query": "cat", "filter": {"year": {"$near": 1}}}, "$near"),
        ("/search", {"query": "   "}, "empty"),
        ("/rerank", {"query": "cat"}, "documents"),
        (
            "/rerank",
            {"query": "cat", "documents": ["d"] * (LIMITS["max_documents"] + 1)},
            "documents",
        ),
        ("/documents", {"documents": [{"text": "t"}] * (LIMITS["max_documents"] + 1)}, "documents"),
        ("/documents", {"documents": [{"id": "a", "text": "x" * 2001}]}, "text"),
        (
            "/documents",
            {"documents": [{"id": "a", "text": "t"}, {"id": "a", "text": "u"}]},
            "'a' appears more than once",
        ),
        ("/documents", {"documents": []}, "documents"),
    ],
)
def test_field_limits_and_bad_input_are_422(
    client: httpx.Client, path: str, body: dict, field: str
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert field in response.text
    assert len(response.content) < 5000  # bad input is not echoed back


@pytest.mark.parametrize(
    "raw",
    [
        b'{"query": ',
        b'{"query": "\\ud800"}',  # a lone surrogate cannot be stored as UTF-8
        b'{"documents": [{"id": "n", "text": "t", "metadata": {"x": NaN}}]}',
        b'{"query": "cat", "filter": {"year": Infinity}}',
    ],
    ids=["truncated", "surrogate", "nan-metadata", "infinite-filter"],
)
def test_malformed_json_is_422(client: httpx.Client, raw: bytes) -> None:
    path = "/documents" if b"documents" in raw else "/search"
    response = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert client.get("/documents/n").status_code == 404


def test_round_trip_add_search_delete(client: httpx.Client) -> None:
    long_text = "the red car drove to paris " * 12 + "zebra"
    added = client.post(
        "/documents",
        json={
            "documents": [
                {"id": "trip", "text": long_text, "metadata": {"topic": "trips"}},
                {"text": "an id is assigned to me", "metadata": {"topic": "auto"}},
            ]
        },
    )
    assert added.status_code == 200, added.text
    body = added.json()
    assert body["ids"][0] == "trip" and len(body["ids"][1]) == 36  # a UUID
    assert body["entries"] > 3  # the long document became several chunks
    hits = client.post(
        "/search", json={"query": "red car to paris", "k": 3, "filter": {"topic": "trips"}}
    ).json()["results"][0]
    assert [h["id"] for h in hits] == ["trip"]  # one hit per parent document
    meta = hits[0]["metadata"]
    assert meta["parent_id"] == "trip" and meta["chunk_id"].startswith("trip#")
    assert long_text[meta["char_start"] : meta["char_end"]] == hits[0]["text"]
    raw = client.post(
        "/search",
        json={
            "query": "red car to paris",
            "k": 3,
            "filter": {"topic": "trips"},
            "group_chunks": False,
        },
    ).json()["results"][0]
    assert len(raw) == 3 and all(h["id"].startswith("trip#") for h in raw)
    chunk = client.get(f"/documents/{meta['chunk_id'].replace('#', '%23')}")
    assert chunk.status_code == 200 and chunk.json()["text"] == hits[0]["text"]
    reranked = client.post("/rerank", json={"query": "zebra", "ids": [h["id"] for h in raw]})
    assert reranked.status_code == 200 and len(reranked.json()["hits"]) == 3

    deleted = client.request("DELETE", "/documents", json={"ids": ["trip"]})
    assert deleted.status_code == 200 and deleted.json()["deleted"] == body["entries"] - 1
    after = client.post("/search", json={"query": "red car to paris", "k": 10}).json()
    assert "trip" not in {h["id"] for h in after["results"][0]}
    again = client.request("DELETE", "/documents", json={"ids": ["trip"]})
    assert again.status_code == 404 and "nothing was deleted" in again.json()["detail"]
    assert client.get("/documents/trip%230").status_code == 404


def test_concurrent_searches_agree_with_serial_ones(client: httpx.Client) -> None:
    queries = ["the cat", "paris france", "red car", "dog house"] * 10
    serial = {
        q: client.post("/search", json={"query": q, "k": 3}).json()["results"][0]
        for q in queries[:4]
    }

    def ask(query: str) -> tuple[str, int, list]:
        response = client.post("/search", json={"query": query, "k": 3})
        return query, response.status_code, response.json()["results"][0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ask, queries))
    assert all(status == 200 for _, status, _ in answers)
    for query, _, hits in answers:
        assert [h["id"] for h in hits] == [h["id"] for h in serial[query]]
        assert [h["score"] for h in hits] == pytest.approx([h["score"] for h in serial[query]])
