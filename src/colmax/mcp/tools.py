"""The MCP tools over one engine: ``search``, ``rerank``, ``get`` and (when enabled) ``add`` and
``delete``.

Each tool only translates: MCP arguments in (validated against the same limits as the HTTP
server, :class:`~colmax.server.settings.ServerSettings`), one public :class:`~colmax.Engine`
call, and the HTTP server's own result models out (:mod:`colmax.server.schemas`: ids, scores,
text, metadata), so both doors answer alike. Engine calls run in worker threads: reads up to
``settings.search_threads`` at a time, writes one at a time. A :class:`~colmax.errors.ColmaxError`
becomes a tool error, which the client sees with ``isError``, worded as the HTTP server words it
(:mod:`colmax.server.faults`): the client's own mistakes (an unknown id, a malformed filter)
keep their message, server paths scrubbed; server-side conditions (a full disk, a damaged
folder) get a fixed message and are logged in full.
"""

from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar, cast

import anyio
import anyio.to_thread
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from colmax import Engine
from colmax.deadline import deadline
from colmax.errors import ColmaxError
from colmax.limits import MAX_ID_LENGTH
from colmax.server.faults import PathScrubber, server_fault
from colmax.server.schemas import DocumentOut, HitOut
from colmax.server.settings import ServerSettings
from colmax.types import Hit

__all__ = [
    "AddResult",
    "ColmaxTools",
    "DeleteResult",
    "DocumentIn",
    "GetResult",
    "SearchResult",
]

T = TypeVar("T")
R = TypeVar("R", bound=BaseModel)

logger = logging.getLogger(__name__)

Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]


class SearchResult(BaseModel):
    """The hits of one search or rerank, best first."""

    hits: list[HitOut]


class GetResult(BaseModel):
    """Stored documents, in the order asked for."""

    documents: list[DocumentOut]


class AddResult(BaseModel):
    """Sent after the write is committed to the index folder."""

    ids: list[str] = Field(description="the ids written, in input order")
    documents: int = Field(description="documents in the index after the write")


class DeleteResult(BaseModel):
    """Sent after the delete is committed to the index folder."""

    deleted: int
    documents: int = Field(description="documents in the index after the delete")


class DocumentIn(BaseModel):
    """A document to add; without ``id`` one is assigned (a UUID)."""

    model_config = ConfigDict(extra="forbid")

    id: Id | None = None
    text: str = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)


def hit_out(hit: Hit) -> HitOut:
    """The HTTP server's result model for one hit."""
    explanation = hit.explanation.to_dict() if hit.explanation is not None else None
    return HitOut(
        id=hit.id,
        score=hit.score,
        rank=hit.rank,
        text=hit.text,
        metadata=hit.metadata,
        explanation=explanation,  # type: ignore[arg-type]  # validated from the dict
        scores=hit.scores,
    )


class ColmaxTools:
    """The tool functions of one MCP server (their limits come from ``settings``).

    Args:
        engine: the engine served.
        settings: the HTTP server's settings, for the same limits (``max_k``, ``max_hits``,
            ``max_documents``, ``max_text_chars``, ``max_response_bytes``, the
            ``request_timeout`` of reads) and search threads.
    """

    def __init__(self, engine: Engine, settings: ServerSettings) -> None:
        self.engine = engine
        self.settings = settings
        self._reads = anyio.CapacityLimiter(settings.search_threads)
        self._writes = anyio.CapacityLimiter(1)
        self._scrub = PathScrubber(engine)

    async def _call(self, limiter: anyio.CapacityLimiter, fn: Callable[..., T], **kwargs: Any) -> T:
        timeout = self.settings.request_timeout if limiter is self._reads else None

        def work() -> T:
            if timeout is None:  # writes, as in the HTTP server, run to their commit
                return fn(**kwargs)
            with deadline(timeout):
                return fn(**kwargs)

        try:
            return await anyio.to_thread.run_sync(work, limiter=limiter)
        except ColmaxError as exc:
            fault = server_fault(exc)
            if fault is not None:
                logger.error("%s: %s", getattr(fn, "__name__", "tool"), exc, exc_info=exc)
                raise ToolError(fault[1] or self._scrub(str(exc))) from exc
            raise ToolError(self._scrub(str(exc))) from exc

    def _sized(self, result: R) -> R:
        """``result``, unless its JSON is over ``settings.max_response_bytes`` (as the HTTP
        server refuses it)."""
        size = len(result.model_dump_json().encode("utf-8"))
        limit = self.settings.max_response_bytes
        if size > limit:
            raise ToolError(
                f"the response would be {size} bytes, over the server's limit of {limit} "
                "(--max-response-bytes): ask for fewer hits (k) and fetch texts with get"
            )
        return result

    def functions(self, *, writes: bool) -> dict[str, Callable[..., Any]]:
        """The tool functions by name, their parameters typed with this server's limits.

        The annotations are set as objects (not the postponed strings this module writes):
        the MCP SDK reads them to build each tool's input schema and validate arguments.
        """
        s = self.settings
        text = Annotated[str, StringConstraints(min_length=1, max_length=s.max_text_chars)]
        # One query per call: k is bounded by max_k and by max_hits (queries x k).
        # strict: JSON true is not k=1 nor 1 explain=true (as the HTTP server's requests).
        k = Annotated[
            int,
            Field(ge=1, le=min(s.max_k, s.max_hits), strict=True, description="how many results"),
        ]
        texts = Annotated[list[text], Field(max_length=s.max_documents)]  # type: ignore[valid-type]
        ids = Annotated[list[Id], Field(max_length=s.max_documents)]
        some_ids = Annotated[list[Id], Field(min_length=1, max_length=s.max_documents)]
        new_docs = Annotated[list[DocumentIn], Field(min_length=1, max_length=s.max_documents)]
        filter_ = Annotated[
            dict[str, Any] | None,
            Field(
                description='metadata filter: {"field": value}, operators $eq $ne $in $nin $gt '
                "$gte $lt $lte $contains $exists, combined with $and $or $not"
            ),
        ]
        hybrid = Annotated[
            Literal["rrf", "minmax", "rerank"] | None,
            Field(
                description="also match words with BM25 and fuse: rrf, minmax, or rerank "
                "(BM25 candidates ordered by late interaction)"
            ),
        ]
        weight = Annotated[
            float | None,
            Field(
                ge=0,
                le=1,
                strict=True,
                description="hybrid only: weight of the late-interaction side (default 0.5)",
            ),
        ]
        explain = Annotated[
            bool, Field(strict=True, description="add which query tokens matched which spans")
        ]
        tools = {
            "search": _typed(
                self.search,
                query=text,
                k=k,
                filter=filter_,
                hybrid=hybrid,
                weight=weight,
                explain=explain,
                returns=SearchResult,
            ),
            "rerank": _typed(
                self.rerank,
                query=text,
                documents=texts | None,
                ids=ids | None,
                k=k | None,
                explain=explain,
                returns=SearchResult,
            ),
            "get": _typed(self.get, ids=some_ids, returns=GetResult),
        }
        if writes:
            tools["add"] = _typed(self.add, documents=new_docs, returns=AddResult)
            tools["delete"] = _typed(self.delete, ids=some_ids, returns=DeleteResult)
        return tools

    async def search(
        self,
        query: str,
        k: int = 10,
        filter: dict[str, Any] | None = None,
        hybrid: str | None = None,
        weight: float | None = None,
        explain: bool = False,
    ) -> SearchResult:
        """Search the index: the k documents that best match the query (late-interaction
        MaxSim), with their ids, scores, text and metadata. Chunks of a document come back as
        one hit per document, as through every door."""
        options: dict[str, Any] = {"hybrid": hybrid} if hybrid is not None else {}
        if weight is not None:
            if hybrid is None:
                raise ToolError("'weight' goes with 'hybrid'")
            options["weight"] = weight
        hits = await self._call(
            self._reads,
            self.engine.search,
            query=query,
            k=k,
            filter=filter,
            explain=explain,
            **options,
        )
        # One query string in, one list of hits out.
        return self._sized(SearchResult(hits=[hit_out(h) for h in cast("list[Hit]", hits)]))

    async def rerank(
        self,
        query: str,
        documents: list[str] | None = None,
        ids: list[str] | None = None,
        k: int | None = None,
        explain: bool = False,
    ) -> SearchResult:
        """Order candidates by how well they match the query: texts (documents), stored
        documents (ids), or both (one id per text). Best first."""
        if documents is None and ids is None:
            raise ToolError("pass 'documents' (texts), 'ids' (stored documents), or both")
        hits = await self._call(
            self._reads,
            self.engine.rerank,
            query=query,
            documents=documents,
            ids=ids,
            k=k,
            explain=explain,
        )
        return self._sized(SearchResult(hits=[hit_out(h) for h in hits]))

    async def get(self, ids: list[str]) -> GetResult:
        """Stored documents by id (text and metadata)."""
        docs = await self._call(self._reads, self.engine.get, ids=ids)
        return self._sized(
            GetResult(
                documents=[DocumentOut(id=d.id, text=d.text, metadata=d.metadata) for d in docs]
            )
        )

    async def add(self, documents: list[DocumentIn]) -> AddResult:
        """Add documents to the index, or replace those whose id exists (upsert)."""
        limit = self.settings.max_text_chars
        if any(len(d.text) > limit for d in documents):
            raise ToolError(f"a document text is longer than {limit} characters")
        ids = [d.id if d.id is not None else str(uuid.uuid4()) for d in documents]
        written = await self._call(
            self._writes,
            self.engine.add,
            documents=[d.text for d in documents],
            ids=ids,
            metadatas=[d.metadata for d in documents],
            show_progress=False,
        )
        return AddResult(ids=written, documents=len(self.engine))

    async def delete(self, ids: list[str]) -> DeleteResult:
        """Delete documents by id (all or nothing: an unknown id deletes none)."""
        deleted = await self._call(self._writes, self.engine.delete, ids=ids)
        return DeleteResult(deleted=deleted, documents=len(self.engine))


def _typed(method: Callable[..., Any], returns: type, **params: Any) -> Callable[..., Any]:
    """A plain function calling ``method``, whose annotations are ``params`` and ``returns``."""

    async def tool(**kwargs: Any) -> Any:
        return await method(**kwargs)

    # The SDK reads the signature for the parameter names and defaults, and the annotations
    # for their types: copy the method's signature without self, then set the types.
    signature = inspect.signature(method)
    tool.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p.replace(annotation=params[p.name]) for p in signature.parameters.values()],
        return_annotation=returns,
    )
    tool.__annotations__ = {**params, "return": returns}
    tool.__name__ = method.__name__
    tool.__doc__ = method.__doc__
    return tool
