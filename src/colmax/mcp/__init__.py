"""An MCP (Model Context Protocol) door onto one index: ``pip install "colmax[mcp]"``.

Agents and chat clients call colmax as tools: ``search`` (filter, k, hybrid, explain),
``rerank``, ``get``, and, when enabled, ``add`` and ``delete``. Results are structured content
with ids, scores, text and metadata (the HTTP server's own models). ``colmax mcp INDEX`` serves
an index over stdio (what desktop clients launch) or, with ``--http``, over streamable HTTP
with the HTTP server's authentication and limits. Built on the official ``mcp`` SDK
(``MCPServer``) and the engine's public API only. See ``docs/mcp.md``.

Examples:
    >>> from colmax import Engine
    >>> from colmax.mcp import create_mcp_server
    >>> server = create_mcp_server(Engine.load("my-index"))  # doctest: +SKIP
    >>> server.run("stdio")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from colmax import Engine
    from colmax.server.settings import ServerSettings

__all__ = ["create_mcp_server", "streamable_http_app"]

_MISSING = 'the MCP server needs the mcp SDK: pip install "colmax[mcp]"'


def _server_module() -> Any:
    try:
        from colmax.mcp import server
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] in ("mcp", "mcp_types", "starlette"):
            raise ImportError(_MISSING) from exc
        raise
    return server


def create_mcp_server(
    engine: Engine, settings: ServerSettings | None = None, *, writes: bool = False
) -> Any:
    """The MCP server over ``engine`` (see :func:`colmax.mcp.server.create_mcp_server`).

    Raises:
        ImportError: the mcp SDK is not installed (the message names the extra).
    """
    return _server_module().create_mcp_server(engine, settings, writes=writes)


def streamable_http_app(
    engine: Engine,
    settings: ServerSettings | None = None,
    *,
    writes: bool = False,
    path: str = "/mcp",
    host: str = "127.0.0.1",
) -> Any:
    """The MCP server as a streamable-HTTP ASGI app (see
    :func:`colmax.mcp.server.streamable_http_app`).

    Raises:
        ImportError: the mcp SDK is not installed (the message names the extra).
    """
    return _server_module().streamable_http_app(
        engine, settings, writes=writes, path=path, host=host
    )
