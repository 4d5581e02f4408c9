"""The qdrant-client driver: a Qdrant server or cluster, or the client's local mode.

Against a server, uploads go in batches of ``batch_size`` points, each request retried
``max_retries`` times with exponential backoff on transient failures (connection errors,
timeouts, HTTP 408/429/5xx, gRPC UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED), with an
optional progress bar. Shard and replication settings are passed when the collection is
created; an existing collection is reused when its vectors fit, refused otherwise.

The in-memory local mode (``QdrantClient(":memory:")``) runs the same client API in pure
Python, which is how this driver is tested here (no server binary can run). The on-disk local
mode (``QdrantClient(path=...)``) is not used: it stores points with pickle.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from colmax.backends.qdrant.driver import POOLED, TOKENS, Driver, Found, PointData, missing_extra
from colmax.backends.qdrant.filters import Cond, to_qdrant
from colmax.backends.qdrant.prefetch import PrefetchEncoding
from colmax.backends.qdrant.settings import QdrantSettings
from colmax.errors import ColmaxError, IndexFormatError

__all__ = ["ClientDriver", "QdrantConnectionError", "is_transient", "with_retries"]

logger = logging.getLogger(__name__)

_SCROLL_PAGE = 1024
_RETRY_HTTP = frozenset({408, 429, 500, 502, 503, 504})
_RETRY_GRPC = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"})
T = TypeVar("T")


class QdrantConnectionError(ColmaxError, ConnectionError):
    """The Qdrant server could not be reached or kept failing after retries."""


def _client_module() -> Any:
    try:
        import qdrant_client
    except ImportError as exc:
        raise missing_extra("qdrant-client", exc) from exc
    return qdrant_client


def is_transient(exc: BaseException) -> bool:
    """Whether a failed request is worth retrying (network trouble, overload, timeouts)."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(exc, (ResponseHandlingException, TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code in _RETRY_HTTP
    code = getattr(exc, "code", None)
    if callable(code):  # grpc.RpcError
        try:
            return getattr(code(), "name", "") in _RETRY_GRPC
        except Exception:
            return False
    return False


def _is_refusal(exc: BaseException) -> bool:
    """An HTTP error answer of the server (qdrant-client raises it as it is)."""
    from qdrant_client.http.exceptions import UnexpectedResponse

    return isinstance(exc, UnexpectedResponse)


def with_retries(
    call: Callable[[], T],
    retries: int,
    what: str,
    *,
    transient: Callable[[BaseException], bool] = is_transient,
    base_delay: float = 0.5,
) -> T:
    """Run ``call``; on a transient failure wait ``base_delay * 2**attempt`` and try again.

    Raises:
        QdrantConnectionError: still failing after ``retries`` retries.
    """
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as exc:
            if not transient(exc):
                if _is_refusal(exc):  # 401, 403, 404 (not a Qdrant server): a ColmaxError
                    raise QdrantConnectionError(f"{what} failed: {exc}") from exc
                raise
            if attempt == retries:
                raise QdrantConnectionError(
                    f"{what} failed after {retries + 1} attempts: {exc}"
                ) from exc
            delay = base_delay * 2**attempt
            logger.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


class ClientDriver(Driver):
    """One collection through qdrant-client. Use :meth:`connect`."""

    def __init__(self, client: Any, settings: QdrantSettings) -> None:
        self._client = client
        self._models = _client_module().models
        self._settings = settings
        self._server = settings.mode == "server"
        self._name = settings.collection

    @classmethod
    def connect(
        cls,
        folder: Path | None,
        dim: int,
        settings: QdrantSettings,
        pooling: PrefetchEncoding | None,
        api_key: str | None,
        *,
        create: bool,
    ) -> ClientDriver:
        """Connect, and create the collection when it is missing and ``create`` is true.

        Raises:
            QdrantConnectionError: the server cannot be reached.
            IndexFormatError: the collection is missing (``create=False``) or its vectors do
                not fit (dimension, MaxSim multivector, pooled vector).
        """
        qc = _client_module()
        if settings.mode == "server":
            timeout = None if settings.timeout is None else max(1, round(settings.timeout))
            client = qc.QdrantClient(
                url=settings.url,
                api_key=api_key,
                prefer_grpc=settings.prefer_grpc,
                timeout=timeout,
                check_compatibility=False,  # no request at construction; failures surface below
            )
        else:
            client = qc.QdrantClient(location=":memory:")
        driver = cls(client, settings)
        try:
            exists = driver._retry(lambda: client.collection_exists(driver._name), "connect")
            if exists:
                driver._check_collection(dim, pooling)
            elif create:
                driver._create_collection(dim, pooling)
            else:
                raise IndexFormatError(
                    f"collection {driver._name!r} does not exist on {driver._where()}"
                )
        except BaseException:
            client.close()
            raise
        return driver

    # ------------------------------------------------------------------ collection
    def _create_collection(self, dim: int, pooling: PrefetchEncoding | None) -> None:
        m, s = self._models, self._settings
        vectors = {
            TOKENS: m.VectorParams(
                size=dim,
                distance=m.Distance.DOT,  # unit vectors: dot is cosine
                multivector_config=m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM),
                hnsw_config=m.HnswConfigDiff(m=0),  # no graph: MaxSim scans token vectors
                datatype=m.Datatype.FLOAT16 if s.datatype == "float16" else m.Datatype.FLOAT32,
                on_disk=s.on_disk or None,
            )
        }
        if pooling is not None:
            vectors[POOLED] = m.VectorParams(
                size=pooling.size, distance=m.Distance.DOT, on_disk=s.on_disk or None
            )
        self._retry(
            lambda: self._client.create_collection(
                self._name,
                vectors_config=vectors,
                shard_number=s.shard_number,
                replication_factor=s.replication_factor,
                write_consistency_factor=s.write_consistency_factor,
                on_disk_payload=s.on_disk or None,
            ),
            "create collection",
        )

    def _check_collection(self, dim: int, pooling: PrefetchEncoding | None) -> None:
        info = self._retry(lambda: self._client.get_collection(self._name), "read collection")
        vectors = info.config.params.vectors
        where = f"collection {self._name!r} on {self._where()}"
        if not isinstance(vectors, dict) or TOKENS not in vectors:
            raise IndexFormatError(f"{where} exists but is not a colmax collection")
        tokens = vectors[TOKENS]
        if tokens.size != dim or tokens.multivector_config is None:
            raise IndexFormatError(
                f"{where} holds {tokens.size}-d vectors (multivector: "
                f"{tokens.multivector_config is not None}); this index needs {dim}-d MaxSim"
            )
        want = None if pooling is None else pooling.size
        have = vectors[POOLED].size if POOLED in vectors else None
        if want != have:
            raise IndexFormatError(
                f"{where} has pooled vectors of size {have}, the settings need {want}; "
                "use the same prefetch settings as when it was created"
            )

    def _where(self) -> str:
        return self._settings.url or f"the local {self._settings.mode} client"

    # ------------------------------------------------------------------ writes
    def upsert(self, points: Sequence[PointData]) -> None:
        m = self._models
        batch = [m.PointStruct(id=p.id, vector=_vectors(p), payload=p.payload) for p in points]
        self._retry(
            lambda: self._client.upsert(self._name, points=batch, wait=True),
            f"upload of {len(batch)} points",
        )

    def delete(self, point_ids: Sequence[str]) -> None:
        selector = self._models.PointIdsList(points=list(point_ids))
        self._retry(
            lambda: self._client.delete(self._name, points_selector=selector, wait=True),
            "delete",
        )

    def create_field_indexes(self, keywords: Sequence[str], floats: Sequence[str]) -> None:
        if not self._server:
            return  # local mode scans payloads; an index there only prints a warning
        schema = self._models.PayloadSchemaType
        for key, kind in [(k, schema.KEYWORD) for k in keywords] + [
            (k, schema.FLOAT) for k in floats
        ]:
            make = partial(
                self._client.create_payload_index,
                self._name,
                field_name=key,
                field_schema=kind,
                wait=True,
            )
            self._retry(make, f"payload index {key}")

    # ------------------------------------------------------------------ reads
    def retrieve(
        self, point_ids: Sequence[str], fields: Sequence[str], *, vectors: bool = False
    ) -> dict[str, Found]:
        include = self._models.PayloadSelectorInclude(include=list(fields))
        records = self._retry(
            lambda: self._client.retrieve(
                self._name,
                ids=list(point_ids),
                with_payload=include,
                with_vectors=[TOKENS] if vectors else False,
            ),
            "retrieve",
        )
        return {str(rec.id): _found(rec, vectors) for rec in records}

    def search(
        self,
        queries: Sequence[np.ndarray],
        pooled: Sequence[np.ndarray] | None,
        k: int,
        prefetch_limit: int,
        cond: Cond | None,
        fields: Sequence[str],
    ) -> list[list[tuple[dict[str, Any], float]]]:
        m = self._models
        flt = to_qdrant(cond, self._models)
        include = m.PayloadSelectorInclude(include=list(fields))
        # Local mode is always exact and warns about search params; a server needs them.
        params = m.SearchParams(exact=True) if self._server else None
        requests = []
        for i, q in enumerate(queries):
            prefetch = None
            if pooled is not None:
                prefetch = m.Prefetch(
                    query=pooled[i].tolist(), using=POOLED, limit=max(prefetch_limit, k), filter=flt
                )
            requests.append(
                m.QueryRequest(
                    query=q.tolist(),
                    using=TOKENS,
                    prefetch=prefetch,
                    filter=flt,
                    limit=k,
                    with_payload=include,
                    with_vector=False,
                    params=params if pooled is None else None,
                )
            )
        responses = self._retry(
            lambda: self._client.query_batch_points(self._name, requests=requests), "search"
        )
        return [[(dict(p.payload or {}), float(p.score)) for p in r.points] for r in responses]

    def count(self) -> int:
        result = self._retry(lambda: self._client.count(self._name, exact=True), "count")
        return int(result.count)

    def scroll(
        self, fields: Sequence[str], *, vectors: bool = False, cond: Cond | None = None
    ) -> Iterator[tuple[str, Found]]:
        include = self._models.PayloadSelectorInclude(include=list(fields))
        flt = to_qdrant(cond, self._models)
        offset = None
        while True:
            page = partial(
                self._client.scroll,
                self._name,
                limit=_SCROLL_PAGE,
                offset=offset,
                with_payload=include,
                with_vectors=[TOKENS] if vectors else False,
                scroll_filter=flt,
            )
            records, offset = self._retry(page, "scroll")
            for rec in records:
                yield str(rec.id), _found(rec, vectors)
            if offset is None:
                return

    # ------------------------------------------------------------------ lifecycle
    def flush(self) -> None:
        """Server writes use ``wait=True``; local mode persists each write itself."""

    def close(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._client.close()

    def describe(self) -> dict[str, Any]:
        return {"collection": self._name, "url": self._settings.url}

    # ------------------------------------------------------------------ internals
    def _retry(self, call: Callable[[], T], what: str) -> T:
        if not self._server:
            return call()
        return with_retries(call, self._settings.max_retries, what)


def _vectors(p: PointData) -> dict[str, Any]:
    out: dict[str, Any] = {TOKENS: p.tokens.tolist()}
    if p.pooled is not None:
        out[POOLED] = p.pooled.tolist()
    return out


def _found(rec: Any, vectors: bool) -> Found:
    tokens = np.asarray(rec.vector[TOKENS], dtype=np.float32) if vectors else None
    return Found(dict(rec.payload or {}), tokens)
