"""Server settings: authentication, request limits and chunking (plain data, no FastAPI)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from colmax import limits
from colmax.errors import InvalidInputError
from colmax.validation import check_positive_int

__all__ = ["LOOPBACK_HOSTS", "ServerSettings"]

#: The host names a keyless server answers by default.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


@dataclass(frozen=True)
class ServerSettings:
    """How the HTTP API behaves.

    Attributes:
        api_key: when set, every request needs ``Authorization: Bearer <api_key>``.
        allow_unauthenticated_writes: without ``api_key``, accept ``POST``/``DELETE
            /documents`` anyway (otherwise they are refused with 403).
        max_body_bytes: larger request bodies are refused with 413 before they are parsed.
        max_k: the largest ``k`` a search or rerank may ask for (422 above).
        max_queries: queries per ``/search`` request.
        max_documents: documents per ``POST /documents`` and ``/rerank``, ids per ``DELETE``.
        max_text_chars: characters per query or document text.
        max_hits: hits one search may ask for, ``len(queries) * k`` (422 above).
        max_response_bytes: a larger response is refused (422; ``include_text: false`` leaves
            the texts out).
        request_timeout: seconds a read (search, rerank, get, info) may run; its work is then
            stopped (503), as it is when the client disconnects. Writes always finish.
        max_connections: connections ``colmax serve`` holds open at once (uvicorn's
            ``limit_concurrency``); more get 503 at once.
        chunk_tokens: split added documents into chunks of this many tokens (``None``: no).
        chunk_overlap: tokens shared by neighbouring chunks.
        search_threads: reads (search, rerank, info) running at the same time; more wait.
        allowed_hosts: host names (the ``Host`` header, port left out) the server answers;
            others get 400. ``None``: any host with an API key; without one only
            :data:`LOOPBACK_HOSTS`, so a web page that rebinds its DNS name to 127.0.0.1
            cannot reach a keyless server (DNS rebinding). ``("*",)`` allows every host.

    Examples:
        >>> ServerSettings(api_key="s3cret", max_k=100).writes_enabled
        True
        >>> ServerSettings().writes_enabled
        False
    """

    api_key: str | None = None
    allow_unauthenticated_writes: bool = False
    max_body_bytes: int = limits.MAX_BODY_BYTES
    max_k: int = limits.MAX_K
    max_queries: int = limits.MAX_QUERIES
    max_documents: int = limits.MAX_DOCUMENTS
    max_text_chars: int = limits.MAX_TEXT_CHARS
    max_hits: int = limits.MAX_HITS
    max_response_bytes: int = limits.MAX_RESPONSE_BYTES
    request_timeout: float = limits.REQUEST_TIMEOUT_S
    max_connections: int = limits.MAX_CONNECTIONS
    chunk_tokens: int | None = None
    chunk_overlap: int = 0
    search_threads: int = 8
    allowed_hosts: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.api_key is not None and not self.api_key.strip():
            raise InvalidInputError(
                "the API key is empty: pass a non-empty --api-key / COLMAX_API_KEY, or none"
            )
        for name in (
            "max_body_bytes",
            "max_k",
            "max_queries",
            "max_documents",
            "max_text_chars",
            "max_hits",
            "max_response_bytes",
            "max_connections",
            "search_threads",
        ):
            check_positive_int(getattr(self, name), name)
        timeout = self.request_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise InvalidInputError(
                f"request_timeout must be a positive number of seconds, got {timeout!r}"
            )
        hosts = self.allowed_hosts
        if hosts is not None and (
            isinstance(hosts, str) or not hosts or not all(isinstance(h, str) and h for h in hosts)
        ):
            raise InvalidInputError(
                f"allowed_hosts must be a non-empty list of host names, got {hosts!r}"
            )

    def trusted_hosts(self) -> tuple[str, ...]:
        """The ``Host`` names to answer (see ``allowed_hosts``)."""
        if self.allowed_hosts is not None:
            return tuple(self.allowed_hosts)
        return ("*",) if self.api_key is not None else LOOPBACK_HOSTS

    @property
    def writes_enabled(self) -> bool:
        """Whether ``POST``/``DELETE /documents`` can succeed at all."""
        return self.api_key is not None or self.allow_unauthenticated_writes

    def public(self) -> dict[str, Any]:
        """The settings without the key (for ``GET /info``)."""
        out = asdict(self)
        out.pop("api_key")
        out["auth"] = self.api_key is not None
        return out
