"""Token-level explanations of a MaxSim score: which query token matched which document text.

MaxSim sums, over the query vectors, each one's best cosine similarity among the document's
vectors. An :class:`Explanation` lists those best matches (:class:`TokenMatch`), each with the
character span of the matched token in the original document text, so the summed similarities
are the score itself. It also picks the passage(s) that carry most of the score
(:class:`Passage`), for citations.

Spans come from the encoder's own token plan (``ColBERTEncoder.token_spans``), so they line up
with the rows the encoder really returns: punctuation dropped by the skiplist and padding have no
row; ``[CLS]``, ``[SEP]``, the markers and the query's ``[MASK]`` expansion rows have a row but
no span.

Two entry points:

* :func:`explain` encodes (or takes) the vectors of one query and one document text;
* :func:`explain_vectors` works on any vectors, with or without spans (for example image
  patches made elsewhere: then matches carry row numbers only).

Rendering: :meth:`Explanation.to_html` for notebooks (``_repr_html_`` too) and
:meth:`Explanation.to_terminal` for ``colmax search --explain``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from colmax.errors import InvalidInputError, NoEncoderError
from colmax.validation import check_texts, to_vectors

if TYPE_CHECKING:
    from colmax.vision.heatmap import PageExplanation

__all__ = ["Explanation", "Passage", "Span", "Token", "TokenMatch", "explain", "explain_vectors"]

Span = tuple[int, int]

#: Label of rows that have no token text (special tokens of an unknown tokenizer, image patches).
NO_TOKEN = ""

_PASSAGE_OPEN = (
    '<span class="colmax-passage" title="passage {}" style="border-bottom: 2px solid #1976d2">'
)


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
            >>> e = explain_vectors(np.eye(2)[:1], np.eye(2),
            ...     document_tokens=[Token("<b>", (0, 3)), Token("x", (4, 5))], document_text="<b> x")
            >>> "&lt;b&gt;</mark>" in e.to_html()
            True
        """
        contrib = self.contributions()
        top = max((abs(v) for v in contrib.values()), default=1.0) or 1.0
        who = _who_matched(self.matches)
        parts = ['<div class="colmax-explanation" style="white-space: pre-wrap; line-height: 1.6">']
        current = -1
        for start, end, span, passage in _segments(self.text, contrib, self.passages):
            if passage != current:
                parts.append("</span>" if current >= 0 else "")
                parts.append(_PASSAGE_OPEN.format(passage + 1) if passage >= 0 else "")
                current = passage
            piece = html.escape(self.text[start:end])
            if span is not None:
                alpha = 0.15 + 0.75 * max(contrib[span], 0.0) / top
                title = html.escape(who[span], quote=True)
                piece = (
                    f'<mark style="background: rgba(255, 193, 7, {alpha:.2f})" '
                    f'title="{title}">{piece}</mark>'
                )
            parts.append(piece)
        parts.append("</span>" if current >= 0 else "")
        parts.append(f'<div style="color: #666">MaxSim score {self.score:.3f}</div></div>')
        return "".join(parts)

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
            >>> e = explain_vectors(np.eye(2)[:1], np.eye(2),
            ...     document_tokens=[Token("a", (0, 1)), Token("b", (2, 3))], document_text="a b")
            >>> e.to_terminal(color=False)
            '»[a]« b'
        """
        contrib = self.contributions()
        lo, hi = _window(self.text, self.passages, width)
        on, off = ("\x1b[4m", "\x1b[24m") if color else ("»", "«")
        out, current = [], -1
        for start, end, span, passage in _segments(self.text, contrib, self.passages):
            start, end = max(start, lo), min(end, hi)
            if start >= end:
                continue
            if passage != current:
                out.append((off if current >= 0 else "") + (on if passage >= 0 else ""))
                current = passage
            piece = _printable(self.text[start:end])
            if span is not None:
                piece = f"\x1b[1;33m{piece}\x1b[22;39m" if color else f"[{piece}]"
            out.append(piece)
        if current >= 0:
            out.append(off)
        return ("..." if lo > 0 else "") + "".join(out) + ("..." if hi < len(self.text) else "")


def explain(
    encoder: Any,
    query: str,
    document: str,
    *,
    query_vectors: Any | None = None,
    document_vectors: Any | None = None,
    passage_tokens: int = 32,
    max_passages: int = 1,
) -> Explanation:
    """Explain the MaxSim score of ``document`` for ``query`` token by token.

    Args:
        encoder: the encoder that made (or makes) the vectors; it must offer
            ``token_spans(texts, is_query=...)`` (``ColBERTEncoder`` does).
        query: the query text.
        document: the document text; spans index into it.
        query_vectors: the query's ``(n, dim)`` vectors; encoded now when omitted.
        document_vectors: the document's ``(m, dim)`` vectors, one per token the encoder
            keeps; encoded now when omitted. Vectors pooled at index time (``pool_factor > 1``)
            no longer map to tokens: leave this out so the text is encoded again.
        passage_tokens: passage window, in document vectors.
        max_passages: how many non-overlapping passages to return.

    Returns:
        The :class:`Explanation`; its ``score`` is the MaxSim of the vectors used.

    Raises:
        InvalidInputError: empty texts, or vectors whose row count differs from the tokens
            the encoder keeps for that text (they come from another model or settings).
        NoEncoderError: ``encoder`` is ``None`` or cannot give token spans.
    """
    query, document = check_texts([query, document], "texts")
    if encoder is None or not hasattr(encoder, "token_spans"):
        raise NoEncoderError(
            "explanations need an encoder with token_spans(); for bare vectors use "
            "colmax.explain.explain_vectors"
        )
    q_tokens = _tokens(encoder, query, is_query=True)
    d_tokens = _tokens(encoder, document, is_query=False)
    if query_vectors is None:
        query_vectors = encoder.encode_queries([query])[0]
    if document_vectors is None:
        document_vectors = encoder.encode_documents([document])[0]
    return explain_vectors(
        query_vectors,
        document_vectors,
        query_tokens=q_tokens,
        document_tokens=d_tokens,
        query_text=query,
        document_text=document,
        passage_tokens=passage_tokens,
        max_passages=max_passages,
    )


def explain_vectors(
    query_vectors: Any,
    document_vectors: Any,
    *,
    query_tokens: Sequence[Token] | None = None,
    document_tokens: Sequence[Token] | None = None,
    query_text: str = "",
    document_text: str = "",
    passage_tokens: int = 32,
    max_passages: int = 1,
) -> Explanation:
    """Explain the MaxSim of two sets of vectors; tokens and texts are optional.

    Args:
        query_vectors: ``(n, dim)`` array or tensor (L2-normalised here).
        document_vectors: ``(m, dim)`` array or tensor.
        query_tokens: one :class:`Token` per query row, or ``None``.
        document_tokens: one :class:`Token` per document row, or ``None`` (no spans, no
            passages: e.g. image patches).
        query_text, document_text: the texts the spans index into.
        passage_tokens: passage window, in document rows.
        max_passages: how many non-overlapping passages to return (0: none).

    Returns:
        The :class:`Explanation`.

    Raises:
        InvalidInputError: token lists of the wrong length, spans outside the text, bad
            ``passage_tokens`` / ``max_passages``.
        InvalidEmbeddingError, DimensionMismatchError: malformed vectors.

    Examples:
        >>> import numpy as np
        >>> e = explain_vectors(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.6, 0.8]]))
        >>> [m.doc_position for m in e.matches], round(e.score, 3)
        ([0, 0], 1.4)
    """
    for name, value, low in (
        ("passage_tokens", passage_tokens, 1),
        ("max_passages", max_passages, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidInputError(f"{name} must be an integer >= {low}, got {value!r}")
    q = to_vectors([query_vectors], None, "query_vectors")[0]
    d = to_vectors([document_vectors], q.shape[1], "document_vectors")[0]
    q_tok = _check_tokens(query_tokens, len(q), query_text, "query")
    d_tok = _check_tokens(document_tokens, len(d), document_text, "document")
    sim = torch.from_numpy(q) @ torch.from_numpy(d).T  # float32, like the scoring kernels
    best_sim, best_row = sim.max(dim=1)
    matches = tuple(
        TokenMatch(i, q_tok[i].text, q_tok[i].span, j, d_tok[j].text, d_tok[j].span, s)
        for i, (j, s) in enumerate(zip(best_row.tolist(), best_sim.tolist()))
    )
    score = float(best_sim.sum())
    passages = _passages(matches, d_tok, document_text, passage_tokens, max_passages)
    return Explanation(query_text, document_text, score, matches, passages)


# ---------------------------------------------------------------------------------- tokens
def _tokens(encoder: Any, text: str, *, is_query: bool) -> list[Token]:
    """The encoder's kept rows for ``text``: token text (as written) and span."""
    spans = encoder.token_spans([text], is_query=is_query)[0]
    names = _special_names(encoder, text, is_query=is_query, n=len(spans))
    return [Token(text[s[0] : s[1]] if s is not None else names[i], s) for i, s in enumerate(spans)]


def _special_names(encoder: Any, text: str, *, is_query: bool, n: int) -> list[str]:
    # Rows without a span are [CLS], [SEP], markers and [MASK]; their names come from the token
    # ids of the same plan the encoder uses (ColBERTEncoder.plan), when it has one.
    plan = getattr(encoder, "plan", None)
    tokenizer = getattr(encoder, "tokenizer", None)
    if plan is None or tokenizer is None:
        return [NO_TOKEN] * n
    prepared = plan.prepare([text], is_query=is_query)[0]
    ids = [prepared.input_ids[p] for p in prepared.keep]
    if len(ids) != n:
        return [NO_TOKEN] * n
    return [str(t).strip() for t in tokenizer.convert_ids_to_tokens(ids)]


def _check_tokens(tokens: Sequence[Token] | None, n: int, text: str, what: str) -> list[Token]:
    if tokens is None:
        return [Token(NO_TOKEN, None)] * n
    tokens = list(tokens)
    if len(tokens) != n:
        raise InvalidInputError(
            f"the {what} has {n} vectors but {len(tokens)} tokens: the vectors come from "
            "another model or other settings (or were pooled); encode the text again"
        )
    for i, tok in enumerate(tokens):
        if tok.span is not None and not 0 <= tok.span[0] <= tok.span[1] <= len(text):
            raise InvalidInputError(
                f"{what} token {i} has span {tok.span} outside the text ({len(text)} characters)"
            )
    return tokens


# ---------------------------------------------------------------------------------- passages
def _passages(
    matches: Sequence[TokenMatch],
    tokens: Sequence[Token],
    text: str,
    window: int,
    max_passages: int,
) -> tuple[Passage, ...]:
    """Greedy non-overlapping windows of ``window`` spanned rows with the largest summed
    contribution, each trimmed to its first and last matched token and widened to whole words."""
    rows = [j for j, t in enumerate(tokens) if t.span is not None]
    if not rows or max_passages == 0:
        return ()
    at = {j: i for i, j in enumerate(rows)}
    contrib = np.zeros(len(rows))
    matched: list[list[int]] = [[] for _ in rows]
    for m in matches:
        if m.doc_position in at:
            contrib[at[m.doc_position]] += m.similarity
            matched[at[m.doc_position]].append(m.query_position)
    width = min(window, len(rows))
    used = np.zeros(len(rows), dtype=bool)
    out: list[Passage] = []
    while len(out) < max_passages:
        sums = np.convolve(contrib, np.ones(width), mode="valid")
        blocked = np.convolve(used, np.ones(width, dtype=int), mode="valid") > 0
        sums[blocked] = -np.inf
        first = int(np.argmax(sums))  # earliest among equals
        hit = [i for i in range(first, first + width) if matched[i]]
        if not np.isfinite(sums[first]) or not hit or sums[first] <= 0:
            break
        used[first : first + width] = True
        lo, hi = hit[0], hit[-1]
        start, end = _whole_words(text, tokens[rows[lo]].span, tokens[rows[hi]].span)  # type: ignore[arg-type]
        positions = tuple(sorted(q for i in range(lo, hi + 1) for q in matched[i]))
        score = float(contrib[lo : hi + 1].sum())
        out.append(Passage(start, end, text[start:end], score, positions))
    return tuple(out)


def _whole_words(text: str, first: Span, last: Span) -> Span:
    start, end = first[0], last[1]
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    while end < len(text) and not text[end].isspace():
        end += 1
    return start, end


# ---------------------------------------------------------------------------------- rendering
def _span_list(span: Span | None) -> list[int] | None:
    return None if span is None else [span[0], span[1]]


def _who_matched(matches: Sequence[TokenMatch]) -> dict[Span, str]:
    lines: dict[Span, list[str]] = {}
    for m in matches:
        if m.doc_span is not None:
            lines.setdefault(m.doc_span, []).append(f"{m.query_token or '?'} {m.similarity:.3f}")
    return {span: ", ".join(v) for span, v in lines.items()}


def _segments(
    text: str, contrib: dict[Span, float], passages: Sequence[Passage]
) -> list[tuple[int, int, Span | None, int]]:
    """Cut ``text`` at every span and passage boundary; per piece, the matched span covering
    it (the strongest if spans overlap) and the passage it lies in (-1: none). Flat pieces, so
    the output never needs nested or crossing tags."""
    cuts = {0, len(text)}
    for a, b in contrib:
        cuts.update((a, b))
    for p in passages:
        cuts.update((p.start, p.end))
    bounds = sorted(c for c in cuts if 0 <= c <= len(text))
    spans = sorted(contrib, key=lambda s: -contrib[s])
    pieces = []
    for a, b in pairwise(bounds):
        if a == b:
            continue
        span = next((s for s in spans if s[0] <= a and b <= s[1] and s[0] < s[1]), None)
        passage = next((i for i, p in enumerate(passages) if p.start <= a and b <= p.end), -1)
        pieces.append((a, b, span, passage))
    return pieces


def _printable(text: str) -> str:
    # A stored document may carry escape sequences; printed raw they would restyle or move
    # the user's terminal. Control characters other than newline and tab become U+FFFD.
    return "".join(c if c.isprintable() or c in "\n\t" else "\ufffd" for c in text)


def _window(text: str, passages: Sequence[Passage], width: int | None) -> Span:
    if width is None or len(text) <= width:
        return 0, len(text)
    center = (passages[0].start + passages[0].end) // 2 if passages else width // 2
    lo = max(0, min(center - width // 2, len(text) - width))
    return lo, lo + width
