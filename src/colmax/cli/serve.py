"""``colmax serve DIR``: the HTTP API over one index (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
import ipaddress
import os
from typing import Any

from colmax.cli._common import add_device_option, print_err

__all__ = ["API_KEY_ENV", "register", "run"]

#: Environment variable read for the API key when ``--api-key`` is not given.
API_KEY_ENV = "COLMAX_API_KEY"


def register(subparsers: Any) -> None:
    """Add the ``serve`` parser."""
    from colmax.server.settings import ServerSettings

    d = ServerSettings()
    parser = subparsers.add_parser(
        "serve",
        help="serve an index over HTTP (search, rerank, add, delete)",
        description="Serve DIR over HTTP: GET /health, GET /info, POST /search, POST /rerank, "
        "POST /documents, DELETE /documents, GET /documents/{id}; OpenAPI at /openapi.json. "
        f"With an API key (--api-key or ${API_KEY_ENV}, preferred: command lines are visible "
        "to other users) every request needs 'Authorization: Bearer KEY'; without one, write "
        "routes are refused unless --allow-unauthenticated-writes. Writes are committed to DIR "
        "before they are answered. Needs: pip install 'colmax[server]'.",
    )
    parser.add_argument("dir", metavar="DIR", help="the index folder")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--api-key", help=f"bearer key clients must send (default: ${API_KEY_ENV})")
    parser.add_argument(
        "--allow-unauthenticated-writes",
        action="store_true",
        help="without an API key, accept POST/DELETE /documents anyway",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        dest="allowed_hosts",
        help="a Host header name to answer (repeatable; '*' for any). Default: any with an "
        "API key; without one, only localhost, 127.0.0.1, ::1 and the --host address, so a web "
        "page rebinding its DNS name to this machine cannot use the server",
    )
    limits = parser.add_argument_group("limits (larger requests get 413 or 422)")
    limits.add_argument(
        "--max-body-bytes", type=int, default=d.max_body_bytes, help="default %(default)s"
    )
    limits.add_argument("--max-k", type=int, default=d.max_k, help="default %(default)s")
    limits.add_argument(
        "--max-queries", type=int, default=d.max_queries, help="per /search (default %(default)s)"
    )
    limits.add_argument(
        "--max-documents",
        type=int,
        default=d.max_documents,
        help="per /documents or /rerank request (default %(default)s)",
    )
    limits.add_argument(
        "--max-text-chars",
        type=int,
        default=d.max_text_chars,
        help="per query or document text (default %(default)s)",
    )
    parser.add_argument(
        "--chunk-tokens",
        type=int,
        metavar="N",
        help="split documents added over HTTP into chunks of N tokens (as 'colmax index')",
    )
    parser.add_argument("--chunk-overlap", type=int, default=0, metavar="M", help="default 0")
    parser.add_argument(
        "--search-threads",
        type=int,
        default=d.search_threads,
        help="searches computed at the same time (default %(default)s)",
    )
    parser.add_argument("--no-access-log", action="store_true", help="do not log every request")
    add_device_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Open the index, build the app and run uvicorn until interrupted."""
    try:
        import uvicorn

        from colmax.server import create_app
    except ImportError as exc:
        print_err(f"colmax serve: error: {exc}; pip install 'colmax[server]'")
        return 2
    from colmax.engine import Engine
    from colmax.server.settings import ServerSettings

    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV)
    settings = ServerSettings(
        allowed_hosts=_allowed_hosts(args.allowed_hosts, args.host, api_key),
        api_key=api_key,
        allow_unauthenticated_writes=args.allow_unauthenticated_writes,
        max_body_bytes=args.max_body_bytes,
        max_k=args.max_k,
        max_queries=args.max_queries,
        max_documents=args.max_documents,
        max_text_chars=args.max_text_chars,
        chunk_tokens=args.chunk_tokens,
        chunk_overlap=args.chunk_overlap,
        search_threads=args.search_threads,
    )
    if api_key is None and not _is_loopback(args.host):
        print_err(
            f"colmax serve: warning: {args.host} is reachable from other machines and there "
            f"is no API key: anyone who can connect can search (set ${API_KEY_ENV}); only "
            f"requests for the host names {list(settings.trusted_hosts())} are answered "
            "(--allowed-host adds one)"
        )
    with Engine.load(args.dir, device=args.device) as engine:
        app = create_app(engine, settings)
        writes = "on" if settings.writes_enabled else "off (no API key)"
        print_err(
            f"colmax serve: {len(engine)} documents from {args.dir}; auth "
            f"{'on' if api_key else 'off'}; writes {writes}; http://{args.host}:{args.port}/docs"
        )
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level="debug" if args.verbose else "info",
            access_log=not args.no_access_log,
            timeout_graceful_shutdown=30,
        )
    return 0


def _allowed_hosts(
    given: list[str] | None, bind: str, api_key: str | None
) -> tuple[str, ...] | None:
    """``--allowed-host`` values, or ``None`` (the settings' default) when there are none.

    Without a key and bound to one specific non-loopback address, that address is allowed too
    (clients then use it as the Host); a wildcard bind (``0.0.0.0``) adds nothing.
    """
    from colmax.server.settings import LOOPBACK_HOSTS

    if given:
        return tuple(given)
    if api_key is not None or _is_loopback(bind) or bind in ("0.0.0.0", "::", ""):
        return None
    return (*LOOPBACK_HOSTS, f"[{bind}]" if ":" in bind else bind)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
