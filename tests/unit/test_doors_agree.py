"""One index, five doors (six with MCP), the same answers.

An index built by ``colmax index corpus.jsonl --chunk-tokens 48`` is searched through
``Engine.search``, ``colmax search --json``, the server's ``POST /search``, the LangChain
retriever, the LlamaIndex retriever and (when ``colmax[mcp]`` is installed) the MCP ``search``
tool, with the same query, filter and hybrid settings; every door must return the same ids
(chunks grouped into their documents) and the same scores.
"""

from __future__ import annotations

import importlib.util
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from colmax import Engine
from colmax.cli import main

pytest.importorskip("langchain_colmax", reason="the LangChain door is not installed")
pytest.importorskip("llama_index.retrievers.colmax", reason="the LlamaIndex door is not installed")
pytest.importorskip("fastapi", reason='pip install "colmax[server]"')
pytest.importorskip("bm25s", reason='pip install "colmax[hybrid]"')

from fastapi.testclient import TestClient
from langchain_colmax import ColmaxRetriever as LangChainRetriever
from llama_index.core.vector_stores.types import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)
from llama_index.retrievers.colmax import ColmaxRetriever as LlamaRetriever

from colmax.server import create_app

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "dog",
    "ran",
    "to",
    "house",
    "paris",
    "is",
    "capital",
    "of",
    "france",
    "big",
    "red",
    "car",
    "search",
    "engine",
    "query",
    "document",
    "late",
    "interaction",
    "model",
    "token",
    "hello",
    "world",
    "small",
    "blue",
]
QUERY = "late interaction search of the capital"
K = 5
Result = list[tuple[str, float]]


@pytest.fixture(scope="module")
def chunked_index(tiny_colbert_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``colmax index corpus.jsonl --chunk-tokens 48`` over 24 documents of ~120 words."""
    rng = random.Random(0)
    folder = tmp_path_factory.mktemp("doors")
    corpus = folder / "corpus.jsonl"
    with corpus.open("w", encoding="utf-8") as f:
        for i in range(24):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(60, 180)))
            f.write(json.dumps({"id": f"doc{i}", "text": text, "year": 2015 + i % 10}) + "\n")
    out = folder / "index"
    argv = ["index", str(corpus), "--model", str(tiny_colbert_model), "--out", str(out)]
    assert main([*argv, "--chunk-tokens", "48", "--device", "cpu", "-q"]) == 0
    return out


SETTINGS = {
    "plain": {},
    "filter": {"filter": {"year": {"$gte": 2020}}},
    "hybrid": {"hybrid": "rrf"},
    "filter+hybrid": {"filter": {"year": {"$gte": 2020}}, "hybrid": "minmax", "weight": 0.7},
}


def _engine_door(index: Path, s: dict[str, Any], capsys: Any) -> Result:
    with Engine.load(index) as engine:
        hits = engine.search(QUERY, k=K, **s)
    return [(h.id, h.score) for h in hits]


def _cli_door(index: Path, s: dict[str, Any], capsys: Any) -> Result:
    argv = ["search", str(index), QUERY, "--json", "-k", str(K)]
    if "filter" in s:
        argv += ["--filter", json.dumps(s["filter"])]
    if "hybrid" in s:
        argv += ["--hybrid", s["hybrid"]]
    if "weight" in s:
        argv += ["--weight", str(s["weight"])]
    capsys.readouterr()
    assert main(argv) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    return [(h["id"], h["score"]) for h in hits]


def _server_door(index: Path, s: dict[str, Any], capsys: Any) -> Result:
    with Engine.load(index) as engine:
        app = create_app(engine)
        # A keyless server answers loopback names only (TrustedHostMiddleware).
        with TestClient(app, base_url="http://localhost") as client:
            response = client.post("/search", json={"query": QUERY, "k": K, **s})
    assert response.status_code == 200, response.text
    return [(h["id"], h["score"]) for h in response.json()["results"][0]]


def _langchain_door(index: Path, s: dict[str, Any], capsys: Any) -> Result:
    options = {"hybrid": s.get("hybrid"), "hybrid_weight": s.get("weight", 0.5)}
    with Engine.load(index) as engine:
        retriever = LangChainRetriever(engine=engine, k=K, filter=s.get("filter"), **options)
        docs = retriever.invoke(QUERY)
    return [(d.id or "", d.metadata["score"]) for d in docs]


def _llamaindex_door(index: Path, s: dict[str, Any], capsys: Any) -> Result:
    filters = None
    if "filter" in s:
        bound = s["filter"]["year"]["$gte"]
        filters = MetadataFilters(
            filters=[MetadataFilter(key="year", operator=FilterOperator.GTE, value=bound)]
        )
    with Engine.load(index) as engine:
        retriever = LlamaRetriever(
            engine,
            similarity_top_k=K,
            filters=filters,
            hybrid=s.get("hybrid"),
            hybrid_weight=s.get("weight", 0.5),
        )
        nodes = retriever.retrieve(QUERY)
    return [(n.node.node_id, float(n.score or 0.0)) for n in nodes]


def _mcp_door(index: Path, s: dict[str, Any], capsys: Any) -> Result:
    import anyio

    from colmax.mcp.tools import ColmaxTools
    from colmax.server.settings import ServerSettings

    with Engine.load(index) as engine:
        tools = ColmaxTools(engine, ServerSettings())
        search = tools.functions(writes=False)["search"]
        result = anyio.run(lambda: search(query=QUERY, k=K, **s))
    return [(h.id, h.score) for h in result.hits]


DOORS: dict[str, Callable[[Path, dict[str, Any], Any], Result]] = {
    "cli": _cli_door,
    "server": _server_door,
    "langchain": _langchain_door,
    "llamaindex": _llamaindex_door,
}
if importlib.util.find_spec("mcp") is not None:
    DOORS["mcp"] = _mcp_door


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_every_door_gives_the_engine_s_answer(
    chunked_index: Path, setting: str, capsys: pytest.CaptureFixture[str]
) -> None:
    s = SETTINGS[setting]
    expected = _engine_door(chunked_index, s, capsys)
    assert len(expected) == K and all("#" not in id_ for id_, _ in expected)  # grouped
    for name, door in DOORS.items():
        got = door(chunked_index, s, capsys)
        assert [i for i, _ in got] == [i for i, _ in expected], name
        assert [sc for _, sc in got] == pytest.approx([sc for _, sc in expected], rel=1e-6), name
