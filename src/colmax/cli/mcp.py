"""``colmax mcp DIR``: the index as MCP tools, over stdio (default) or streamable HTTP."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from colmax.cli._common import add_device_option, add_download_option, print_err
from colmax.cli._server_options import (
    API_KEY_ENV,
    add_address_options,
    add_auth_options,
    add_limit_options,
    http_path,
    is_loopback,
    settings_from,
)

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``mcp`` parser."""
    parser = subparsers.add_parser(
        "mcp",
        help="serve an index as MCP tools for agents (stdio, or streamable HTTP)",
        description="Serve DIR to MCP clients (Claude Desktop, IDEs, agent frameworks) as the "
        "tools search, rerank and get, plus add and delete with --allow-writes. By default "
        "over standard input and output, which is how a desktop client launches it; with "
        "--http over streamable HTTP at http://HOST:PORT/mcp, with the same API key "
        f"(--api-key or ${API_KEY_ENV}) and limits as 'colmax serve': writes over HTTP also "
        "need the key or --allow-unauthenticated-writes. Needs: pip install 'colmax[mcp]'.",
    )
    parser.add_argument("dir", metavar="DIR", help="the index folder")
    parser.add_argument(
        "--allow-writes", action="store_true", help="add the tools add and delete (upsert, delete)"
    )
    parser.add_argument("--http", action="store_true", help="streamable HTTP instead of stdio")
    add_address_options(parser, when="with --http: ")
    parser.add_argument(
        "--path",
        type=http_path,
        default="/mcp",
        help="with --http: endpoint, starting with '/' (default /mcp)",
    )
    add_auth_options(parser, "--allow-writes over HTTP")
    add_limit_options(parser, "add, delete, get or rerank call")
    add_device_option(parser)
    add_download_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Open the index and serve it until the client disconnects (stdio) or Ctrl-C (HTTP)."""
    try:
        from colmax.mcp.server import create_mcp_server, streamable_http_app
    except ImportError as exc:
        print_err(f"colmax mcp: error: {exc}; pip install 'colmax[mcp]'")
        return 2
    from colmax.engine import Engine

    settings = settings_from(args)
    if args.http and args.allow_writes and not settings.writes_enabled:
        print_err(
            "colmax mcp: error: --allow-writes over HTTP needs an API key (--api-key or "
            f"${API_KEY_ENV}) or --allow-unauthenticated-writes"
        )
        return 2
    with Engine.load(args.dir, device=args.device, download=args.download) as engine:
        if not args.http:
            # stdout carries the protocol: every message of ours goes to stderr.
            print_err(f"colmax mcp: {len(engine)} documents from {args.dir} on stdio")
            create_mcp_server(engine, settings, writes=args.allow_writes).run("stdio")
            return 0
        import uvicorn

        if settings.api_key is None and not is_loopback(args.host):
            print_err(
                f"colmax mcp: warning: {args.host} is reachable from other machines and there "
                f"is no API key: anyone who can connect can search (set ${API_KEY_ENV})"
            )
        app = streamable_http_app(
            engine, settings, writes=args.allow_writes, path=args.path, host=args.host
        )
        print_err(
            f"colmax mcp: {len(engine)} documents from {args.dir}; auth "
            f"{'on' if settings.api_key else 'off'}; writes "
            f"{'on' if args.allow_writes else 'off'}; http://{args.host}:{args.port}{args.path}"
        )
        sys.stderr.flush()
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level="debug" if args.verbose else "warning",
            timeout_graceful_shutdown=5,
        )
    return 0
