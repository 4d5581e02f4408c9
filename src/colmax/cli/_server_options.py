"""Options shared by the two network doors, ``colmax serve`` (HTTP) and ``colmax mcp`` (MCP):
the API key, the request limits, and the settings object built from them."""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import socket
from typing import TYPE_CHECKING

from colmax import limits

if TYPE_CHECKING:
    from colmax.server.settings import ServerSettings

__all__ = [
    "API_KEY_ENV",
    "add_address_options",
    "add_auth_options",
    "add_limit_options",
    "allowed_hosts_for",
    "host_address",
    "http_path",
    "is_loopback",
    "port_number",
    "positive_seconds",
    "settings_from",
]

#: Environment variable read for the API key when ``--api-key`` is not given.
API_KEY_ENV = "COLMAX_API_KEY"


def add_address_options(parser: argparse.ArgumentParser, when: str = "") -> None:
    """``--host`` and ``--port`` (``when`` prefixes their help, e.g. ``"with --http: "``)."""
    parser.add_argument(
        "--host",
        type=host_address,
        default="127.0.0.1",
        help=f"{when}address or host name to bind (default 127.0.0.1: this machine only; "
        "0.0.0.0 or :: for every interface)",
    )
    parser.add_argument(
        "--port",
        type=port_number,
        default=8000,
        help=f"{when}TCP port, 1 to 65535 (default %(default)s)",
    )


def add_auth_options(parser: argparse.ArgumentParser, writes: str) -> None:
    """``--api-key`` and ``--allow-unauthenticated-writes`` (``writes`` names what it allows)."""
    parser.add_argument("--api-key", help=f"bearer key clients must send (default: ${API_KEY_ENV})")
    parser.add_argument(
        "--allow-unauthenticated-writes",
        action="store_true",
        help=f"without an API key, accept {writes} anyway",
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


def add_limit_options(parser: argparse.ArgumentParser, per_request: str) -> None:
    """The request limits of :class:`~colmax.server.settings.ServerSettings`, same defaults."""
    from colmax.server.settings import ServerSettings

    d = ServerSettings()
    group = parser.add_argument_group("limits (larger requests get 413 or 422)")
    group.add_argument(
        "--max-body-bytes", type=int, default=d.max_body_bytes, help="default %(default)s"
    )
    group.add_argument("--max-k", type=int, default=d.max_k, help="default %(default)s")
    group.add_argument(
        "--max-queries", type=int, default=d.max_queries, help="per /search (default %(default)s)"
    )
    group.add_argument(
        "--max-documents",
        type=int,
        default=d.max_documents,
        help=f"per {per_request} (default %(default)s)",
    )
    group.add_argument(
        "--max-text-chars",
        type=int,
        default=d.max_text_chars,
        help="per query or document text (default %(default)s)",
    )
    group.add_argument(
        "--max-hits",
        type=int,
        default=d.max_hits,
        help="queries x k of one search (default %(default)s)",
    )
    group.add_argument(
        "--max-response-bytes",
        type=int,
        default=d.max_response_bytes,
        help="larger responses are refused (default %(default)s)",
    )
    group.add_argument(
        "--request-timeout",
        type=positive_seconds,
        default=d.request_timeout,
        metavar="SECONDS",
        help="a read's work is stopped after this (default %(default)s)",
    )
    parser.add_argument(
        "--search-threads",
        type=int,
        default=d.search_threads,
        help="searches computed at the same time (default %(default)s)",
    )


def port_number(text: str) -> int:
    """An argparse type: a TCP port to listen on, 1 to 65535.

    0 (any free port) is refused too: the address the commands print would be wrong, and
    ``colmax mcp`` would never say which port it got.

    Examples:
        >>> port_number("8000")
        8000
    """
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {text!r}")
    return value


def host_address(text: str) -> str:
    """An argparse type: an address or host name this machine can bind (checked now, so that
    a typo fails before the model is loaded); ``""`` binds every interface, as ``0.0.0.0``.

    Examples:
        >>> host_address("127.0.0.1")
        '127.0.0.1'
    """
    if any(c.isspace() or not c.isprintable() for c in text):
        raise argparse.ArgumentTypeError(
            f"must be an address or host name, without spaces or control characters, got {text!r}"
        )
    if text.startswith("[") and text.endswith("]"):
        raise argparse.ArgumentTypeError(
            f"an IPv6 address goes without brackets: {text[1:-1]!r}, got {text!r}"
        )
    if text:
        try:
            socket.getaddrinfo(text, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except (socket.gaierror, UnicodeError) as exc:
            reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
            raise argparse.ArgumentTypeError(
                f"{text!r} cannot be resolved to an address to bind ({reason})"
            ) from None
    return text


#: What an endpoint path may not hold besides whitespace and control characters: a client
#: could never reach it (``?`` starts the query, ``#`` the fragment).
_PATH_REFUSED = "?#"


def http_path(text: str) -> str:
    """An argparse type: an HTTP endpoint path, ``/`` and then no whitespace, control
    character, ``?`` or ``#``.

    Examples:
        >>> http_path("/mcp")
        '/mcp'
    """
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"must start with '/' (as in /mcp), got {text!r}")
    if any(c.isspace() or not c.isprintable() or c in _PATH_REFUSED for c in text):
        raise argparse.ArgumentTypeError(
            f"must not hold spaces, control characters, '?' or '#', got {text!r}"
        )
    return text


def positive_seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds (``inf`` and ``nan`` refused).

    Examples:
        >>> positive_seconds("2.5")
        2.5
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"must be a positive, finite number of seconds, got {text!r}"
        )
    return value


def settings_from(args: argparse.Namespace) -> ServerSettings:
    """The settings the parsed options describe (the key from ``$COLMAX_API_KEY`` if not given).

    Raises:
        InvalidInputError: a limit that is not a positive integer, or an empty key.
    """
    from colmax.server.settings import ServerSettings

    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV)
    return ServerSettings(
        api_key=api_key,
        allowed_hosts=allowed_hosts_for(
            getattr(args, "allowed_hosts", None), getattr(args, "host", "127.0.0.1"), api_key
        ),
        allow_unauthenticated_writes=args.allow_unauthenticated_writes,
        max_body_bytes=args.max_body_bytes,
        max_k=args.max_k,
        max_queries=args.max_queries,
        max_documents=args.max_documents,
        max_text_chars=args.max_text_chars,
        max_hits=args.max_hits,
        max_response_bytes=args.max_response_bytes,
        request_timeout=args.request_timeout,
        max_connections=getattr(args, "max_connections", limits.MAX_CONNECTIONS),
        chunk_tokens=getattr(args, "chunk_tokens", None),
        chunk_overlap=getattr(args, "chunk_overlap", 0),
        search_threads=args.search_threads,
    )


def allowed_hosts_for(
    given: list[str] | None, bind: str, api_key: str | None
) -> tuple[str, ...] | None:
    """``--allowed-host`` values, or ``None`` (the settings' default) when there are none.

    Without a key and bound to one specific non-loopback address, that address is allowed too
    (clients then use it as the Host); a wildcard bind (``0.0.0.0``) adds nothing.

    Examples:
        >>> allowed_hosts_for(None, "10.0.0.5", None)[-1]
        '10.0.0.5'
    """
    from colmax.server.settings import LOOPBACK_HOSTS

    if given:
        return tuple(given)
    if api_key is not None or is_loopback(bind) or bind in ("0.0.0.0", "::", ""):
        return None
    return (*LOOPBACK_HOSTS, f"[{bind}]" if ":" in bind else bind)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only.

    Examples:
        >>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0")
        (True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
