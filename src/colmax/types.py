"""Small immutable result types shared by the engine and every door."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from colmax.explain.model import Explanation

__all__ = ["Document", "Hit"]


@dataclass(frozen=True)
class Document:
    """A stored document: its string id, text and JSON-compatible metadata.

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
