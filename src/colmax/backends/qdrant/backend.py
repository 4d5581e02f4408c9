"""``index="qdrant"``: documents in a Qdrant multivector collection, scored by MaxSim in Qdrant.

Embedded by default (qdrant-edge, Qdrant's engine in this process, persistent in the index
folder), or a Qdrant server / cluster by URL (qdrant-client), or qdrant-client's in-memory
local mode.
Each document is one point:

- point id: ``uuid5(namespace, id)``, deterministic, so re-running an upload is idempotent;
  the colmax id travels in the payload (``colmax_id``) and is checked on every read;
- vectors: the token vectors as a multivector (``colmax_tokens``, MAX_SIM comparator, dot
  product on unit vectors, no HNSW graph: search scans them exactly), plus with
  ``prefetch="mean" | "muvera"`` one pooled vector with an HNSW graph for two-stage search;
- payload: ``text``, ``metadata`` (verbatim), ``colmax_seq`` (insertion order for
  :meth:`~QdrantBackend.ids`) and the typed filter fields of :mod:`.filters`.

The folder holds ``manifest.json`` (dimension, encoder, and the connection settings; never the
API key) and, for the embedded modes, the shard in ``qdrant/``. Settings: :mod:`.settings`
and ``docs/qdrant.md``.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from colmax import __version__
from colmax.backends.base import Backend, BackendInfo, BackendOptions, Missing
from colmax.backends.qdrant.driver import Driver, Found, PointData
from colmax.backends.qdrant.filters import FIELDS_KEY, field_name, filter_fields, translate
from colmax.backends.qdrant.prefetch import PrefetchEncoding
from colmax.backends.qdrant.settings import QdrantSettings, credential_for
from colmax.errors import IndexFormatError, InvalidInputError, UnknownIdError
from colmax.filters import FilterLike
from colmax.store.fsutil import publish_folder, staging_path
from colmax.store.manifest import Manifest
from colmax.store.storage import check_free
from colmax.types import Document, Hit
from colmax.validation import check_positive_int

__all__ = ["POINT_NAMESPACE", "QdrantBackend", "point_id"]

logger = logging.getLogger(__name__)

#: Namespace of the uuid5 point ids (``uuid5(NAMESPACE_URL, "https://github.com/colmax/colmax#qdrant-point-id")``).
POINT_NAMESPACE = uuid.UUID("5b92afbc-50c4-5222-b7ee-050fb132cea5")
_ID, _TEXT, _META, _SEQ = "colmax_id", "text", "metadata", "colmax_seq"
_DOC_FIELDS = [_ID, _TEXT, _META]
_ALL_FIELDS = [_ID, _TEXT, _META, _SEQ, FIELDS_KEY]
_MAX_K = 2**31 - 1


def point_id(id_: str) -> str:
    """The Qdrant point id of a colmax document id.

    Examples:
        >>> point_id("doc-1") == point_id("doc-1") != point_id("doc-2")
        True
    """
    return str(uuid.uuid5(POINT_NAMESPACE, id_))


class QdrantBackend(Backend):
    """A Qdrant collection behind :class:`colmax.Engine`. Use :meth:`create` / :meth:`open`.

    Examples:
        >>> import numpy as np, torch
        >>> from colmax.store.manifest import Manifest
        >>> backend = QdrantBackend.create(None, Manifest(dim=4, index_kind="qdrant"))  # in memory
        >>> backend.upsert(["a", "b"], ["x", "y"], [{}, {"n": 1}], [np.eye(4)[:2], np.eye(4)[2:]])
        >>> [h.id for h in backend.search([torch.eye(4)[2:3]], k=1)[0]]
        ['b']
        >>> [h.id for h in backend.search([torch.eye(4)[:1]], k=5, filter={"n": 1})[0]]
        ['b']
    """

    kind = "qdrant"

    def __init__(
        self,
        driver: Driver,
        settings: QdrantSettings,
        dim: int,
        encoder_config: dict[str, Any] | None,
        folder: Path | None,
        chunking: dict[str, int] | None = None,
    ) -> None:
        self._driver: Driver | None = driver
        self._settings = settings
        self._dim = dim
        self._encoder_config = encoder_config
        self._chunking = chunking
        self._folder = folder
        self._pooling: PrefetchEncoding | None = settings.prefetch_for(dim)
        self._write_lock = threading.RLock()
        # qdrant-client's local mode is plain Python structures: one caller at a time.
        self._read_lock = self._write_lock if settings.mode == "memory" else None
        self._last_seq = 0

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls, folder: Path | None, manifest: Manifest, options: BackendOptions | None = None
    ) -> QdrantBackend:
        """A new index: an edge shard in ``folder``, a collection at a URL, or in memory.

        Args:
            folder: the index folder (missing or empty), or ``None``.
            manifest: dimension, encoder and chunking to record.
            options: ``options.index`` holds the
                :class:`~colmax.backends.qdrant.settings.QdrantSettings` (``url``,
                ``collection``, ...) and ``api_key`` (else ``$COLMAX_QDRANT_API_KEY``; never
                written to disk). With a ``url``, the server's collection is created, or reused
                when it already holds colmax vectors of this dimension.

        Raises:
            InvalidInputError: unknown or invalid options.
            IndexFormatError: ``folder`` is not empty; an existing collection does not fit.
            QdrantConnectionError: the server cannot be reached.
        """
        given = dict((options or BackendOptions()).index)
        api_key = given.pop("api_key", None)
        dim, encoder_config = manifest.dim, manifest.encoder
        check_positive_int(dim, "dim")
        folder = Path(folder).absolute() if folder is not None else None
        settings = QdrantSettings.from_options(folder, given)
        pooling = settings.prefetch_for(dim)  # invalid pooling settings fail before any write
        if folder is not None:
            check_free(folder)
        if settings.mode == "edge":
            assert folder is not None  # QdrantSettings requires a path for edge
            return cls._create_in_folder(folder, settings, manifest, pooling)
        driver = cls._connect(folder, dim, settings, pooling, api_key, create=True, url_named=True)
        backend = cls(driver, settings, dim, encoder_config, folder, manifest.chunking)
        backend._index_fields()
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            backend._manifest(settings).write(folder)
        return backend

    @classmethod
    def _create_in_folder(
        cls,
        folder: Path,
        settings: QdrantSettings,
        manifest: Manifest,
        pooling: PrefetchEncoding | None,
    ) -> QdrantBackend:
        # Build beside the target and rename it into place: a crash leaves no half index.
        dim, encoder_config, chunking = manifest.dim, manifest.encoder, manifest.chunking
        staging = staging_path(folder)
        try:
            staging.mkdir(parents=True)
            driver = cls._connect(staging, dim, settings, pooling, None, create=True)
            backend = cls(driver, settings, dim, encoder_config, staging, chunking)
            backend._index_fields()
            backend._manifest(settings).write(staging)
            backend.close()
            publish_folder(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return cls(
            cls._connect(folder, dim, settings, pooling, None, create=False),
            settings,
            dim,
            encoder_config,
            folder,
            chunking,
        )

    @classmethod
    def open(
        cls, folder: Path, manifest: Manifest, options: BackendOptions | None = None
    ) -> QdrantBackend:
        """Open the index recorded in ``folder/manifest.json`` (reconnecting to a server).

        ``options.index`` may hold ``api_key`` and repeat the settings the index was created
        with (so that the same ``Engine(...)`` call creates a folder and later reopens it); a
        different value raises.

        Raises:
            InvalidInputError: ``options`` contradict the recorded settings.
            IndexFormatError: invalid settings, a missing shard or collection.
            IndexLockedError: the embedded shard is open in another process.
            QdrantConnectionError: the server cannot be reached.
        """
        options_ = dict((options or BackendOptions()).index)
        api_key = options_.pop("api_key", None)
        folder = Path(folder).absolute()
        if manifest.index_kind != cls.kind:
            raise IndexFormatError(f"{folder} holds a {manifest.index_kind!r} index, not qdrant")
        settings = QdrantSettings.from_manifest(folder, manifest.index_settings)
        recorded = settings.to_manifest()
        for name, value in options_.items():
            if name not in recorded or (value is not None and recorded[name] != value):
                raise InvalidInputError(
                    f"{folder} is a qdrant index created with {name}={recorded.get(name)!r}; "
                    f"its settings are fixed at creation (got {name}={value!r})"
                )
        if settings.mode == "memory":
            raise IndexFormatError(f"{folder}/manifest.json: an in-memory index has no folder")
        pooling = settings.prefetch_for(manifest.dim)
        # The url came from the folder; the caller named it only by repeating it (checked
        # equal above): only then may a key go there.
        named = options_.get("url") is not None
        driver = cls._connect(
            folder, manifest.dim, settings, pooling, api_key, create=False, url_named=named
        )
        return cls(driver, settings, manifest.dim, manifest.encoder, folder, manifest.chunking)

    @staticmethod
    def _connect(
        folder: Path | None,
        dim: int,
        settings: QdrantSettings,
        pooling: PrefetchEncoding | None,
        api_key: str | None,
        *,
        create: bool,
        url_named: bool = False,
    ) -> Driver:
        if settings.mode == "edge":
            from colmax.backends.qdrant.edge import EdgeDriver

            assert folder is not None
            if create:
                return EdgeDriver.create(folder, dim, settings, pooling)
            return EdgeDriver.open(folder)
        from colmax.backends.qdrant.client import ClientDriver

        key = (
            credential_for(settings.url, api_key, url_named=url_named)
            if settings.mode == "server"
            else None
        )
        return ClientDriver.connect(folder, dim, settings, pooling, key, create=create)

    # ------------------------------------------------------------------ facts
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def path(self) -> Path | None:
        return self._folder

    @property
    def encoder_config(self) -> dict[str, Any] | None:
        return self._encoder_config

    @property
    def chunking(self) -> dict[str, int] | None:
        return self._chunking

    @property
    def settings(self) -> QdrantSettings:
        """The settings this index was created with."""
        return self._settings

    def __len__(self) -> int:
        with self._reading():
            return self._live().count()

    def __contains__(self, id_: object) -> bool:
        return isinstance(id_, str) and bool(self.existing([id_]))

    def existing(self, ids: Sequence[str]) -> set[str]:
        return set(self._fetch(ids, [_ID]))

    def ids(self) -> list[str]:
        with self._reading():
            rows = [(f.payload.get(_SEQ, 0), f.payload[_ID]) for _, f in self._scroll([_ID, _SEQ])]
        return [id_ for _, id_ in sorted(rows)]

    def matching_ids(self, filter: FilterLike) -> set[str]:
        cond = translate(filter)
        if cond is False:
            return set()
        with self._reading():
            found = self._live().scroll([_ID], cond=None if cond is True else cond)
            return {f.payload[_ID] for _, f in found}

    def info(self) -> BackendInfo:
        s = self._settings
        with self._reading():
            described = self._live().describe()
        return BackendInfo(
            documents=len(self),
            dim=self._dim,
            index=self.kind,
            path=str(self._folder) if self._folder else None,
            details={
                "mode": s.mode,
                "collection": s.collection,
                "url": s.url,
                "datatype": s.datatype,
                "prefetch": s.prefetch,
                **described,
            },
        )

    # ------------------------------------------------------------------ writes
    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]],
        vectors: Sequence[np.ndarray],
        *,
        remove: Sequence[str] = (),
    ) -> None:
        """Insert or replace documents, ``batch_size`` points per request, then delete
        ``remove``.

        A batch is written whole or not at all; a failure after some batches leaves those
        written (re-running the same call is idempotent: point ids are deterministic).
        """
        if not (len(ids) == len(texts) == len(metadatas) == len(vectors)):
            raise InvalidInputError("upsert() needs one text, metadata and vector per id")
        for i, metadata in enumerate(metadatas):
            _check_int64(metadata, ids[i])
        size = self._settings.batch_size
        with self._write_lock, _progress(len(ids), self._settings.show_progress) as bar:
            driver = self._live()
            first = self._next_seqs(len(ids))
            for start in range(0, len(ids), size):
                stop = min(start + size, len(ids))
                driver.upsert(
                    [
                        self._point(ids[i], texts[i], metadatas[i], vectors[i], first + i)
                        for i in range(start, stop)
                    ]
                )
                bar.update(stop - start)
            driver.flush()
            written = set(ids)
            stale = [point_id(i) for i in dict.fromkeys(remove) if i not in written]
            if stale:
                # The documents are written: a failure here must not make the call raise (a
                # client retrying an add without ids would store them twice). The stale
                # pieces stay until the document is written again.
                try:
                    driver.delete(stale)
                    driver.flush()
                except Exception as exc:
                    logger.warning(
                        "documents written, but %d stale entr(ies) of their previous versions "
                        "could not be deleted (%s)",
                        len(stale),
                        exc,
                    )

    def delete(self, ids: Sequence[str], *, missing: Missing = "raise") -> int:
        with self._write_lock:
            found = self._fetch(ids, [_ID])
            absent = [i for i in ids if i not in found]
            if absent and missing == "raise":
                raise UnknownIdError(
                    f"{len(absent)} id(s) not in the index, e.g. {absent[:5]!r}; "
                    "nothing was changed"
                )
            doomed = [i for i in ids if i in found]
            if not doomed:
                return 0
            driver = self._live()
            driver.delete([point_id(i) for i in doomed])
            driver.flush()
        return len(doomed)

    # ------------------------------------------------------------------ reads
    def get(self, ids: Sequence[str], *, missing: Missing = "raise") -> list[Document]:
        found = self._fetch_all(ids, _DOC_FIELDS, missing=missing)
        return [_document(found[i].payload) for i in ids if i in found]

    def get_vectors(self, ids: Sequence[str]) -> list[np.ndarray]:
        return [v for _, v in self.get_with_vectors(ids)]

    def get_with_vectors(
        self, ids: Sequence[str], *, missing: Missing = "raise"
    ) -> list[tuple[Document, np.ndarray]]:
        found = self._fetch_all(ids, _DOC_FIELDS, vectors=True, missing=missing)
        out = []
        for i in ids:
            if i not in found:
                continue
            tokens = found[i].tokens
            assert tokens is not None  # asked for with vectors=True
            out.append((_document(found[i].payload), tokens))
        return out

    def search(
        self, queries: Sequence[torch.Tensor], k: int, filter: FilterLike = None
    ) -> list[list[Hit]]:
        cond = translate(filter)
        if cond is False or not queries:
            return [[] for _ in queries]
        k = min(k, _MAX_K)  # Qdrant takes 64-bit limits; no collection holds more anyway
        qs = [
            np.ascontiguousarray(q.detach().to("cpu", torch.float32).numpy())
            if isinstance(q, torch.Tensor)
            else np.asarray(q, dtype=np.float32)
            for q in queries
        ]
        pooled = self._pooling.queries(qs) if self._pooling is not None else None
        with self._reading():
            results = self._live().search(
                qs,
                pooled,
                k,
                self._settings.prefetch_limit,
                None if cond is True else cond,
                _DOC_FIELDS,
            )
        return [
            [
                Hit(p[_ID], score, p.get(_TEXT, ""), dict(p.get(_META) or {}), rank)
                for rank, (p, score) in enumerate(hits)
            ]
            for hits in results
        ]

    # ------------------------------------------------------------------ lifecycle
    def save(self, path: Path) -> Path:
        """Write a copy to ``path`` (a missing or empty folder).

        An embedded index (edge or memory) is copied into a new qdrant-edge folder. A
        server index stays where it is: the folder gets a manifest with its connection
        settings, which ``Engine.load`` reconnects with.
        """
        target = Path(path).absolute()
        if self._folder is not None and target == self._folder:
            return target
        check_free(target)
        staging = staging_path(target)
        try:
            staging.mkdir(parents=True)
            if self._settings.mode == "server":
                self._manifest(self._settings).write(staging)
            else:
                self._copy_to_edge(staging)
            publish_folder(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        logger.info("saved the qdrant index (%s) to %s", self._settings.mode, target)
        return target

    def optimize(self) -> BackendInfo:
        """Merge segments, vacuum deleted points and build HNSW graphs (embedded edge only;
        a server optimises by itself)."""
        with self._write_lock:
            optimize = getattr(self._live(), "optimize", None)
            if optimize is not None:
                optimize()
        return self.info()

    def close(self) -> None:
        with self._write_lock:
            if self._driver is not None:
                self._driver.close()
                self._driver = None

    def __enter__(self) -> QdrantBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _live(self) -> Driver:
        if self._driver is None:
            raise InvalidInputError("this Qdrant index is closed")
        return self._driver

    def _reading(self) -> Any:
        return self._read_lock if self._read_lock is not None else nullcontext()

    def _next_seqs(self, n: int) -> int:
        # Wall-clock nanoseconds keep insertion order across processes and reopenings;
        # the max() keeps it strictly increasing within this one.
        first = max(time.time_ns(), self._last_seq + 1)
        self._last_seq = first + n - 1
        return first

    def _point(
        self, id_: str, text: str, metadata: Mapping[str, Any], vectors: np.ndarray, seq: int
    ) -> PointData:
        tokens = np.asarray(vectors, dtype=np.float32)
        pooled = self._pooling.documents([tokens])[0] if self._pooling is not None else None
        payload = {
            _ID: id_,
            _TEXT: text,
            _META: dict(metadata),
            _SEQ: seq,
            FIELDS_KEY: filter_fields(metadata),
        }
        return PointData(point_id(id_), tokens, pooled, payload)

    def _fetch(
        self, ids: Sequence[str], fields: Sequence[str], *, vectors: bool = False
    ) -> dict[str, Found]:
        """The stored ones among ``ids``, by colmax id (a point whose payload names another
        id, which uuid5 makes practically impossible, counts as absent)."""
        with self._reading():
            found = self._live().retrieve(
                [point_id(i) for i in ids], list(dict.fromkeys([_ID, *fields])), vectors=vectors
            )
        by_point = {point_id(i): i for i in ids}
        return {
            by_point[pid]: f
            for pid, f in found.items()
            if pid in by_point and f.payload.get(_ID) == by_point[pid]
        }

    def _fetch_all(
        self,
        ids: Sequence[str],
        fields: Sequence[str],
        *,
        vectors: bool = False,
        missing: Missing = "raise",
    ) -> dict[str, Found]:
        found = self._fetch(ids, fields, vectors=vectors)
        absent = [i for i in ids if i not in found]
        if absent and missing == "raise":
            raise UnknownIdError(f"{len(absent)} id(s) not in the index, e.g. {absent[:5]!r}")
        return found

    def _scroll(
        self, fields: Sequence[str], *, vectors: bool = False
    ) -> Iterator[tuple[str, Found]]:
        return self._live().scroll(fields, vectors=vectors)

    def _index_fields(self) -> None:
        s = self._settings
        if not s.indexed_fields and s.mode != "server":
            return
        keywords = [_ID, f"{FIELDS_KEY}.keys", f"{FIELDS_KEY}.nulls"]
        floats = []
        for key in s.indexed_fields:
            name = field_name(key)
            keywords += [f"{FIELDS_KEY}.{kind}.{name}" for kind in ("s", "b", "cs", "cb")]
            floats += [f"{FIELDS_KEY}.{kind}.{name}" for kind in ("n", "cn")]
        self._live().create_field_indexes(keywords, floats)

    def _manifest(self, settings: QdrantSettings) -> Manifest:
        return Manifest(
            dim=self._dim,
            index_kind=self.kind,
            encoder=self._encoder_config,
            index_settings=settings.to_manifest(),
            colmax_version=__version__,
            chunking=self._chunking,
        )

    def _copy_to_edge(self, staging: Path) -> None:
        from colmax.backends.qdrant.edge import EdgeDriver

        s = self._settings
        settings = QdrantSettings.from_options(
            staging,
            {
                "mode": "edge",
                "collection": s.collection,
                "on_disk": s.on_disk,
                "datatype": s.datatype,
                "prefetch": s.prefetch,
                "pooling": dict(s.pooling),
                "prefetch_limit": s.prefetch_limit,
                "batch_size": s.batch_size,
                "indexed_fields": list(s.indexed_fields),
            },
        )
        target = EdgeDriver.create(staging, self._dim, settings, self._pooling)
        try:
            with self._reading():
                batch: list[PointData] = []
                for pid, found in self._scroll(_ALL_FIELDS, vectors=True):
                    assert found.tokens is not None
                    pooled = None
                    if self._pooling is not None:
                        pooled = self._pooling.documents([found.tokens])[0]
                    batch.append(PointData(pid, found.tokens, pooled, found.payload))
                    if len(batch) >= s.batch_size:
                        target.upsert(batch)
                        batch = []
                if batch:
                    target.upsert(batch)
            target.flush()
            copy = QdrantBackend(
                target, settings, self._dim, self._encoder_config, staging, self._chunking
            )
            copy._index_fields()
            copy._manifest(settings).write(staging)
        finally:
            target.close()


def _document(payload: Mapping[str, Any]) -> Document:
    return Document(payload[_ID], payload.get(_TEXT, ""), dict(payload.get(_META) or {}))


class _NoBar:
    def update(self, n: int) -> None:
        """Nothing to show."""


@contextmanager
def _progress(total: int, show: bool) -> Iterator[Any]:
    if not show:
        yield _NoBar()
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc="Uploading to Qdrant", unit="doc", leave=False) as bar:
        yield bar


_INT64 = (-(2**63), 2**63 - 1)


def _check_int64(metadata: Any, doc_id: str) -> None:
    """Qdrant payloads hold 64-bit integers: a larger one came back as a float, silently
    changed (the flat index keeps it exactly). Refused before anything is written.

    Raises:
        InvalidInputError: such an integer, named with its document.
    """
    stack = [metadata]
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        elif type(value) is int and not _INT64[0] <= value <= _INT64[1]:
            raise InvalidInputError(
                f"document {doc_id!r}: metadata integer {value} does not fit 64 bits, "
                "which Qdrant stores (it would come back as a float); store it as a string"
            )
