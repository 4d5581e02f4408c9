"""What each route does, over one engine; :mod:`colmax.server.app` wires them to paths.

Engine calls run in worker threads, never on the event loop: reads (search, rerank, info,
get) run concurrently up to ``settings.search_threads``; writes go through a separate
one-thread queue, so they are serialised and a burst of writes waiting their turn does not hold
the threads searches need. Every write is committed to the index folder before it returns.

A read runs under a :mod:`colmax.deadline` of ``settings.request_timeout`` seconds, cancelled
as soon as its client disconnects: the engine stops at its next check (a filter query at once,
encoding between batches, scoring before it starts) and nothing more is computed for nobody.
Writes always run to the end: a write stopped halfway would tell the client nothing useful.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import Request, Response
from pydantic import BaseModel

from colmax.deadline import deadline
from colmax.engine import Engine
from colmax.errors import InvalidInputError
from colmax.server.schemas import (
    AddResponse,
    DeleteResponse,
    DocumentOut,
    HealthResponse,
    HitOut,
    InfoResponse,
    RerankResponse,
    SearchResponse,
)
from colmax.server.settings import ServerSettings
from colmax.types import Hit

__all__ = ["Handlers"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: Seconds between two looks at whether a read's client is still connected.
_DISCONNECT_POLL_S = 0.1


class Handlers:
    """The route handlers of one app.

    Args:
        engine: the engine served.
        settings: the server settings (the number of search threads is used here; limits are
            enforced by the request models and the middleware). ``chunk_tokens``, when set,
            becomes the engine's chunking (:meth:`colmax.Engine.set_chunking`); otherwise the
            engine splits added documents as its index folder records.
    """

    def __init__(self, engine: Engine, settings: ServerSettings) -> None:
        self.engine = engine
        self.settings = settings
        if settings.chunk_tokens is not None:
            engine.set_chunking(settings.chunk_tokens, settings.chunk_overlap)
        self._reads = anyio.CapacityLimiter(settings.search_threads)
        self._writes = anyio.CapacityLimiter(1)

    async def _read(
        self, fn: Callable[..., T], *args: Any, request: Request | None = None, **kwargs: Any
    ) -> T:
        """``fn(*args, **kwargs)`` in a search thread, under the request deadline, cancelled
        when ``request``'s client disconnects."""
        cancel = threading.Event()
        timeout = self.settings.request_timeout

        def work() -> T:
            with deadline(timeout, cancel):
                return fn(*args, **kwargs)

        if request is None:
            return await anyio.to_thread.run_sync(work, limiter=self._reads)
        failure: Exception | None = None
        async with anyio.create_task_group() as watchers:
            watchers.start_soon(_watch_disconnect, request, cancel)
            try:
                result = await anyio.to_thread.run_sync(work, limiter=self._reads)
            except Exception as exc:  # raised below, outside the group (not as a group)
                failure = exc
            finally:
                watchers.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return result

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(partial(fn, *args), limiter=self._writes)

    async def health(self) -> HealthResponse:
        """Liveness: 200 while the index can be read."""
        # Not behind the search threads: a busy server still answers its health check.
        documents = await anyio.to_thread.run_sync(len, self.engine)
        return HealthResponse(status="ok", documents=documents)

    async def info(self) -> InfoResponse:
        """Counts, model, and the server's limits and settings."""
        info = await self._read(self.engine.info)
        return InfoResponse(
            documents=info.documents,
            tokens=info.tokens,
            dim=info.dim,
            index=info.index,
            model=(info.encoder or {}).get("model_name_or_path"),
            generation=info.generation,
            settings=self.settings.public(),
        )

    async def search(self, body: Any, request: Request | None = None) -> Response:
        """The top ``k`` documents for each query, optionally filtered by metadata."""
        return await self._read(self._search, body, request=request)

    def _search(self, body: Any) -> Response:
        queries = [body.query] if body.query is not None else list(body.queries)
        options: dict[str, Any] = {"explain": body.explain, "group_chunks": body.group_chunks}
        if body.hybrid is not None:
            options["hybrid"] = body.hybrid
            options.update(
                (name, getattr(body, name))
                for name in ("candidates", "weight")
                if getattr(body, name) is not None
            )
        results: list[list[Hit]] = self.engine.search(
            queries, k=body.k, filter=body.filter, **options
        )
        text = body.include_text
        return self._sized(SearchResponse(results=[[_hit(h, text) for h in r] for r in results]))

    async def rerank(self, body: Any, request: Request | None = None) -> Response:
        """Score candidate texts (``documents``) or stored documents (``ids``) against a query."""
        return await self._read(self._rerank, body, request=request)

    def _rerank(self, body: Any) -> Response:
        hits = self.engine.rerank(
            body.query, body.documents, k=body.k, ids=body.ids, explain=body.explain
        )
        return self._sized(RerankResponse(hits=[_hit(h, body.include_text) for h in hits]))

    def _sized(self, response: BaseModel) -> Response:
        """``response`` as JSON, unless it is larger than ``settings.max_response_bytes``.

        Raises:
            InvalidInputError: too large (422): the client asks for less.
        """
        payload = response.model_dump_json().encode("utf-8")
        limit = self.settings.max_response_bytes
        if len(payload) > limit:
            raise InvalidInputError(
                f"the response would be {len(payload)} bytes, over the server's limit of {limit} "
                "(--max-response-bytes): ask for fewer hits (k, queries), or send "
                '"include_text": false and fetch the texts you need by id'
            )
        return Response(content=payload, media_type="application/json")

    async def add(self, body: Any, request: Request | None = None) -> AddResponse:
        """Add or replace documents (upsert by id); the response comes after the commit."""
        return await self._write(self._add, body)

    async def delete(self, body: Any, request: Request | None = None) -> DeleteResponse:
        """Delete documents by id (all or nothing); the response comes after the commit."""
        return await self._write(self._delete, body)

    async def get_document(self, doc_id: str) -> DocumentOut:
        """One stored document (or chunk, ``<id>#<n>``) by id."""
        doc = (await self._read(self.engine.get, [doc_id]))[0]
        return DocumentOut(id=doc.id, text=doc.text, metadata=doc.metadata)

    async def page_image(self, id: str) -> Response:
        """The stored page image of a document indexed as a page (PDF page or image file)."""
        data, mime = await self._read(self.engine.page_image_bytes, id)
        return Response(content=data, media_type=mime)

    async def page_heatmap(self, id: str, query: str, token: int | None = None) -> Response:
        """A PNG of the page with the patches that matched ``query`` highlighted (the whole
        query, or query vector ``token``)."""
        return Response(
            content=await self._read(self._heatmap, id, query, token), media_type="image/png"
        )

    def _heatmap(self, id_: str, query: str, token: int | None) -> bytes:
        import io

        explanation = self.engine.explain(query, id_)
        if explanation.page is None:
            raise InvalidInputError(f"document {id_!r} has no page image and patch grid")
        buffer = io.BytesIO()
        explanation.page.render(token=token).save(buffer, format="PNG")
        return buffer.getvalue()

    def _add(self, body: Any) -> AddResponse:
        ids = [d.id if d.id is not None else str(uuid.uuid4()) for d in body.documents]
        written = self.engine.add(
            [d.text for d in body.documents],
            ids=ids,
            metadatas=[d.metadata for d in body.documents],
            show_progress=False,
            pool_factor=body.pool_factor,
        )
        info = self.engine.info()
        return AddResponse(
            ids=ids, entries=written.entries, documents=info.documents, generation=info.generation
        )

    def _delete(self, body: Any) -> DeleteResponse:
        deleted = self.engine.delete(body.ids)
        info = self.engine.info()
        return DeleteResponse(deleted=deleted, documents=info.documents, generation=info.generation)


async def _watch_disconnect(request: Request, cancel: threading.Event) -> None:
    """Set ``cancel`` as soon as ``request``'s client has gone."""
    while not cancel.is_set():
        if await request.is_disconnected():
            logger.info(
                "%s %s: the client went away; stopping its work", request.method, request.url.path
            )
            cancel.set()
            return
        await anyio.sleep(_DISCONNECT_POLL_S)


def _hit(hit: Hit, include_text: bool = True) -> HitOut:
    return HitOut(
        id=hit.id,
        score=hit.score,
        rank=hit.rank,
        text=hit.text if include_text else None,
        metadata=hit.metadata,
        explanation=hit.explanation.to_dict() if hit.explanation is not None else None,  # type: ignore[arg-type]
        scores=hit.scores,
    )
