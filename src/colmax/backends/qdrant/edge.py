"""The qdrant-edge driver: Qdrant's engine in this process, one shard in a folder.

The shard keeps a write-ahead log and holds an exclusive lock on it while open, so one process
at a time opens a folder (a second gets :class:`~colmax.errors.IndexLockedError`). Writes are
flushed before :meth:`EdgeDriver.flush` returns. Vectors are sent as Python lists: the bindings
convert lists about twice as fast as numpy arrays.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from colmax.backends.qdrant.driver import POOLED, TOKENS, Driver, Found, PointData, missing_extra
from colmax.backends.qdrant.filters import Cond, to_qdrant
from colmax.backends.qdrant.prefetch import PrefetchEncoding
from colmax.backends.qdrant.settings import QdrantSettings
from colmax.errors import IndexFormatError, IndexLockedError

__all__ = ["SHARD_DIR", "EdgeDriver"]

#: The shard's folder inside an index folder.
SHARD_DIR = "qdrant"
_SCROLL_PAGE = 1024


def _edge() -> Any:
    try:
        import qdrant_edge
    except ImportError as exc:
        raise missing_extra("qdrant-edge-py", exc) from exc
    return qdrant_edge


class EdgeDriver(Driver):
    """A qdrant-edge shard in ``<folder>/qdrant``. Use :meth:`create` or :meth:`open`."""

    def __init__(self, shard: Any, folder: Path) -> None:
        self._qe = _edge()
        self._shard = shard
        self._folder = folder

    @classmethod
    def create(
        cls, folder: Path, dim: int, settings: QdrantSettings, pooling: PrefetchEncoding | None
    ) -> EdgeDriver:
        """A new shard (the folder's ``qdrant`` subfolder must not exist)."""
        qe = _edge()
        memory = qe.Memory.Cold if settings.on_disk else None
        datatype = {"float16": qe.VectorStorageDatatype.Float16}.get(
            settings.datatype, qe.VectorStorageDatatype.Float32
        )
        vectors = {
            TOKENS: qe.EdgeVectorParams(
                size=dim,
                distance=qe.Distance.Dot,  # vectors are unit length: dot is cosine
                multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim),
                datatype=datatype,
                # No graph over token vectors: MaxSim search scans them exactly.
                hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
                memory=memory,
            )
        }
        if pooling is not None:
            vectors[POOLED] = qe.EdgeVectorParams(
                size=pooling.size, distance=qe.Distance.Dot, memory=memory
            )
        config = qe.EdgeConfig(vectors=vectors, payload_memory=memory)
        shard = qe.EdgeShard.create(str(folder / SHARD_DIR), config)
        return cls(shard, folder)

    @classmethod
    def open(cls, folder: Path) -> EdgeDriver:
        """Open the shard in ``folder``.

        Raises:
            IndexLockedError: another process (or engine) has the folder open.
            IndexFormatError: the shard is missing or damaged.
        """
        qe = _edge()
        shard_dir = folder / SHARD_DIR
        if not shard_dir.is_dir():
            raise IndexFormatError(f"{shard_dir}: the qdrant-edge shard folder is missing")
        try:
            shard = qe.EdgeShard.load(str(shard_dir))
        except Exception as exc:
            if "WouldBlock" in str(exc) or "lock" in str(exc).lower():
                raise IndexLockedError(
                    f"{folder} is open in another process or engine (qdrant-edge allows one "
                    "at a time); close it first"
                ) from exc
            raise IndexFormatError(
                f"{shard_dir}: cannot open the qdrant-edge shard: {exc}"
            ) from exc
        return cls(shard, folder)

    # ------------------------------------------------------------------ writes
    def upsert(self, points: Sequence[PointData]) -> None:
        qe = self._qe
        batch = []
        for p in points:
            vector: dict[str, Any] = {TOKENS: p.tokens.tolist()}
            if p.pooled is not None:
                vector[POOLED] = p.pooled.tolist()
            batch.append(qe.Point(p.id, vector, p.payload))
        self._shard.update(qe.UpdateOperation.upsert_points(batch))

    def delete(self, point_ids: Sequence[str]) -> None:
        self._shard.update(self._qe.UpdateOperation.delete_points(list(point_ids)))

    def create_field_indexes(self, keywords: Sequence[str], floats: Sequence[str]) -> None:
        qe = self._qe
        for key, schema in [(k, qe.PayloadSchemaType.Keyword) for k in keywords] + [
            (k, qe.PayloadSchemaType.Float) for k in floats
        ]:
            self._shard.update(qe.UpdateOperation.create_field_index(key, schema))

    # ------------------------------------------------------------------ reads
    def retrieve(
        self, point_ids: Sequence[str], fields: Sequence[str], *, vectors: bool = False
    ) -> dict[str, Found]:
        records = self._shard.retrieve(
            list(point_ids),
            with_payload=self._qe.PayloadSelector.Include(list(fields)),
            with_vector=[TOKENS] if vectors else False,
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
        qe = self._qe
        flt = to_qdrant(cond, self._qe)
        payload = qe.PayloadSelector.Include(list(fields))
        requests = []
        for i, q in enumerate(queries):
            prefetches = None
            params = qe.SearchParams(exact=True)
            if pooled is not None:
                prefetches = [
                    qe.Prefetch(
                        limit=max(prefetch_limit, k),
                        query=qe.Query.Nearest(pooled[i].tolist(), using=POOLED),
                        filter=flt,
                    )
                ]
                params = None  # the rerank of prefetched points is exact anyway
            requests.append(
                qe.QueryRequest(
                    limit=k,
                    query=qe.Query.Nearest(q.tolist(), using=TOKENS),
                    prefetches=prefetches,
                    filter=flt,
                    with_payload=payload,
                    with_vector=False,
                    params=params,
                )
            )
        results = self._shard.query_batch(qe.QueryBatchRequest(requests))
        return [[(dict(p.payload or {}), float(p.score)) for p in r] for r in results]

    def count(self) -> int:
        return int(self._shard.count(self._qe.CountRequest(exact=True)))

    def scroll(
        self, fields: Sequence[str], *, vectors: bool = False, cond: Cond | None = None
    ) -> Iterator[tuple[str, Found]]:
        qe = self._qe
        offset = None
        while True:
            records, offset = self._shard.scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=_SCROLL_PAGE,
                    with_payload=qe.PayloadSelector.Include(list(fields)),
                    with_vector=[TOKENS] if vectors else False,
                    filter=to_qdrant(cond, qe),
                )
            )
            for rec in records:
                yield str(rec.id), _found(rec, vectors)
            if offset is None:
                return

    # ------------------------------------------------------------------ lifecycle
    def flush(self) -> None:
        self._shard.flush()

    def optimize(self) -> bool:
        """Merge segments, drop deleted points and build the pooled vector's HNSW graph."""
        return bool(self._shard.optimize())

    def close(self) -> None:
        if self._shard is not None:
            self._shard.close()
            self._shard = None

    def describe(self) -> dict[str, Any]:
        return {"segments": int(self._shard.info().segments_count)}


def _found(rec: Any, vectors: bool) -> Found:
    tokens = np.asarray(rec.vector[TOKENS], dtype=np.float32) if vectors else None
    return Found(dict(rec.payload or {}), tokens)
