"""Settings of a Qdrant index: where it lives, how the collection is made, how search runs.

They are given once, when the index is created (``Engine(..., index="qdrant",
index_options={...})``), and recorded in ``manifest.json`` under ``"index"`` so that
``Engine.load(path)`` reconnects the same way. The API key is never recorded: pass it again, or
set ``COLMAX_QDRANT_API_KEY``.

An API key (given, or from the environment) goes only to a server the caller named: at
creation the ``url`` comes from the caller; when an index is opened, the url comes from its
folder, and the key is sent only if the caller names the same server again
(``Engine.load(path, index_options={"url": ...})`` or ``$COLMAX_QDRANT_URL``). Otherwise a folder from
someone else would receive your key. A key never travels over plain ``http://`` to another
machine (loopback addresses excepted).

Modes:

- ``"edge"`` (default with a ``path``): qdrant-edge, Qdrant's engine in this process, keeping
  the shard in ``<path>/qdrant``.
- ``"memory"`` (default with neither ``path`` nor ``url``): qdrant-client's in-memory local mode
  (pure Python, the same client API as a server; :meth:`QdrantBackend.save` writes an edge
  folder). qdrant-client's on-disk local mode is not offered: it stores points with pickle,
  and colmax never loads pickles.
- ``"server"`` (default with a ``url``): a Qdrant server or cluster through qdrant-client.

Examples:
    >>> s = QdrantSettings.from_options(None, {"url": "http://localhost:6333"})
    >>> s.mode, s.collection, "api_key" in s.to_manifest()
    ('server', 'colmax', False)
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from colmax.backends.qdrant.prefetch import PREFETCH_KINDS, PrefetchEncoding
from colmax.errors import IndexFormatError, InvalidInputError

__all__ = ["API_KEY_ENV", "MODES", "URL_ENV", "QdrantSettings", "credential_for", "resolve_api_key"]

#: Environment variable read when no ``api_key`` is passed.
API_KEY_ENV = "COLMAX_QDRANT_API_KEY"
#: Environment variable naming the server ``$COLMAX_QDRANT_API_KEY`` (or a given key) is for,
#: when an index folder's manifest names the url.
URL_ENV = "COLMAX_QDRANT_URL"
MODES = ("edge", "memory", "server")
_COLLECTION = re.compile(r"[A-Za-z0-9_.-]{1,255}")
_DATATYPES = ("float16", "float32")
_POSITIVE = (
    "prefetch_limit",
    "batch_size",
    "shard_number",
    "replication_factor",
    "write_consistency_factor",
)


@dataclass
class QdrantSettings:
    """Every option of ``index="qdrant"`` (see ``docs/qdrant.md``).

    Attributes:
        mode: ``"edge"``, ``"memory"`` or ``"server"`` (see the module docs).
        url: server URL (``"http://host:6333"``), only for ``"server"``.
        collection: collection name (a server holds many; a folder holds one).
        prefer_grpc: talk gRPC (port 6334) instead of REST to a server.
        timeout: seconds per server request.
        shard_number, replication_factor, write_consistency_factor: passed to Qdrant when
            the collection is created (a cluster spreads shards and replicas over its nodes).
        on_disk: keep vectors and payload on disk (memory-mapped) instead of in RAM.
        datatype: stored vector precision: ``"float32"`` (Qdrant's default), or ``"float16"``
            (as the flat index: half the memory, but qdrant-edge's exact scan was 2.5x slower
            with it on an AVX2 CPU without native float16 arithmetic).
        prefetch: ``None`` (exact MaxSim over every document), or a pooling, ``"mean"`` or
            ``"muvera"``, for two-stage search: HNSW over one pooled vector per document
            prefetches ``prefetch_limit`` candidates, Qdrant reranks them by MaxSim.
        pooling: settings of the ``"muvera"`` pooling (``k_sim``, ``d_proj``, ``reps``, ``seed``).
        prefetch_limit: candidates per query in the first stage (at least ``k`` are taken).
        batch_size: documents per upload request.
        max_retries: retries of a failed upload or search request to a server (with backoff).
        show_progress: a progress bar while uploading.
        indexed_fields: metadata keys to build Qdrant payload indexes for (faster filters on
            a server; Qdrant Cloud's strict mode requires them for filtering).
    """

    mode: str = "memory"
    url: str | None = None
    collection: str = "colmax"
    prefer_grpc: bool = False
    timeout: float | None = None
    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    on_disk: bool = False
    datatype: str = "float32"
    prefetch: str | None = None
    pooling: dict[str, Any] = field(default_factory=dict)
    prefetch_limit: int = 256
    batch_size: int = 64
    max_retries: int = 3
    show_progress: bool = False
    indexed_fields: list[str] = field(default_factory=list)

    @classmethod
    def from_options(cls, path: Path | None, options: Mapping[str, Any]) -> QdrantSettings:
        """Validate user options (``api_key`` excluded) for a new index.

        Raises:
            InvalidInputError: unknown option, wrong type or value, or a mode that does not
                fit ``path`` / ``url``.
        """
        known = {f.name for f in fields(cls)}
        unknown = set(options) - known
        if unknown:
            raise InvalidInputError(
                f"unknown qdrant option(s) {sorted(unknown)}; known: {sorted(known | {'api_key'})}"
            )
        values = dict(options)
        if "mode" not in values:
            url = values.get("url")
            values["mode"] = "server" if url else ("edge" if path is not None else "memory")
        settings = cls(**values)
        settings._check(path, InvalidInputError)
        return settings

    @classmethod
    def from_manifest(cls, path: Path, raw: Mapping[str, Any]) -> QdrantSettings:
        """Rebuild from a manifest's ``index`` settings.

        Raises:
            IndexFormatError: the recorded settings are not valid.
        """
        known = {f.name for f in fields(cls)}
        if not set(raw) <= known:
            raise IndexFormatError(
                f"{path}/manifest.json: unknown qdrant settings {sorted(set(raw) - known)}"
            )
        try:
            settings = cls(**dict(raw))
            settings._check(path, IndexFormatError)
        except TypeError as exc:  # pragma: no cover - dataclass signature mismatch
            raise IndexFormatError(f"{path}/manifest.json: invalid qdrant settings") from exc
        return settings

    def to_manifest(self) -> dict[str, Any]:
        """JSON-ready settings for ``manifest.json`` (no secrets are held here)."""
        return asdict(self)

    def prefetch_for(self, dim: int) -> PrefetchEncoding | None:
        """The prefetch pooling, or ``None`` for single-stage exact search."""
        if self.prefetch is None:
            return None
        return PrefetchEncoding.from_settings({"kind": self.prefetch, **self.pooling}, dim)

    def _check(self, path: Path | None, error: type[Exception]) -> None:
        where = f"{path}/manifest.json: " if error is IndexFormatError else ""

        def fail(message: str) -> None:
            raise error(where + message)

        if self.mode not in MODES:
            fail(f"qdrant mode must be one of {MODES}, got {self.mode!r}")
        if (self.mode == "server") != (self.url is not None):
            fail(f"url=... goes with mode='server' (and only with it); got mode={self.mode!r}")
        if self.url is not None and not (
            isinstance(self.url, str) and re.match(r"https?://[^\s/]+", self.url)
        ):
            fail(f"url must look like 'http://host:6333' or 'https://...', got {self.url!r}")
        if self.mode == "edge" and path is None:
            fail(f"mode={self.mode!r} keeps the index in a folder: pass path=...")
        if self.mode == "memory" and path is not None:  # it would write nothing there
            fail(
                "mode='memory' keeps nothing on disk: leave out path=..., or keep the index in "
                "the folder with mode='edge' (the default with a path)"
            )
        if not isinstance(self.collection, str) or not _COLLECTION.fullmatch(self.collection):
            fail(f"collection must be 1-255 of [A-Za-z0-9_.-], got {self.collection!r}")
        if self.datatype not in _DATATYPES:
            fail(f"datatype must be one of {_DATATYPES}, got {self.datatype!r}")
        if self.prefetch is not None and self.prefetch not in PREFETCH_KINDS:
            fail(f"prefetch must be None or one of {PREFETCH_KINDS}, got {self.prefetch!r}")
        if not isinstance(self.pooling, dict) or (self.pooling and self.prefetch != "muvera"):
            fail("pooling={...} settings go with prefetch='muvera'")
        for name in _POSITIVE:
            value = getattr(self, name)
            if value is None and name not in ("prefetch_limit", "batch_size"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                fail(f"{name} must be a positive int, got {value!r}")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            fail(f"max_retries must be an int >= 0, got {self.max_retries!r}")
        if self.max_retries < 0:
            fail(f"max_retries must be an int >= 0, got {self.max_retries!r}")
        if self.timeout is not None and (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, (int, float))
            or self.timeout <= 0
        ):
            fail(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        for name in ("prefer_grpc", "on_disk", "show_progress"):
            if not isinstance(getattr(self, name), bool):
                fail(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.indexed_fields, list) or not all(
            isinstance(f, str) and f for f in self.indexed_fields
        ):
            fail(f"indexed_fields must be a list of metadata keys, got {self.indexed_fields!r}")
        if self.mode != "server" and (
            self.shard_number or self.replication_factor or self.write_consistency_factor
        ):
            fail("shard_number / replication_factor / write_consistency_factor need a server")


def resolve_api_key(api_key: str | None) -> str | None:
    """``api_key``, else ``$COLMAX_QDRANT_API_KEY``, else ``None``."""
    if api_key is not None:
        if not isinstance(api_key, str) or not api_key:
            raise InvalidInputError("api_key must be a non-empty string")
        return api_key
    return os.environ.get(API_KEY_ENV) or None


def credential_for(url: str | None, api_key: str | None, *, url_named: bool) -> str | None:
    """The API key to send to the server at ``url``, or ``None`` to connect without one.

    Args:
        url: the server (from the caller, or read from an index folder's manifest).
        api_key: the key given by the caller (else ``$COLMAX_QDRANT_API_KEY``).
        url_named: whether the caller named ``url`` itself (creating the index, or confirming
            it with ``index_options={"url": ...}``); ``$COLMAX_QDRANT_URL`` naming the same
            server counts too.

    Raises:
        InvalidInputError: a key for a server the caller did not name, or for plain http to
            another machine.
    """
    key = resolve_api_key(api_key)
    if key is None or url is None:
        return None
    if not url_named and not same_server(url, os.environ.get(URL_ENV)):
        raise InvalidInputError(
            f"this index names the Qdrant server {url!r} in its manifest.json, and colmax sends "
            "an API key only to a server you name: pass index_options={'url': ...} (qdrant_url=) "
            "with that url (or set "
            f"${URL_ENV}) if you trust it, or no key"
        )
    parts = urlsplit(url)
    if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
        raise InvalidInputError(
            f"an API key for {url!r} would travel in clear text over plain http: use an "
            "https:// url (or a loopback address for a local server)"
        )
    return key


def same_server(a: str | None, b: str | None) -> bool:
    """Whether two urls name the same scheme, host and port.

    Examples:
        >>> same_server("http://localhost:6333", "http://LOCALHOST:6333/"), same_server(
        ...     "https://a.example", "https://b.example")
        (True, False)
    """
    if not a or not b:
        return False
    x, y = urlsplit(a), urlsplit(b)
    return (x.scheme, x.hostname, _port(x)) == (y.scheme, y.hostname, _port(y))


def _port(parts: Any) -> int | None:
    try:
        return parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return None


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
