"""The server path of QdrantBackend: settings, API key, retries, batched uploads, manifest.

No Qdrant server can run here. The network boundary (``qdrant_client.QdrantClient``) is
replaced by a stand-in that wraps qdrant-client's in-memory local mode, speaks the same API,
records how it was constructed and can fail the first requests with a transient error; the
backend and driver code above it run unchanged.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import pytest
import torch

pytest.importorskip("qdrant_client")

import qdrant_client
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from colmax.backends.qdrant import QdrantBackend
from colmax.backends.qdrant.client import (
    QdrantConnectionError,
    is_transient,
    with_retries,
)
from colmax.backends.qdrant.settings import API_KEY_ENV, QdrantSettings, resolve_api_key
from colmax.errors import IndexFormatError, InvalidInputError
from colmax.store.manifest import Manifest

RealClient = qdrant_client.QdrantClient
DIM = 8
URL = "https://qdrant.example:6333"  # a key never goes over plain http to another machine
pytestmark = pytest.mark.filterwarnings("ignore:(Payload indexes|Local mode):UserWarning")


class StandIn:
    """qdrant-client's in-memory mode behind the constructor signature of a server client."""

    servers: ClassVar[dict[str, Any]] = {}  # url -> in-memory client (survives reconnects)
    made: ClassVar[list[dict[str, Any]]] = []
    failures = 0  # the next N upserts fail with a transient error
    upserts = 0

    def __init__(self, **kwargs: Any) -> None:
        StandIn.made.append(kwargs)
        url = kwargs["url"]
        if url not in StandIn.servers:
            StandIn.servers[url] = RealClient(":memory:")
        self._inner = StandIn.servers[url]

    def upsert(self, *args: Any, **kwargs: Any) -> Any:
        StandIn.upserts += 1
        if StandIn.failures:
            StandIn.failures -= 1
            raise ResponseHandlingException(httpx.ConnectError("connection reset"))
        return self._inner.upsert(*args, **kwargs)

    def close(self) -> None:
        """The shared in-memory 'server' stays up."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _create(path, dim, encoder_config=None, **options):  # type: ignore[no-untyped-def]
    """``QdrantBackend.create`` with the registry's (folder, manifest, options) signature."""
    from colmax.backends.base import BackendOptions
    from colmax.store.manifest import Manifest

    manifest = Manifest(dim=dim, index_kind="qdrant", encoder=encoder_config)
    return QdrantBackend.create(path, manifest, BackendOptions(options))


def _open(path, manifest, **options):  # type: ignore[no-untyped-def]
    from colmax.backends.base import BackendOptions

    return QdrantBackend.open(path, manifest, BackendOptions(options))


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> type[StandIn]:
    monkeypatch.setattr(qdrant_client, "QdrantClient", StandIn)
    StandIn.servers, StandIn.made, StandIn.failures, StandIn.upserts = {}, [], 0, 0
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    return StandIn


def vectors(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        v = rng.normal(size=(int(rng.integers(1, 6)), DIM)).astype(np.float32)
        out.append(v / np.linalg.norm(v, axis=1, keepdims=True))
    return out


def test_server_mode_round_trip_with_retries_and_batches(
    server: type[StandIn], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("colmax.backends.qdrant.client.time.sleep", lambda s: None)
    backend = _create(
        tmp_path / "idx",
        DIM,
        encoder_config=None,
        url=URL,
        api_key="secret-key",
        collection="docs",
        batch_size=4,
        max_retries=2,
        shard_number=3,
        replication_factor=2,
        indexed_fields=["year"],
    )
    assert server.made[-1]["api_key"] == "secret-key" and server.made[-1]["url"] == URL
    server.failures = 2  # the first upload request fails twice, then succeeds
    ids = [f"d{i}" for i in range(10)]
    vecs = vectors(10)
    backend.upsert(ids, ids, [{"year": 2000 + i} for i in range(10)], vecs)
    assert server.upserts == 2 + 3  # ceil(10 / 4) batches, one retried twice
    assert len(backend) == 10 and backend.ids() == ids
    hits = backend.search([torch.from_numpy(vecs[4])], k=3, filter={"year": {"$gte": 2004}})[0]
    assert hits[0].id == "d4" and all(h.metadata["year"] >= 2004 for h in hits)
    backend.close()

    raw = (tmp_path / "idx" / "manifest.json").read_text()
    assert "secret-key" not in raw
    settings = json.loads(raw)["index"]
    assert settings["url"] == URL and settings["collection"] == "docs"
    assert settings["shard_number"] == 3 and settings["replication_factor"] == 2

    # Reopen from the folder: the key comes from the environment this time, and goes to the
    # manifest's url only once the caller names that server.
    monkeypatch.setenv(API_KEY_ENV, "env-key")
    with pytest.raises(InvalidInputError, match="qdrant_url"):
        _open(tmp_path / "idx", Manifest.read(tmp_path / "idx"))
    reopened = _open(tmp_path / "idx", Manifest.read(tmp_path / "idx"), url=URL)
    assert server.made[-1]["api_key"] == "env-key"
    assert reopened.ids() == ids
    # save() of a server index writes only the manifest: the data stays on the server.
    copy = reopened.save(tmp_path / "copy")
    assert sorted(p.name for p in copy.iterdir()) == ["manifest.json"]
    reopened.close()


def test_upload_gives_up_after_max_retries(
    server: type[StandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("colmax.backends.qdrant.client.time.sleep", lambda s: None)
    backend = _create(None, DIM, encoder_config=None, url=URL, max_retries=1)
    server.failures = 5
    with pytest.raises(QdrantConnectionError, match="after 2 attempts"):
        backend.upsert(["a"], ["a"], [{}], vectors(1))
    assert server.upserts == 2


def test_existing_collection_is_reused_or_refused(server: type[StandIn]) -> None:
    first = _create(None, DIM, encoder_config=None, url=URL)
    first.upsert(["a"], ["a"], [{}], vectors(1))
    again = _create(None, DIM, encoder_config=None, url=URL)
    assert again.ids() == ["a"]
    with pytest.raises(IndexFormatError, match="16-d MaxSim"):
        _create(None, 16, encoder_config=None, url=URL)
    with pytest.raises(IndexFormatError, match="pooled vectors"):
        _create(None, DIM, encoder_config=None, url=URL, prefetch="mean")


def test_unreachable_server_fails_fast_with_a_clear_error() -> None:
    start = time.perf_counter()
    with pytest.raises(QdrantConnectionError, match="connect failed after 1 attempts"):
        _create(None, DIM, encoder_config=None, url="http://127.0.0.1:9", max_retries=0)
    assert time.perf_counter() - start < 10


def test_with_retries_only_retries_transient_errors() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("reset")
        return "ok"

    assert with_retries(flaky, 3, "x", base_delay=0) == "ok" and len(calls) == 3

    def broken() -> None:
        calls.append(1)
        raise ValueError("bad request")

    calls.clear()
    with pytest.raises(ValueError, match="bad request"):
        with_retries(broken, 3, "x", base_delay=0)
    assert len(calls) == 1


@pytest.mark.parametrize(("status", "transient"), [(503, True), (429, True), (400, False)])
def test_http_statuses(status: int, transient: bool) -> None:
    exc = UnexpectedResponse(status, "x", b"", httpx.Headers())
    assert is_transient(exc) is transient


def test_settings_defaults_and_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert QdrantSettings.from_options(None, {}).mode == "memory"
    assert QdrantSettings.from_options(tmp_path, {}).mode == "edge"
    assert QdrantSettings.from_options(tmp_path, {"url": URL}).mode == "server"
    for bad, message in [
        ({"url": "qdrant:6333"}, "url must look like"),
        ({"mode": "edge", "url": URL}, "url=... goes with mode='server'"),
        ({"collection": "a b"}, "collection must be"),
        ({"batch_size": 0}, "batch_size must be a positive int"),
        ({"prefetch": "max"}, "prefetch must be None or one of"),
        ({"pooling": {"reps": 2}}, "go with prefetch='muvera'"),
        ({"timeout": -1}, "timeout must be a positive number"),
        ({"indexed_fields": "year"}, "indexed_fields must be a list"),
    ]:
        with pytest.raises(InvalidInputError, match=message):
            QdrantSettings.from_options(None, bad)
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert resolve_api_key(None) == "from-env"
    assert resolve_api_key("given") == "given"
    with pytest.raises(InvalidInputError):
        resolve_api_key("")
