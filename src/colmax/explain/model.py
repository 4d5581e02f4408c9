"""What an explanation is: the best match of every query vector, and the best passages.

MaxSim sums, over the query vectors, each one's best cosine similarity among the document's
vectors. An :class:`Explanation` lists those best matches (:class:`TokenMatch`), each with the
character span of the matched token in the original document text, so the summed similarities
are the score itself. It also holds the passage(s) that carry most of the score
(:class:`Passage`), for citations. How they are computed: :mod:`colmax.explain.align`; how they
are drawn: :mod:`colmax.explain.render`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from colmax.errors import InvalidInputError

if TYPE_CHECKING:
    from colmax.vision.heatmap import PageExplanation

__all__ = ["NO_TOKEN", "Explanation", "Passage", "Span", "Token", "TokenMatch"]

Span = tuple[int, int]

#: Label of rows that have no token text (special tokens of an unknown tokenizer, image patches).
NO_TOKEN = ""


@dataclass(frozen=True)
class Token:
    """One vector row: its token text and its character span in the text (``None``: none)."""

    text: str
    span: Span | None


@dataclass(frozen=True)
class TokenMatch:
    """One query vector and the document vector it matched best.

    Attributes:
        query_position: row of the query vector.
        query_token: its token (``"[MASK]"`` for expansion rows).
        query_span: its ``(start, end)`` characters in the query, ``None`` for special and
            expansion tokens.
        doc_position: row of the best document vector.
        doc_token: the matched token as written in the document (or its special-token name).
        doc_span: ``(start, end)`` characters of the match in the document text; ``None`` for
            ``[CLS]``, ``[SEP]``, the marker, or vectors without text.
        similarity: the cosine similarity, this query vector's share of the score.
    """

    query_position: int
    query_token: str
    query_span: Span | None
    doc_position: int
    doc_token: str
    doc_span: Span | None
    similarity: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (spans as ``[start, end]`` lists or ``None``)."""
        return {
            "query_position": self.query_position,
            "query_token": self.query_token,
            "query_span": _span_list(self.query_span),
            "doc_position": self.doc_position,
            "doc_token": self.doc_token,
            "doc_span": _span_list(self.doc_span),
            "similarity": self.similarity,
        }


@dataclass(frozen=True)
class Passage:
    """A stretch of the document that carries much of the score, for citation.

    Attributes:
        start: first character in the document text.
        end: one past the last character (``text == document[start:end]``).
        text: the passage.
        score: summed similarities of the matches inside it.
        query_positions: the query vectors whose best match lies inside, ascending.
    """

    start: int
    end: int
    text: str
    score: float
    query_positions: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "score": self.score,
            "query_positions": list(self.query_positions),
        }


@dataclass(frozen=True)
class Explanation:
    """Why a document got its MaxSim score for a query.

    Attributes:
        query: the query text (``""`` when only vectors were given).
        text: the document text the spans index into.
        score: MaxSim of the vectors explained, equal to the sum of ``matches`` similarities.
        matches: one :class:`TokenMatch` per query vector, in query order.
        passages: best passages, best first (empty when no match has a span).
        id: the document id when known.
        page: for a page image (vision retrievers), which query tokens matched which
            patches (:class:`~colmax.vision.heatmap.PageExplanation`; drawn by
            :meth:`to_image`), else ``None``.
    """

    query: str
    text: str
    score: float
    matches: tuple[TokenMatch, ...]
    passages: tuple[Passage, ...] = field(default_factory=tuple)
    id: str | None = None
    page: PageExplanation | None = None

    def with_id(self, id_: str) -> Explanation:
        """A copy carrying the document id."""
        return replace(self, id=id_)

    def contributions(self) -> dict[Span, float]:
        """Summed similarity per matched document span (several query tokens may share one)."""
        out: dict[Span, float] = {}
        for m in self.matches:
            if m.doc_span is not None:
                out[m.doc_span] = out.get(m.doc_span, 0.0) + m.similarity
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: what LangChain / LlamaIndex metadata and the server carry."""
        out: dict[str, Any] = {
            "id": self.id,
            "query": self.query,
            "score": self.score,
            "matches": [m.to_dict() for m in self.matches],
            "passages": [p.to_dict() for p in self.passages],
        }
        if self.page is not None:
            out["page"] = self.page.to_dict()
        return out

    def to_image(self, path: str | Path, *, token: int | None = None, alpha: float = 0.5) -> Path:
        """Write the page with a heatmap of the patches that matched the query (PNG).

        The heatmap shows each patch's best similarity to any query token (``token=i``: to
        query vector ``i`` only); the patches that won a query token's MaxSim term are
        outlined and labelled with that token. Needs ``colmax[vision]``.

        Args:
            path: the PNG file to write.
            token: a query vector position, or ``None`` for all.
            alpha: heatmap opacity in ``[0, 1]``.

        Returns:
            The path written.

        Raises:
            InvalidInputError: this explanation is not of a page image (a text document, or
                a page whose model gives no patch grid).
        """
        if self.page is None:
            raise InvalidInputError(
                "to_image() draws page images; this explanation is of a document without a "
                "stored page image and patch grid (index pages with a vision retriever: "
                "engine.add_files([...]) or engine.add(images=[...]))"
            )
        return self.page.save(path, token=token, alpha=alpha)

    def to_html(self) -> str:
        """The document as HTML, matches highlighted (stronger = larger share of the score),
        best passages underlined; every piece of text is escaped.

        Examples:
            >>> import numpy as np
            >>> from colmax.explain import Token, explain_vectors
            >>> e = explain_vectors(np.eye(2)[:1], np.eye(2),
            ...     document_tokens=[Token("<b>", (0, 3)), Token("x", (4, 5))], document_text="<b> x")
            >>> "&lt;b&gt;</mark>" in e.to_html()
            True
        """
        from colmax.explain.render import to_html

        return to_html(self)

    def _repr_html_(self) -> str:  # Jupyter picks this up
        return self.to_html()

    def to_terminal(self, *, color: bool = True, width: int | None = None) -> str:
        """The document with matches highlighted for a terminal (control characters in the
        text are shown as U+FFFD, so a document cannot send escape sequences).

        Args:
            color: ANSI bold yellow for matches and underline for the best passage; without
                color, matches are wrapped in ``[...]`` and the passage in ``»...«``.
            width: cut the text to this many characters around the best passage (``None``:
                the whole text).

        Examples:
            >>> import numpy as np
            >>> from colmax.explain import Token, explain_vectors
            >>> e = explain_vectors(np.eye(2)[:1], np.eye(2),
            ...     document_tokens=[Token("a", (0, 1)), Token("b", (2, 3))], document_text="a b")
            >>> e.to_terminal(color=False)
            '»[a]« b'
        """
        from colmax.explain.render import to_terminal

        return to_terminal(self, color=color, width=width)


def _span_list(span: Span | None) -> list[int] | None:
    return None if span is None else [span[0], span[1]]
