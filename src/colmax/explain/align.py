"""How an explanation is computed: each query vector's best document row, and passages.

Spans come from the encoder's own token plan (``ColBERTEncoder.token_spans``), so they line up
with the rows the encoder really returns: punctuation dropped by the skiplist and padding have no
row; ``[CLS]``, ``[SEP]``, the markers and the query's ``[MASK]`` expansion rows have a row but
no span.

Two entry points:

* :func:`explain` encodes (or takes) the vectors of one query and one document text;
* :func:`explain_vectors` works on any vectors, with or without spans (for example image
  patches made elsewhere: then matches carry row numbers only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from colmax.errors import InvalidInputError, NoEncoderError
from colmax.explain.model import NO_TOKEN, Explanation, Passage, Span, Token, TokenMatch
from colmax.validation import check_texts, to_vectors

__all__ = ["explain", "explain_vectors"]


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
