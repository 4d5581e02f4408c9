"""Split long documents into overlapping token windows, and map chunk hits back to parents.

A ColBERT encoder truncates a document at ``document_length`` tokens, so the tail of a long
document is never searched. :class:`Chunker` cuts a text into windows of at most ``max_tokens``
tokens of the encoder's own tokenizer (whitespace-separated words when there is none), with
``overlap`` tokens repeated between neighbours so a passage that straddles a cut is still whole
in one chunk. Cuts move back to the start of a word where that keeps at least half a window, so
words are not split into pieces.

Chunk ``n`` of document ``parent`` gets the id ``"<parent>#<n>"`` and the parent's metadata plus
``parent_id``, ``chunk_index``, ``char_start`` and ``char_end`` (``text[char_start:char_end]`` is
the chunk). :func:`collapse_hits` keeps the best chunk per parent; :func:`search_parents` fetches
enough chunks to return ``k`` distinct parents.

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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast, overload

from colmax.errors import ColmaxError, InvalidInputError, UnknownIdError
from colmax.types import Hit
from colmax.validation import check_flag, check_ids

if TYPE_CHECKING:
    from colmax.engine import Engine

__all__ = [
    "CHUNK_KEYS",
    "Chunk",
    "Chunker",
    "chunk_id",
    "chunker_for",
    "collapse_hits",
    "delete_documents",
    "existing_chunk_ids",
    "search_parents",
    "upsert_documents",
]

logger = logging.getLogger(__name__)

#: Metadata keys every chunk carries.
CHUNK_KEYS = ("parent_id", "chunk_index", "char_start", "char_end")
_WORD = re.compile(r"\S+")
# Markers the encoder adds around a document ([CLS], the document marker, [SEP]); a chunk of
# ``document_length - _SPECIAL_TOKENS`` tokens is encoded without truncation.
_SPECIAL_TOKENS = 3


def chunk_id(parent_id: str, index: int) -> str:
    """The id of chunk ``index`` of ``parent_id``.

    Examples:
        >>> chunk_id("report.md", 2)
        'report.md#2'
    """
    return f"{parent_id}#{index}"


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
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise InvalidInputError(f"chunk size must be a positive integer, got {max_tokens!r}")
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


def chunker_for(engine: Engine, max_tokens: int | None, overlap: int = 0) -> Chunker | None:
    """A :class:`Chunker` using ``engine``'s tokenizer, or ``None`` when ``max_tokens`` is falsy.

    Logs a warning when chunks are longer than the encoder keeps (the tail would be cut).
    """
    if not max_tokens:
        return None
    encoder = engine.encoder
    tokenizer = getattr(encoder, "tokenizer", None)
    settings = getattr(encoder, "settings", None)
    limit = getattr(settings, "document_length", None)
    if isinstance(limit, int) and max_tokens > limit - _SPECIAL_TOKENS:
        logger.warning(
            "chunks of %d tokens exceed what the encoder keeps (document_length=%d, about %d "
            "text tokens): the end of each chunk will be truncated",
            max_tokens,
            limit,
            limit - _SPECIAL_TOKENS,
        )
    return Chunker(max_tokens, overlap, tokenizer)


def collapse_hits(hits: Sequence[Hit], k: int | None = None) -> list[Hit]:
    """Keep the best hit per parent document, ranks renumbered.

    A chunk hit (metadata ``parent_id``) becomes a hit whose id is the parent id, whose text is
    the best chunk, and whose metadata adds ``chunk_id``. Hits without ``parent_id`` pass
    through unchanged (except ``rank``).

    Args:
        hits: hits sorted best first (as ``Engine.search`` returns them).
        k: keep at most this many parents.

    Examples:
        >>> hits = [Hit("a#1", 9.0, "x", {"parent_id": "a"}, 0),
        ...         Hit("a#0", 8.0, "y", {"parent_id": "a"}, 1), Hit("b", 7.0, "z", {}, 2)]
        >>> [(h.id, h.metadata.get("chunk_id"), h.rank) for h in collapse_hits(hits)]
        [('a', 'a#1', 0), ('b', None, 1)]
    """
    out: list[Hit] = []
    seen: set[str] = set()
    for hit in hits:
        parent = hit.metadata.get("parent_id")
        is_chunk = isinstance(parent, str)
        key: str = parent if isinstance(parent, str) else hit.id
        if key in seen:
            continue
        seen.add(key)
        metadata = {**hit.metadata, "chunk_id": hit.id} if is_chunk else dict(hit.metadata)
        # replace() keeps the hit's explanation and hybrid scores (those of the best chunk).
        out.append(replace(hit, id=key, metadata=metadata, rank=len(out)))
        if k is not None and len(out) >= k:
            break
    return out


@overload
def search_parents(
    engine: Engine,
    query: str,
    k: int = ...,
    filter: Mapping[str, Any] | None = ...,
    *,
    fetch_factor: int = ...,
    explain: bool = ...,
    **search_kwargs: Any,
) -> list[Hit]: ...


@overload
def search_parents(
    engine: Engine,
    query: list[str],
    k: int = ...,
    filter: Mapping[str, Any] | None = ...,
    *,
    fetch_factor: int = ...,
    explain: bool = ...,
    **search_kwargs: Any,
) -> list[list[Hit]]: ...


def search_parents(
    engine: Engine,
    query: str | list[str],
    k: int = 10,
    filter: Mapping[str, Any] | None = None,
    *,
    fetch_factor: int = 4,
    explain: bool = False,
    **search_kwargs: Any,
) -> list[Hit] | list[list[Hit]]:
    """Like ``Engine.search``, but one hit per parent document (see :func:`collapse_hits`).

    Fetches ``k * fetch_factor`` chunks, and more (``fetch_factor`` times as many each round)
    while fewer than ``k`` distinct parents came back and the index has more matches.

    Args:
        engine: the engine to search.
        query: one query (returns ``list[Hit]``) or a list (returns one list per query).
        k: parents per query.
        filter: metadata filter, as for ``Engine.search``.
        fetch_factor: how many chunks to fetch per wanted parent, and the growth per round.
        explain: give each returned hit the explanation of its best chunk (only the ``k``
            returned hits are explained, not every chunk fetched).
        **search_kwargs: passed to ``Engine.search`` (``hybrid``, ``candidates``, ``weight``).
    """
    check_flag(explain, "explain")
    queries = [query] if isinstance(query, str) else list(query)
    fetch = k * fetch_factor
    first = cast("list[list[Hit]]", engine.search(queries, k=fetch, filter=filter, **search_kwargs))
    out: list[list[Hit]] = []
    for text, hits in zip(queries, first):
        size = fetch
        parents = collapse_hits(hits, k)
        while len(parents) < k and len(hits) >= size:  # fewer hits than asked: no more exist
            size *= fetch_factor
            hits = cast("list[Hit]", engine.search(text, k=size, filter=filter, **search_kwargs))
            parents = collapse_hits(hits, k)
        out.append(_explained(engine, text, parents) if explain else parents)
    return out[0] if isinstance(query, str) else out


def _explained(engine: Engine, query: str, hits: list[Hit]) -> list[Hit]:
    """``hits`` (collapsed) with the explanation of the stored entry each one came from."""
    from colmax.engine_explain import explain_hits

    if not hits or engine.encoder is None:
        return hits
    stored = [
        replace(h, id=h.metadata["chunk_id"]) if isinstance(h.metadata.get("parent_id"), str) else h
        for h in hits
    ]
    qvecs = engine.encoder.encode_queries([query])[0]
    explained = explain_hits(engine.encoder, engine.backend, query, qvecs, stored)
    explained = engine._explain_pages(query, qvecs, explained)  # page hits: heatmap data
    return [replace(h, explanation=e.explanation) for h, e in zip(hits, explained)]


def existing_chunk_ids(engine: Engine, parent_id: str, start: int = 0) -> list[str]:
    """Ids ``<parent_id>#<n>`` in the index for ``n = start, start+1, ...`` until one is missing.

    Only documents whose metadata ``parent_id`` is ``parent_id`` count, so a document that
    merely has such an id is never taken for a chunk.
    """
    found = []
    n = start
    while chunk_id(parent_id, n) in engine:
        found.append(chunk_id(parent_id, n))
        n += 1
    if not found:
        return []
    docs = engine.get(found)
    return [d.id for d in docs if d.metadata.get("parent_id") == parent_id]


def upsert_documents(
    engine: Engine,
    ids: Sequence[str],
    texts: Sequence[str],
    metadatas: Sequence[Mapping[str, Any] | None] | None = None,
    *,
    chunker: Chunker | None = None,
    replace_stale: bool = True,
    **add_kwargs: Any,
) -> list[str]:
    """Add or replace documents, split into chunks when a ``chunker`` is given.

    When a document is replaced, pieces of its previous version that the new version does not
    overwrite (extra chunks, or the whole unchunked document) are deleted afterwards, so the
    index holds exactly the new version. The add is one atomic engine call; the clean-up is a
    second one.

    Args:
        engine: the engine to write to.
        ids, texts, metadatas: the documents (parallel lists).
        chunker: split each document into chunks (``None``: store documents whole).
        replace_stale: look for and delete stale pieces (``False`` skips the look-up, for a
            fresh index).
        **add_kwargs: passed to ``Engine.add`` (``batch_size``, ``show_progress``).

    Returns:
        The ids written (chunk ids when chunking).
    """
    metas = list(metadatas) if metadatas is not None else [None] * len(ids)
    if not (len(ids) == len(texts) == len(metas)):
        raise InvalidInputError(
            f"got {len(ids)} ids, {len(texts)} texts and {len(metas)} metadatas; pass one each"
        )
    ids = check_ids(list(ids), len(texts))  # parent ids, before they become chunk ids
    if chunker is None:
        written = engine.add(list(texts), ids=list(ids), metadatas=metas, **add_kwargs)
        stale = [c for i in ids for c in existing_chunk_ids(engine, i)] if replace_stale else []
    else:
        chunks = [c for i, t, m in zip(ids, texts, metas) for c in chunker.split(i, t, m)]
        written = engine.add(
            [c.text for c in chunks],
            ids=[c.id for c in chunks],
            metadatas=[c.metadata for c in chunks],
            **add_kwargs,
        )
        stale = []
        if replace_stale:
            counts: dict[str, int] = {i: 0 for i in ids}
            for c in chunks:
                counts[c.metadata["parent_id"]] += 1
            for parent, n in counts.items():
                stale += existing_chunk_ids(engine, parent, start=n)
                if parent in engine and n > 0:
                    stale.append(parent)  # the document was stored whole before
    if stale:
        # The add is committed: a failure of this second write must not make the call raise
        # (a client retrying without ids would store everything twice). The stale pieces stay
        # until the document is written again; say so.
        try:
            engine.delete(stale)
        except (ColmaxError, OSError) as exc:
            logger.warning(
                "documents written, but %d stale chunk(s) of their previous versions could "
                "not be deleted (%s): %s",
                len(stale),
                exc,
                stale[:10],
            )
    return written


def delete_documents(engine: Engine, ids: Sequence[str]) -> int:
    """Delete documents by id; a chunked document's id deletes all its chunks.

    Returns:
        How many stored entries (documents and chunks) were deleted.

    Raises:
        UnknownIdError: an id is neither a document nor a chunked parent (nothing is deleted).
    """
    targets: list[str] = []
    missing: list[str] = []
    for id_ in dict.fromkeys(ids):
        pieces = existing_chunk_ids(engine, id_)
        if id_ in engine:
            pieces.append(id_)
        if not pieces:
            missing.append(id_)
        targets += pieces
    if missing:
        raise UnknownIdError(
            f"{len(missing)} id(s) not in the index, e.g. {missing[:5]!r}; nothing was deleted"
        )
    return engine.delete(list(dict.fromkeys(targets)))
