"""``colmax serve DIR``: the HTTP API over one index (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
from typing import Any

from colmax import limits
from colmax.cli._common import (
    _non_negative_int,
    _positive_int,
    add_device_option,
    add_download_option,
    add_query_runtime_option,
    print_err,
)
from colmax.cli._server_options import (
    API_KEY_ENV,
    add_address_options,
    add_auth_options,
    add_limit_options,
    is_loopback,
    settings_from,
)
from colmax.errors import InvalidInputError

__all__ = ["API_KEY_ENV", "register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``serve`` parser."""
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
    add_address_options(parser)
    add_auth_options(parser, "POST/DELETE /documents")
    add_limit_options(parser, "/documents or /rerank request")
    parser.add_argument(
        "--chunk-tokens",
        type=_positive_int,
        metavar="N",
        help="split documents added over HTTP into chunks of N tokens (default: as the index "
        "records, from 'colmax index --chunk-tokens')",
    )
    parser.add_argument(
        "--chunk-overlap",
        type=_non_negative_int,
        default=0,
        metavar="M",
        help="tokens shared by neighbouring chunks, below N (default 0)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=limits.MAX_CONNECTIONS,
        help="connections held open at once; more get 503 (default %(default)s)",
    )
    parser.add_argument("--no-access-log", action="store_true", help="do not log every request")
    add_device_option(parser)
    # A server loads once and answers many queries: the export's seconds pay off.
    add_query_runtime_option(parser, default="auto")
    add_download_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Open the index, build the app and run uvicorn until interrupted."""
    try:
        import uvicorn

        from colmax.server import create_app
    except ImportError as exc:
        print_err(f"colmax serve: error: {exc}; pip install 'colmax[server]'")
        return 2
    from colmax.encoders.onnx_runtime import resolve_query_runtime
    from colmax.engine import Engine

    settings = settings_from(args)
    if args.chunk_tokens is not None and args.chunk_overlap >= args.chunk_tokens:
        # Checked by the engine too, but only once the model is loaded.
        raise InvalidInputError(
            f"--chunk-overlap must be below --chunk-tokens ({args.chunk_tokens}), "
            f"got {args.chunk_overlap}"
        )
    api_key = settings.api_key
    if api_key is None and not is_loopback(args.host):
        print_err(
            f"colmax serve: warning: {args.host} is reachable from other machines and there "
            f"is no API key: anyone who can connect can search (set ${API_KEY_ENV}); only "
            f"requests for the host names {list(settings.trusted_hosts())} are answered "
            "(--allowed-host adds one)"
        )
    chunking = {"chunk_tokens": args.chunk_tokens, "chunk_overlap": args.chunk_overlap}
    with Engine.load(
        args.dir,
        device=args.device,
        download=args.download,
        query_runtime=resolve_query_runtime(args.query_runtime, default="auto"),
        **chunking,
    ) as engine:
        app = create_app(engine, settings)
        writes = "on" if settings.writes_enabled else "off (no API key)"
        runtime = getattr(engine.encoder, "query_runtime", "torch")
        print_err(
            f"colmax serve: {len(engine)} documents from {args.dir}; auth "
            f"{'on' if api_key else 'off'}; writes {writes}; queries encoded by {runtime}; "
            f"http://{args.host}:{args.port}/docs"
        )
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level="debug" if args.verbose else "info",
            access_log=not args.no_access_log,
            timeout_graceful_shutdown=30,
            limit_concurrency=settings.max_connections,
        )
    return 0
