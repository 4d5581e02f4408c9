"""The MCP door in-process: error wording shared with the HTTP server, the Host rule, limits in
the tool schemas. (A real client against a real ``colmax mcp`` process:
``tests/integration/test_mcp.py``.)"""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import numpy as np
import pytest

pytest.importorskip("mcp", reason='pip install "colmax[mcp]"')

from mcp.server.mcpserver.exceptions import ToolError

from colmax import Engine
from colmax.errors import IndexFormatError
from colmax.mcp import create_mcp_server, streamable_http_app
from colmax.mcp.tools import ColmaxTools
from colmax.server.settings import ServerSettings


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = Engine(dim=4, path=tmp_path / "index")
    engine.add(embeddings=[np.eye(4)[:2], np.eye(4)[2:]], ids=["a", "b"])
    return engine


def test_client_mistakes_keep_their_message(engine: Engine) -> None:
    tools = ColmaxTools(engine, ServerSettings())
    with pytest.raises(ToolError, match=r"not in the index"):
        anyio.run(tools.get, ["nope"])


def test_server_faults_are_worded_as_the_http_server_words_them(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def damaged(*args: object, **kwargs: object) -> None:
        raise IndexFormatError(f"{engine.path}/manifest.json is damaged")

    monkeypatch.setattr(engine, "get", damaged)
    tools = ColmaxTools(engine, ServerSettings())
    with pytest.raises(ToolError) as info:
        anyio.run(tools.get, ["a"])
    assert str(info.value) == "the index folder is damaged or unreadable; see the server log"
    assert str(engine.path) not in str(info.value)


def test_tool_schemas_carry_the_settings_limits(engine: Engine) -> None:
    server = create_mcp_server(engine, ServerSettings(max_k=7, max_documents=3), writes=True)
    tools = {t.name: t for t in anyio.run(server.list_tools)}
    assert set(tools) == {"search", "rerank", "get", "add", "delete"}
    assert tools["search"].input_schema["properties"]["k"]["maximum"] == 7
    assert tools["delete"].input_schema["properties"]["ids"]["maxItems"] == 3
    assert tools["delete"].annotations.destructive_hint is True


@pytest.mark.parametrize(
    ("settings", "host", "status"),
    [
        (ServerSettings(), "evil.example", 400),  # keyless: loopback names only (rebinding)
        (ServerSettings(api_key="k"), "evil.example", 401),  # a key guards it instead
        (ServerSettings(api_key="k", allowed_hosts=("docs.internal",)), "docs.internal", 401),
        (ServerSettings(api_key="k", allowed_hosts=("docs.internal",)), "evil.example", 400),
    ],
    ids=["keyless-rebinding", "with-key", "allowed-host", "not-allowed-host"],
)
def test_host_rule_and_key_of_the_http_server(
    engine: Engine, settings: ServerSettings, host: str, status: int
) -> None:
    """Refused host names get 400 before anything else runs; accepted ones reach the key."""
    app = streamable_http_app(engine, settings)

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as client:
            return await client.post("/mcp", json={}, headers={"Authorization": "Bearer wrong"})

    assert anyio.run(post).status_code == status


def test_writes_over_http_need_a_key(engine: Engine) -> None:
    from colmax.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="need an API key"):
        streamable_http_app(engine, ServerSettings(), writes=True)
    streamable_http_app(engine, ServerSettings(allow_unauthenticated_writes=True), writes=True)


def test_responses_over_the_size_limit_are_refused(engine: Engine) -> None:
    tools = ColmaxTools(engine, ServerSettings(max_response_bytes=40))
    with pytest.raises(ToolError, match=r"over the server's limit of 40"):
        anyio.run(tools.get, ["a", "b"])
    assert anyio.run(ColmaxTools(engine, ServerSettings()).get, ["a"]).documents[0].id == "a"


def test_k_is_bounded_by_max_hits_too(engine: Engine) -> None:
    server = create_mcp_server(engine, ServerSettings(max_k=50, max_hits=20))
    tools = {t.name: t for t in anyio.run(server.list_tools)}
    assert tools["search"].input_schema["properties"]["k"]["maximum"] == 20


@pytest.mark.parametrize(
    "arguments",
    [{"k": True}, {"k": "2"}, {"k": 2.0}, {"explain": 1}, {"explain": "yes"}],
    ids=["k-true", "k-string", "k-float", "explain-1", "explain-string"],
)
def test_arguments_of_the_wrong_json_type_are_refused(engine: Engine, arguments: dict) -> None:
    # pydantic's lax mode took JSON true as k=1 and 1 as explain=true.
    server = create_mcp_server(engine, ServerSettings())
    name = next(iter(arguments))
    with pytest.raises(ToolError, match=rf"validation error.*\n{name}\n  Input should be a valid"):
        anyio.run(server.call_tool, "search", {"query": "x", **arguments})
