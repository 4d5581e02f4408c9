"""Request and response models, built per app so the limits in the OpenAPI schema are the
ones the server enforces (``maxLength``, ``maximum``, ``maxItems``).

Requests reject unknown fields (a typo such as ``"top_k"`` is a 422, not a silently ignored
option) and strings that cannot be stored as UTF-8 (lone surrogates, which Python's JSON parser
lets through).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from colmax.limits import MAX_ID_LENGTH
from colmax.server.settings import ServerSettings

__all__ = ["Schemas", "build_schemas"]

Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]
#: Largest ``pool_factor`` an add request may ask for (beyond a few, quality drops fast).
MAX_POOL_FACTOR = 64
#: Largest ``candidates`` a hybrid search may take from each side.
MAX_CANDIDATES = 10_000


class _Request(BaseModel):
    # strict: JSON true is not k=1, "5" is not 5 and 1 is not explain=true (pydantic's lax
    # mode would take them); a client's type error gets a 422 naming the field.
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="after")
    def _utf8(self) -> _Request:
        _check_utf8(self.__dict__, "body")
        return self


def _check_utf8(value: Any, where: str) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                f"{where} holds text that is not valid Unicode (a lone surrogate)"
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_utf8(key, where)
            _check_utf8(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_utf8(item, f"{where}[{i}]")
    elif isinstance(value, BaseModel):
        _check_utf8(value.__dict__, where)


class MatchOut(BaseModel):
    """One query vector and the document token it matched best."""

    query_position: int
    query_token: str
    query_span: list[int] | None = Field(description="[start, end) in the query, or null")
    doc_position: int
    doc_token: str
    doc_span: list[int] | None = Field(description="[start, end) in the hit's text, or null")
    similarity: float = Field(description="this query vector's share of the MaxSim score")


class PassageOut(BaseModel):
    """A stretch of the hit's text carrying much of the score (for citations)."""

    start: int
    end: int
    text: str
    score: float
    query_positions: list[int]


class PageOut(BaseModel):
    """For a page image hit: where each query vector's match lies on the page."""

    image: str = Field(description="the page image's name in the index's page store")
    grid: list[int] = Field(description="[rows, cols] of the patch grid over the page")
    matched_patches: list[list[list[int]]] = Field(
        description="per query vector, the [row, col] patches of the vector it matched "
        "(empty: a prompt token); draw them with GET /page-heatmap"
    )


class ExplanationOut(BaseModel):
    """Why a document got its MaxSim score: see ``colmax.explain.Explanation``."""

    id: str | None
    query: str
    score: float = Field(description="MaxSim of the explained vectors (sum of the similarities)")
    matches: list[MatchOut]
    passages: list[PassageOut]
    page: PageOut | None = Field(None, description="page image hits only")


class HitOut(BaseModel):
    """One result. For chunked documents ``id`` is the parent id and ``metadata`` holds
    ``parent_id``, ``chunk_id``, ``chunk_index``, ``char_start``, ``char_end``."""

    id: str
    score: float = Field(
        description="raw MaxSim: sum over query vectors of the best cosine (the fused score "
        "for hybrid search)"
    )
    rank: int = Field(description="0-based position")
    text: str | None = Field(
        description="the stored text; null when the request said include_text: false"
    )
    metadata: dict[str, Any]
    explanation: ExplanationOut | None = Field(
        None, description="token-level explanation, when the request asked for it"
    )
    scores: dict[str, float] | None = Field(
        None, description='hybrid search: each side\'s own score ("late": MaxSim, "bm25")'
    )


class SearchResponse(BaseModel):
    """One list of hits per query (a single ``query`` gives one list)."""

    results: list[list[HitOut]]


class RerankResponse(BaseModel):
    """Candidates sorted by score, best first."""

    hits: list[HitOut]


class AddResponse(BaseModel):
    """Sent only after the write is committed to disk."""

    ids: list[str] = Field(description="the document ids written, in request order")
    entries: int = Field(description="stored entries written (chunks when chunking)")
    documents: int = Field(description="entries in the index after the write")
    generation: int | None = Field(
        description="the index generation this write committed (null: the index keeps none, "
        "as a Qdrant index)"
    )


class DeleteResponse(BaseModel):
    """Sent only after the delete is committed to disk."""

    deleted: int = Field(description="stored entries deleted (a chunked document's chunks)")
    documents: int = Field(description="entries in the index after the delete")
    generation: int | None


class DocumentOut(BaseModel):
    """A stored document (or chunk)."""

    id: str
    text: str
    metadata: dict[str, Any]


class HealthResponse(BaseModel):
    """Liveness and a document count."""

    status: str
    documents: int


class InfoResponse(BaseModel):
    """What the index holds and how the server is configured."""

    documents: int
    tokens: int | None = Field(description="token vectors (null: not counted, Qdrant)")
    dim: int
    index: str
    model: str | None
    generation: int | None = Field(description="write counter (null: not kept, Qdrant)")
    settings: dict[str, Any]


@dataclass(frozen=True)
class Schemas:
    """The request models of one app (their limits come from its settings)."""

    SearchRequest: type[BaseModel]
    RerankRequest: type[BaseModel]
    AddRequest: type[BaseModel]
    DeleteRequest: type[BaseModel]


def build_schemas(settings: ServerSettings) -> Schemas:
    """Request models whose constraints are ``settings``' limits."""
    Text = Annotated[str, StringConstraints(min_length=1, max_length=settings.max_text_chars)]
    K = Annotated[int, Field(ge=1, le=settings.max_k)]
    Filter = Annotated[
        dict[str, Any] | None,
        Field(
            description='metadata filter: {"field": value}, $eq $ne $in $nin $gt $gte $lt '
            "$lte $contains $exists, $and $or $not",
            examples=[{"year": {"$gte": 2020}}],
        ),
    ]

    class SearchRequest(_Request):
        """Exactly one of ``query`` and ``queries``."""

        query: Text | None = None
        queries: (
            Annotated[list[Text], Field(min_length=1, max_length=settings.max_queries)] | None
        ) = None
        k: K = 10
        filter: Filter = None
        group_chunks: bool = Field(
            True, description="one hit per parent document (best chunk) instead of raw chunks"
        )
        explain: bool = Field(
            False, description="give each hit its token-level explanation (matched spans)"
        )
        include_text: bool = Field(
            True, description="false: hits carry no text (smaller responses; fetch texts by id)"
        )
        hybrid: Literal["rrf", "minmax", "rerank"] | None = Field(
            None,
            description="fuse with BM25 over the stored texts: rrf (reciprocal rank fusion), "
            "minmax (weighted min-max scaled scores) or rerank (BM25 candidates ordered by "
            "MaxSim); hits then carry the fused score and 'scores' per side",
        )
        candidates: int | None = Field(
            None,
            ge=1,
            le=MAX_CANDIDATES,
            description="hybrid only: hits taken from each side before fusing (default 100)",
        )
        weight: float | None = Field(
            None,
            ge=0,
            le=1,
            description="hybrid only: weight of the late-interaction side (default 0.5)",
        )

        @model_validator(mode="after")
        def _one_query_field(self) -> SearchRequest:
            if (self.query is None) == (self.queries is None):
                raise ValueError("pass exactly one of 'query' (a string) and 'queries' (a list)")
            if self.hybrid is None and (self.candidates is not None or self.weight is not None):
                raise ValueError("'candidates' and 'weight' go with 'hybrid'")
            n = 1 if self.queries is None else len(self.queries)
            if n * self.k > settings.max_hits:
                raise ValueError(
                    f"{n} queries x k={self.k} asks for {n * self.k} hits, over the server's "
                    f"limit of {settings.max_hits} per request (--max-hits): ask for fewer"
                )
            return self

    class RerankRequest(_Request):
        """``documents`` (texts), ``ids`` (stored documents), or both (one id per text)."""

        query: Text
        documents: Annotated[list[Text], Field(max_length=settings.max_documents)] | None = None
        ids: Annotated[list[Id], Field(max_length=settings.max_documents)] | None = None
        k: K | None = None
        explain: bool = Field(
            False, description="give each hit its token-level explanation (matched spans)"
        )
        include_text: bool = Field(True, description="false: hits carry no text")

        @model_validator(mode="after")
        def _candidates(self) -> RerankRequest:
            if self.documents is None and self.ids is None:
                raise ValueError("pass 'documents' (texts), 'ids' (stored documents), or both")
            return self

    class DocumentIn(_Request):
        """A document to add; without ``id`` one is assigned (a UUID)."""

        id: Id | None = None
        text: Text
        metadata: dict[str, Any] = Field(default_factory=dict)

    class AddRequest(_Request):
        """Documents to add or replace (upsert by id)."""

        documents: Annotated[
            list[DocumentIn], Field(min_length=1, max_length=settings.max_documents)
        ]
        pool_factor: int = Field(
            1,
            ge=1,
            le=MAX_POOL_FACTOR,
            description="token pooling: store ceil(n / pool_factor) cluster means of each "
            "document's n token vectors (1: every vector; 2 halves the index)",
        )

    class DeleteRequest(_Request):
        """Ids to delete; a chunked document's id deletes all its chunks."""

        ids: Annotated[list[Id], Field(min_length=1, max_length=settings.max_documents)]

    return Schemas(SearchRequest, RerankRequest, AddRequest, DeleteRequest)
