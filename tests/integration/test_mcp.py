"""``colmax mcp``: a real MCP client session (the official ``mcp`` SDK) against a real
``colmax mcp`` process, over stdio and over streamable HTTP. Nothing is mocked.

The tiny-model index of ``server_helpers`` serves the protocol checks (its random weights
rank arbitrarily, so each answer is compared with the same engine's answer in this process);
``test_stdio_answers_with_the_best_document`` uses the real MiniLM weights and a question
with one right answer.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Generator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

pytest.importorskip("mcp", reason='pip install "colmax[mcp]"')
import httpx2  # the mcp SDK's HTTP client
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server_helpers import DOCS, build_index, free_port

from colmax import Engine
from colmax.cli import main

KEY = "mcp-test-key"
Check = Callable[[ClientSession], Awaitable[None]]


def _command() -> str:
    """The ``colmax`` console script of this environment (what a client config names)."""
    script = Path(sys.executable).with_name("colmax")
    return str(script) if script.is_file() else shutil.which("colmax") or "colmax"


def _stdio(index: Path, *args: str, check: Check) -> None:
    """Launch ``colmax mcp INDEX ARGS`` as a client does, open a session, run ``check``."""
    params = StdioServerParameters(
        command=_command(),
        args=["mcp", str(index), "--device", "cpu", *args],
        env={"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"},
    )

    async def run() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            await check(session)

    anyio.run(run)


def _hits(result: Any) -> list[dict[str, Any]]:
    assert not result.is_error, result.content
    hits = result.structured_content["hits"]
    # The text content carries the same JSON, for clients that read text only.
    assert json.loads(result.content[0].text)["hits"] == hits
    return list(hits)


def _error(result: Any) -> str:
    assert result.is_error
    return str(result.content[0].text)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_index(tmp_path_factory.mktemp("mcp"))


def test_stdio_read_tools(index: Path) -> None:
    with Engine.load(index, device="cpu") as engine:
        expected = engine.search("where is paris?", k=2)
        expected_filtered = engine.search("animals", k=4, filter={"topic": "animals"})
        reranked = engine.rerank("a red car", ["the cat sat", "a big red car"])

    async def check(session: ClientSession) -> None:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert set(tools) == {"search", "rerank", "get"}  # no writes unless enabled
        assert tools["search"].annotations.read_only_hint is True
        assert tools["search"].input_schema["properties"]["k"]["maximum"] == 1000
        assert "hits" in tools["search"].output_schema["properties"]

        hits = _hits(await session.call_tool("search", {"query": "where is paris?", "k": 2}))
        assert [(h["id"], h["text"], h["metadata"]) for h in hits] == [
            (h.id, h.text, h.metadata) for h in expected
        ]
        assert [h["score"] for h in hits] == pytest.approx([h.score for h in expected])
        assert [h["rank"] for h in hits] == [0, 1]

        filtered = _hits(
            await session.call_tool(
                "search", {"query": "animals", "k": 4, "filter": {"topic": "animals"}}
            )
        )
        assert [h["id"] for h in filtered] == [h.id for h in expected_filtered]
        assert {h["id"] for h in filtered} == {"cat", "dog"}

        explained = _hits(
            await session.call_tool("search", {"query": "paris", "k": 1, "explain": True})
        )
        assert explained[0]["explanation"]["matches"]
        fused = _hits(
            await session.call_tool("search", {"query": "paris", "k": 2, "hybrid": "rrf"})
        )
        assert fused[0]["scores"] is not None and "bm25" in fused[0]["scores"]

        ranked = _hits(
            await session.call_tool(
                "rerank", {"query": "a red car", "documents": ["the cat sat", "a big red car"]}
            )
        )
        assert [h["id"] for h in ranked] == [h.id for h in reranked]

        got = await session.call_tool("get", {"ids": ["paris", "cat"]})
        assert not got.is_error
        assert [(d["id"], d["text"]) for d in got.structured_content["documents"]] == [
            ("paris", DOCS["paris"][0]),
            ("cat", DOCS["cat"][0]),
        ]

        assert "not in the index" in _error(await session.call_tool("get", {"ids": ["nope"]}))
        assert (
            "filter"
            in _error(
                await session.call_tool("search", {"query": "x", "filter": {"$bogus": 1}})
            ).lower()
        )
        assert _error(await session.call_tool("search", {"query": "x", "k": 1001}))  # max_k
        assert _error(await session.call_tool("add", {"documents": [{"text": "x"}]}))

    _stdio(index, check=check)


def test_stdio_writes_when_enabled(index: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(index, tmp_path / "index"))

    async def check(session: ClientSession) -> None:
        tools = {t.name for t in (await session.list_tools()).tools}
        assert tools == {"search", "rerank", "get", "add", "delete"}
        added = await session.call_tool(
            "add",
            {
                "documents": [
                    {"id": "new", "text": "hello world", "metadata": {"topic": "greeting"}}
                ]
            },
        )
        assert not added.is_error and added.structured_content == {
            "ids": ["new"],
            "documents": len(DOCS) + 1,
        }
        hits = _hits(
            await session.call_tool(
                "search", {"query": "hello", "k": 5, "filter": {"topic": "greeting"}}
            )
        )
        assert [h["id"] for h in hits] == ["new"]
        gone = await session.call_tool("delete", {"ids": ["cat"]})
        assert gone.structured_content == {"deleted": 1, "documents": len(DOCS)}
        # All or nothing: an unknown id deletes none.
        assert "not in the index" in _error(
            await session.call_tool("delete", {"ids": ["dog", "nope"]})
        )

    _stdio(folder, "--allow-writes", check=check)
    with Engine.load(folder, device="cpu") as engine:  # committed to the folder
        assert sorted(engine.ids()) == sorted({*DOCS, "new"} - {"cat"})


class _HttpServer:
    """``colmax mcp INDEX --http`` on a free loopback port."""

    def __init__(self, index: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.log = index.parent / "mcp-http.log"
        command = [sys.executable, "-m", "colmax.cli", "mcp", str(index), "--http", "--device"]
        command += ["cpu", "--port", str(self.port), *args]
        env = {**os.environ, "COLMAX_API_KEY": KEY, "OMP_NUM_THREADS": "1"}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and self.proc.poll() is None:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"colmax mcp --http did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def http_server(index: Path, tmp_path_factory: pytest.TempPathFactory) -> Generator[_HttpServer]:
    folder = Path(shutil.copytree(index, tmp_path_factory.mktemp("mcp_http") / "index"))
    server = _HttpServer(folder, "--allow-writes", "--max-k", "3", "--max-body-bytes", "20000")
    yield server
    server.stop()


def test_http_needs_the_key(http_server: _HttpServer) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx.post(http_server.url, json=body, headers=headers, timeout=30)
        assert response.status_code == 401
    big = {**body, "params": {"pad": "x" * 30_000}}
    headers = {"Authorization": f"Bearer {KEY}"}
    assert httpx.post(http_server.url, json=big, headers=headers, timeout=30).status_code == 413


def test_http_session(http_server: _HttpServer) -> None:
    async def run() -> None:
        client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
        async with (
            client,
            streamable_http_client(http_server.url, http_client=client) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            tools = {t.name for t in (await session.list_tools()).tools}
            assert tools == {"search", "rerank", "get", "add", "delete"}
            hits = _hits(await session.call_tool("search", {"query": "paris", "k": 3}))
            assert len(hits) == 3 and {h["id"] for h in hits} <= set(DOCS)
            assert _error(
                await session.call_tool("search", {"query": "paris", "k": 4})
            )  # --max-k 3
            added = await session.call_tool("add", {"documents": [{"text": "hello world"}]})
            assert not added.is_error and added.structured_content["documents"] == len(DOCS) + 1

    anyio.run(run)


def test_http_writes_need_a_key_or_an_explicit_flag(
    index: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLMAX_API_KEY", raising=False)
    assert main(["mcp", str(index), "--http", "--allow-writes"]) == 2
    assert "needs an API key" in capsys.readouterr().err


@pytest.fixture(scope="module")
def minilm_index(minilm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [
        "Paris is the capital and largest city of France.",
        "The mitochondrion is the powerhouse of the cell.",
        "Python is a programming language that emphasises readability.",
        "The Great Barrier Reef lies off the coast of Queensland, Australia.",
        "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    ]
    folder = tmp_path_factory.mktemp("mcp_minilm") / "index"
    with Engine.from_pretrained(minilm_path, device="cpu", path=folder) as engine:
        engine.add(texts, ids=[f"d{i}" for i in range(len(texts))])
    return folder


def test_stdio_answers_with_the_best_document(minilm_index: Path) -> None:
    """The issue's done-when: list_tools shows search; search k=1 returns the best text."""

    async def check(session: ClientSession) -> None:
        assert "search" in {t.name for t in (await session.list_tools()).tools}
        result = await session.call_tool(
            "search", {"query": "What is the capital of France?", "k": 1}
        )
        [hit] = _hits(result)
        assert hit["text"] == "Paris is the capital and largest city of France."
        assert hit["id"] == "d0"

    _stdio(minilm_index, check=check)
