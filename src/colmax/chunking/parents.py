"""Chunked documents in an engine: parents split on the way in, hits grouped on the way out.

Chunk ``n`` of document ``parent`` is stored as ``"<parent>#<n>"`` with metadata ``parent_id``
(see :mod:`colmax.chunking.splitter`). :func:`upsert_documents` / :func:`delete_documents` write
and delete whole parents; :func:`collapse_hits` keeps the best chunk per parent;
:func:`search_parents` fetches enough chunks to return ``k`` distinct parents.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast, overload

from colmax.chunking.splitter import Chunker, chunk_id
from colmax.errors import InvalidInputError, UnknownIdError
from colmax.types import Hit
from colmax.validation import check_flag, check_ids

if TYPE_CHECKING:
    from colmax.engine import Engine

__all__ = [
    "chunker_for",
    "collapse_hits",
    "delete_documents",
    "existing_chunk_ids",
    "search_parents",
    "upsert_documents",
]

logger = logging.getLogger(__name__)

# Markers the encoder adds around a document ([CLS], the document marker, [SEP]); a chunk of
# ``document_length - _SPECIAL_TOKENS`` tokens is encoded without truncation.
_SPECIAL_TOKENS = 3


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
    from colmax.explain.stored import explain_hits

    if not hits or engine.encoder is None:
        return hits
    stored = [
        replace(h, id=h.metadata["chunk_id"]) if isinstance(h.metadata.get("parent_id"), str) else h
        for h in hits
    ]
    qvecs = engine.encoder.encode_queries([query])[0]
    explained = explain_hits(engine.encoder, engine.backend, query, qvecs, stored)
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
        engine.delete(stale)
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
