"""Small immutable result types shared by the engine and every door."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from colmax.explain.model import Explanation

__all__ = [
    "EXPLANATION_KEY",
    "PAGE_IMAGE_KEY",
    "SCORES_KEY",
    "Document",
    "Hit",
    "IndexInfo",
    "StoredDocument",
    "WrittenIds",
]

#: Metadata key under which the doors put a hit's explanation (``Explanation.to_dict()``).
EXPLANATION_KEY = "colmax_explanation"
#: Metadata key under which the doors put a hybrid hit's per-side scores.
SCORES_KEY = "colmax_scores"
#: Metadata key naming a page hit's stored image (see :attr:`Hit.is_page`).
PAGE_IMAGE_KEY = "image"


@dataclass(frozen=True)
class Document:
    """A stored document: its string id, text and JSON-compatible metadata.

    Also importable as :data:`StoredDocument`, a name that does not clash with LangChain's or
    LlamaIndex's ``Document`` in code that uses both.

    Examples:
        >>> Document(id="a", text="hello", metadata={"year": 2024}).metadata["year"]
        2024
    """

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """One search or rerank result.

    Attributes:
        id: the document's string id (for rerank of raw texts: ``"0"``, ``"1"``, ... by position).
        score: raw MaxSim: the sum over query tokens of each token's best cosine similarity
            among the document's tokens. With unit vectors it lies in ``[-n_q, n_q]`` where
            ``n_q`` is the number of query vectors (``query_length`` for ColBERT checkpoints).
        text: the document text.
        metadata: the document metadata (a fresh dict: mutate it freely).
        rank: 0-based position in the result list.
        position: for rerank: the candidate's 0-based position in the ``documents`` / ``ids``
            given (map a hit back to the input without parsing ids); ``None`` for search.
        explanation: the token-level :class:`~colmax.explain.Explanation` of the MaxSim score
            when asked for (``search(..., explain=True)``, ``rerank(..., explain=True)``),
            else ``None``.
        scores: each side's own score for hybrid search (``{"late": MaxSim, "bm25": BM25}``;
            a side that did not return the document is absent; ``score`` is then the fused
            score), else ``None``.

    Examples:
        >>> Hit(id="a", score=12.5, text="hello", metadata={}, rank=0).rank
        0
    """

    id: str
    score: float
    text: str
    metadata: dict[str, Any]
    rank: int
    explanation: Explanation | None = None
    scores: dict[str, float] | None = None
    position: int | None = None

    @property
    def is_page(self) -> bool:
        """Whether the hit is a page image (``Engine.add_files`` / ``add(images=...)``): then
        ``Engine.page_image_path`` / ``page_image_bytes`` give its image."""
        from colmax.vision.store import is_page_name

        return is_page_name(self.metadata.get(PAGE_IMAGE_KEY))

    def extras(self) -> dict[str, Any]:
        """The explanation (as a dict) and hybrid per-side scores under :data:`EXPLANATION_KEY`
        and :data:`SCORES_KEY`, for a framework's metadata; ``{}`` when the hit has neither.

        Examples:
            >>> Hit("a", 1.0, "", {}, 0, scores={"late": 1.0}).extras()
            {'colmax_scores': {'late': 1.0}}
        """
        out: dict[str, Any] = {}
        if self.explanation is not None:
            out[EXPLANATION_KEY] = self.explanation.to_dict()
        if self.scores is not None:
            out[SCORES_KEY] = dict(self.scores)
        return out


#: :class:`Document` under a name that does not clash with LangChain's or LlamaIndex's.
StoredDocument = Document


class WrittenIds(list[str]):
    """The ids :meth:`colmax.Engine.add` wrote: one per document, in input order (a list).

    Attributes:
        entries: how many entries were stored: chunks when the engine chunks, else
            ``len(self)``.

    Examples:
        >>> ids = WrittenIds(["a", "b"], 5)
        >>> ids == ["a", "b"], ids.entries
        (True, 5)
    """

    def __init__(self, ids: list[str], entries: int) -> None:
        super().__init__(ids)
        self.entries = entries


def counts_dict(info: Any) -> dict[str, Any]:
    """The flat dict of an :class:`IndexInfo` or a backend's ``BackendInfo``: documents,
    tokens (when known), dim, index, path, generation (when known), then the details."""
    out: dict[str, Any] = {"documents": info.documents}
    if info.tokens is not None:
        out["tokens"] = info.tokens
    out.update(dim=info.dim, index=info.index, path=info.path)
    if info.generation is not None:
        out["generation"] = info.generation
    out.update(info.details)
    return out


@dataclass(frozen=True)
class IndexInfo:
    """What :meth:`colmax.Engine.info` reports (and ``colmax info`` prints).

    Attributes:
        documents: stored entries (documents, or chunks when the engine chunks).
        dim: token vector dimension.
        index: ``"flat"``, ``"plaid"`` or ``"qdrant"``.
        path: the index folder, or ``None`` in memory.
        tokens: stored token vectors (``None``: the backend does not count them, Qdrant).
        generation: the committed write counter (``None``: the backend keeps none, Qdrant).
        encoder: the encoder's settings (``None``: a vectors-only engine).
        chunking: ``{"tokens": N, "overlap": M}`` when the engine splits added documents.
        details: what the index kind adds (segments, dead tokens, plaid drift; Qdrant mode,
            collection, ...).

    Examples:
        >>> info = IndexInfo(documents=2, dim=4, index="flat", path=None, tokens=9)
        >>> info.tokens, info.to_dict()["tokens"]
        (9, 9)
    """

    documents: int
    dim: int
    index: str
    path: str | None
    tokens: int | None = None
    generation: int | None = None
    encoder: dict[str, Any] | None = None
    chunking: dict[str, int] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A flat JSON-ready dict: the fields (``tokens`` / ``generation`` only when known)
        and the ``details`` beside them."""
        out = counts_dict(self)
        out["encoder"] = self.encoder
        if self.chunking is not None:
            out["chunking"] = self.chunking
        return out

    def __getitem__(self, key: str) -> Any:
        """Deprecated dict-style access (``info["tokens"]``): use the attributes."""
        attribute = f"info.{key}" if key in self.__dataclass_fields__ else f"info.details[{key!r}]"
        warnings.warn(
            f"Engine.info() returns an IndexInfo: use {attribute} instead of info[{key!r}]",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        """Deprecated dict-style access: use the attributes."""
        warnings.warn(
            "Engine.info() returns an IndexInfo: use its attributes instead of info.get(...)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.to_dict().get(key, default)
