"""Split long texts into overlapping token windows (the text splitter; no engine involved).

A ColBERT encoder truncates a document at ``document_length`` tokens, so the tail of a long
document is never searched. :class:`Chunker` cuts a text into windows of at most ``max_tokens``
tokens of the encoder's own tokenizer (whitespace-separated words when there is none), with
``overlap`` tokens repeated between neighbours so a passage that straddles a cut is still whole
in one chunk. Cuts move back to the start of a word where that keeps at least half a window, so
words are not split into pieces.

Chunk ``n`` of document ``parent`` gets the id ``"<parent>#<n>"`` and the parent's metadata plus
``parent_id``, ``chunk_index``, ``char_start`` and ``char_end`` (``text[char_start:char_end]`` is
the chunk).

Examples:
    >>> chunker = Chunker(max_tokens=4, overlap=1)  # no tokenizer: whitespace words
    >>> [c.text for c in chunker.split("doc", "one two three four five six seven")]
    ['one two three four', 'four five six seven']
    >>> chunker.split("doc", "one two three four five")[1].metadata
    {'parent_id': 'doc', 'chunk_index': 1, 'char_start': 14, 'char_end': 23}
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from colmax.errors import InvalidInputError
from colmax.validation import check_positive_int

__all__ = ["CHUNK_KEYS", "Chunk", "Chunker", "chunk_id", "is_chunk"]

logger = logging.getLogger(__name__)

#: Metadata keys every chunk carries.
CHUNK_KEYS = ("parent_id", "chunk_index", "char_start", "char_end")
_WORD = re.compile(r"\S+")


def chunk_id(parent_id: str, index: int) -> str:
    """The id of chunk ``index`` of ``parent_id``.

    Examples:
        >>> chunk_id("report.md", 2)
        'report.md#2'
    """
    return f"{parent_id}#{index}"


def is_chunk(id_: str, metadata: Mapping[str, Any]) -> bool:
    """Whether a stored entry is a chunk made by :class:`Chunker`: its id is
    ``chunk_id(metadata["parent_id"], metadata["chunk_index"])``. (A ``parent_id`` field alone
    does not make a chunk: users may store one of their own.)

    Examples:
        >>> is_chunk("a#1", {"parent_id": "a", "chunk_index": 1}), is_chunk("b", {"parent_id": "a"})
        (True, False)
    """
    parent, index = metadata.get("parent_id"), metadata.get("chunk_index")
    return (
        isinstance(parent, str)
        and isinstance(index, int)
        and not isinstance(index, bool)
        and id_ == chunk_id(parent, index)
    )


@dataclass(frozen=True)
class Chunk:
    """One piece of a document: its id, text and metadata (parent metadata + chunk keys)."""

    id: str
    text: str
    metadata: dict[str, Any]


class Chunker:
    """Token-aware splitter.

    Args:
        max_tokens: tokens per chunk (without the encoder's special tokens).
        overlap: tokens shared by neighbouring chunks, ``0 <= overlap < max_tokens``.
        tokenizer: a Hugging Face tokenizer; a "fast" one (with offsets) counts the encoder's
            own tokens. ``None`` (or a slow tokenizer) counts whitespace-separated words.

    Raises:
        InvalidInputError: ``max_tokens < 1`` or ``overlap`` out of range.
    """

    def __init__(self, max_tokens: int, overlap: int = 0, tokenizer: Any | None = None) -> None:
        check_positive_int(max_tokens, "chunk size")
        if (
            isinstance(overlap, bool)
            or not isinstance(overlap, int)
            or not (0 <= overlap < max_tokens)
        ):
            raise InvalidInputError(
                f"chunk overlap must be an integer in [0, {max_tokens - 1}] (below the chunk "
                f"size {max_tokens}), got {overlap!r}"
            )
        if tokenizer is not None and not getattr(tokenizer, "is_fast", False):
            logger.warning("the tokenizer gives no character offsets: chunking by words instead")
            tokenizer = None
        self.max_tokens = max_tokens
        self.overlap = overlap
        self.tokenizer = tokenizer

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans ``(start, end)`` of the chunks of ``text`` (none for blank text)."""
        offsets, word_start = self._tokens(text)
        if not offsets:
            stripped = text.strip()
            if not stripped:
                return []
            start = text.index(stripped[0])
            return [(start, start + len(stripped))]
        return [
            (offsets[a][0], offsets[b - 1][1])
            for a, b in _windows(word_start, self.max_tokens, self.overlap)
        ]

    def split(
        self, parent_id: str, text: str, metadata: Mapping[str, Any] | None = None
    ) -> list[Chunk]:
        """Chunks of one document, ids ``<parent_id>#0``, ``#1``, ... (none for blank text)."""
        chunks: list[Chunk] = []
        for start, end in self.spans(text):
            piece = text[start:end]
            if not piece.strip():
                continue
            n = len(chunks)
            meta = {
                **(metadata or {}),
                "parent_id": parent_id,
                "chunk_index": n,
                "char_start": start,
                "char_end": end,
            }
            chunks.append(Chunk(chunk_id(parent_id, n), piece, meta))
        return chunks

    def _tokens(self, text: str) -> tuple[list[tuple[int, int]], list[bool]]:
        """Token character offsets and whether each token starts a word."""
        if self.tokenizer is None:
            offsets = [m.span() for m in _WORD.finditer(text)]
            return offsets, [True] * len(offsets)
        # The tokenizer loaded it already: importing colmax.encoders costs nothing more here.
        from colmax.encoders.tokens import tokenizer_lock

        with tokenizer_lock(self.tokenizer):  # shared with the encoder: see encoders.tokens
            encoding = self.tokenizer(
                text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
            )
        pairs = [(int(a), int(b)) for a, b in encoding["offset_mapping"]]
        words = encoding.word_ids()
        keep = [i for i, (a, b) in enumerate(pairs) if b > a]  # zero-width tokens carry no text
        offsets = [pairs[i] for i in keep]
        word_start = [
            j == 0 or words[i] is None or words[i] != words[keep[j - 1]] for j, i in enumerate(keep)
        ]
        return offsets, word_start


def _windows(word_start: Sequence[bool], size: int, overlap: int) -> list[tuple[int, int]]:
    """Token index windows ``[start, end)`` covering every token, each at most ``size`` long."""
    n = len(word_start)
    out: list[tuple[int, int]] = []
    start = previous_end = 0
    while start < n:
        end = min(start + size, n)
        if end < n:
            # Each window must reach past the previous one, or it would add nothing.
            low = max(start + max(1, size // 2), previous_end + 1)
            end = _snap(word_start, end, low=low)
        out.append((start, end))
        previous_end = end
        if end == n:
            break
        # Always move forward, even when the overlap would snap back to the same start.
        start = _snap(word_start, max(end - overlap, start + 1), low=start + 1)
    return out


def _snap(word_start: Sequence[bool], i: int, low: int) -> int:
    """The last word start in ``[low, i]``, or ``i`` itself when there is none."""
    for j in range(i, low - 1, -1):
        if word_start[j]:
            return j
    return i
