"""Build the MCP server over one engine, and serve it over stdio or streamable HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ToolAnnotations
from starlette.middleware.trustedhost import TrustedHostMiddleware

from colmax import Engine, __version__
from colmax.errors import InvalidInputError
from colmax.mcp.tools import ColmaxTools
from colmax.server.middleware import AuthMiddleware, BodyLimitMiddleware
from colmax.server.settings import ServerSettings

if TYPE_CHECKING:
    from starlette.types import ASGIApp

__all__ = ["create_mcp_server", "streamable_http_app"]

_INSTRUCTIONS = (
    "colmax searches one document index with late interaction (ColBERT-style MaxSim). Use "
    "'search' to find documents for a question (optionally with a metadata filter), 'get' to "
    "read stored documents by id, and 'rerank' to order candidate texts or ids. Scores are raw "
    "MaxSim sums: compare them within one result list only."
)

_READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)
_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
_DELETE = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)
_ANNOTATIONS = {"search": _READ, "rerank": _READ, "get": _READ, "add": _WRITE, "delete": _DELETE}


def create_mcp_server(
    engine: Engine,
    settings: ServerSettings | None = None,
    *,
    writes: bool = False,
    name: str = "colmax",
) -> MCPServer[Any]:
    """An MCP server with the tools ``search``, ``rerank``, ``get`` (and ``add``, ``delete``).

    Args:
        engine: the engine to serve (open it on an index folder so writes are durable).
        settings: the HTTP server's settings: the same limits (``max_k``, ``max_documents``,
            ``max_text_chars``), search threads, and for HTTP the key and body size.
        writes: register ``add`` and ``delete`` (over HTTP, :func:`streamable_http_app` also
            asks for an API key or ``allow_unauthenticated_writes``, as the HTTP server does).
        name: the server name clients show.

    Returns:
        The server (``server.run("stdio")`` serves it over standard input and output).
    """
    settings = settings or ServerSettings()
    server: MCPServer[Any] = MCPServer(
        name=name,
        version=__version__,
        instructions=_INSTRUCTIONS,
        log_level="WARNING",
    )
    for tool_name, function in ColmaxTools(engine, settings).functions(writes=writes).items():
        server.add_tool(
            function,
            name=tool_name,
            annotations=_ANNOTATIONS[tool_name],
            structured_output=True,
        )
    return server


def streamable_http_app(
    engine: Engine,
    settings: ServerSettings | None = None,
    *,
    writes: bool = False,
    path: str = "/mcp",
    host: str = "127.0.0.1",
) -> ASGIApp:
    """The MCP server over streamable HTTP, behind the HTTP server's authentication and
    body-size limit.

    As for ``colmax serve``: only the ``Host`` names ``settings.trusted_hosts()`` allows are
    answered (without a key, loopback names only: DNS rebinding), with ``settings.api_key``
    every request needs ``Authorization: Bearer <key>`` (401 otherwise), and bodies over
    ``settings.max_body_bytes`` get 413 before they are parsed. The SDK's own Host and Origin
    check is given the same host names.

    Args:
        engine: the engine to serve.
        settings: limits, key and body size (default: ``ServerSettings()``).
        writes: register ``add`` and ``delete``; needs an API key or
            ``allow_unauthenticated_writes``, as the HTTP server's writes do.
        path: the MCP endpoint.
        host: the address served (the SDK accepts only matching ``Host`` headers on loopback,
            against DNS rebinding).

    Returns:
        An ASGI app (run it with uvicorn; its lifespan starts the session manager).

    Raises:
        InvalidInputError: ``writes`` without an API key or ``allow_unauthenticated_writes``.
    """
    settings = settings or ServerSettings()
    if writes and not settings.writes_enabled:
        raise InvalidInputError(
            "writes over HTTP need an API key (--api-key or COLMAX_API_KEY) or "
            "--allow-unauthenticated-writes, as for 'colmax serve'"
        )
    server = create_mcp_server(engine, settings, writes=writes)
    app: Any = server.streamable_http_app(
        streamable_http_path=path,
        max_request_body_size=settings.max_body_bytes,
        host=host,
        transport_security=_transport_security(settings),
    )
    app = BodyLimitMiddleware(app, settings.max_body_bytes)
    app = AuthMiddleware(
        app,
        api_key=settings.api_key,
        allow_unauthenticated_writes=settings.allow_unauthenticated_writes,
    )
    # Outermost, as in the HTTP server: another host name is refused before anything runs.
    return TrustedHostMiddleware(app, allowed_hosts=list(settings.trusted_hosts()))


def _transport_security(settings: ServerSettings) -> TransportSecuritySettings:
    """The SDK's Host/Origin check, on the host names the HTTP server answers."""
    hosts = settings.trusted_hosts()
    if "*" in hosts:  # an API key guards the server: any host name, as colmax serve
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[pattern for h in hosts for pattern in (h, f"{h}:*")],
        allowed_origins=[
            f"{s}://{h}{p}" for h in hosts for s in ("http", "https") for p in ("", ":*")
        ],
    )
