"""Chunked documents in an index: parents split on the way in, hits grouped on the way out.

Chunk ``n`` of document ``parent`` is stored as ``"<parent>#<n>"`` with metadata ``parent_id``
and ``chunk_index`` (see :mod:`colmax.chunking.splitter`). The engine uses these functions
when it is given a chunk size (``Engine(..., chunk_tokens=...)``, recorded in the index folder):

- :func:`plan_write`: the entries to write for some parents and the stale ones to delete in the
  same write (chunks of a previous, longer version; the whole document a chunked version
  replaces, and the other way round);
- :func:`entries_of`: the stored entries of parents (their chunks, or the document itself);
- :func:`collapse_hits`: the best chunk per parent, as a hit named after the parent.

:func:`upsert_documents`, :func:`delete_documents` and :func:`search_parents` are the earlier
engine-level helpers, kept (deprecated) for one release: ``Engine.add``, ``Engine.delete`` and
``Engine.search`` do the same now.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from colmax.backends.base import Backend, Missing
from colmax.chunking.splitter import CHUNK_KEYS, Chunker, chunk_id, is_chunk
from colmax.errors import DuplicateIdError, InvalidInputError, UnknownIdError
from colmax.limits import MAX_ID_LENGTH
from colmax.types import Document, Hit

if TYPE_CHECKING:
    from colmax.engine import Engine

__all__ = [
    "WritePlan",
    "chunker_for",
    "chunker_with",
    "collapse_hits",
    "delete_documents",
    "documents_by_id",
    "entries_of",
    "entry_id",
    "existing_chunk_ids",
    "plan_write",
    "scored_entries",
    "search_parents",
    "upsert_documents",
]

logger = logging.getLogger(__name__)

# Markers the encoder adds around a document ([CLS], the document marker, [SEP]); a chunk of
# ``document_length - _SPECIAL_TOKENS`` tokens is encoded without truncation.
_SPECIAL_TOKENS = 3


def chunker_with(encoder: Any, max_tokens: int | None, overlap: int = 0) -> Chunker | None:
    """A :class:`Chunker` using ``encoder``'s tokenizer, or ``None`` when ``max_tokens`` is falsy.

    Logs a warning when chunks are longer than the encoder keeps (the tail would be cut).
    """
    if not max_tokens:
        return None
    tokenizer = getattr(encoder, "tokenizer", None)
    limit = getattr(getattr(encoder, "settings", None), "document_length", None)
    if isinstance(limit, int) and max_tokens > limit - _SPECIAL_TOKENS:
        logger.warning(
            "chunks of %d tokens exceed what the encoder keeps (document_length=%d, about %d "
            "text tokens): the end of each chunk will be truncated",
            max_tokens,
            limit,
            limit - _SPECIAL_TOKENS,
        )
    return Chunker(max_tokens, overlap, tokenizer)


def chunker_for(engine: Engine, max_tokens: int | None, overlap: int = 0) -> Chunker | None:
    """:func:`chunker_with` the engine's encoder."""
    return chunker_with(engine.encoder, max_tokens, overlap)


def collapse_hits(hits: Sequence[Hit], k: int | None = None) -> list[Hit]:
    """Keep the best hit per parent document, ranks renumbered.

    A chunk hit (see :func:`~colmax.chunking.splitter.is_chunk`) becomes a hit whose id is the
    parent id, whose text is the best chunk, and whose metadata adds ``chunk_id``. Other hits
    pass through unchanged (except ``rank``).

    Args:
        hits: hits sorted best first (as ``Engine.search(..., group_chunks=False)`` returns
            them).
        k: keep at most this many parents.

    Examples:
        >>> hits = [Hit("a#1", 9.0, "x", {"parent_id": "a", "chunk_index": 1}, 0),
        ...         Hit("a#0", 8.0, "y", {"parent_id": "a", "chunk_index": 0}, 1),
        ...         Hit("b", 7.0, "z", {}, 2)]
        >>> [(h.id, h.metadata.get("chunk_id"), h.rank) for h in collapse_hits(hits)]
        [('a', 'a#1', 0), ('b', None, 1)]
    """
    out: list[Hit] = []
    seen: set[str] = set()
    for hit in hits:
        chunk = is_chunk(hit.id, hit.metadata)
        key: str = hit.metadata["parent_id"] if chunk else hit.id
        if key in seen:
            continue
        seen.add(key)
        metadata = {**hit.metadata, "chunk_id": hit.id} if chunk else dict(hit.metadata)
        # replace() keeps the hit's explanation and hybrid scores (those of the best chunk).
        out.append(replace(hit, id=key, metadata=metadata, rank=len(out)))
        if k is not None and len(out) >= k:
            break
    return out


def entry_id(hit: Hit) -> str:
    """The id of the stored entry a hit came from: for a chunked document's hit, its best
    chunk's (``metadata["chunk_id"]``, added by :func:`collapse_hits`); else the hit's own. A
    document stored whole whose own metadata has a ``chunk_id`` key keeps its id: only a real
    chunk of the hit's document counts.

    Examples:
        >>> meta = {"parent_id": "a", "chunk_index": 1, "chunk_id": "a#1"}
        >>> entry_id(Hit("a", 1.0, "", meta, 0)), entry_id(Hit("b", 1.0, "", {"chunk_id": "x"}, 0))
        ('a#1', 'b')
    """
    entry = hit.metadata.get("chunk_id")
    if not isinstance(entry, str) or hit.metadata.get("parent_id") != hit.id:
        return hit.id
    return entry if is_chunk(entry, hit.metadata) else hit.id


# ---------------------------------------------------------------------------------- writes
@dataclass(frozen=True)
class WritePlan:
    """What one add writes: the entries (chunks, or whole documents) and the stale entries
    deleted in the same write; ``parents`` are the documents' ids, in input order."""

    parents: list[str]
    ids: list[str]
    texts: list[str]
    metadatas: list[dict[str, Any]]
    remove: list[str]


def plan_write(
    backend: Backend,
    chunker: Chunker | None,
    ids: list[str],
    texts: list[str],
    metadatas: list[dict[str, Any]],
) -> WritePlan:
    """Split the documents (when ``chunker``) and find what they replace.

    A document stored whole that is now chunked, chunks beyond the new count, and the chunks
    of a document now stored whole are stale. Existence is checked in batches: one look-up
    for all first chunks, then only for the parents that have chunks.
    """
    if chunker is None:
        _check_no_takeover(backend, ids, metadatas)
        return WritePlan(ids, ids, texts, metadatas, _chunks_beyond(backend, dict.fromkeys(ids, 0)))
    chunks = [c for i, t, m in zip(ids, texts, metadatas) for c in chunker.split(i, t, m)]
    too_long = next((c.id for c in chunks if len(c.id) > MAX_ID_LENGTH), None)
    if too_long is not None:  # stored, it could be neither deleted nor reranked by its id
        raise InvalidInputError(
            f"chunk id {too_long!r:.80} is longer than {MAX_ID_LENGTH} characters: with "
            "chunking, ids leave room for the '#<n>' of their chunks; nothing was written"
        )
    entry_ids, entry_metas = [c.id for c in chunks], [c.metadata for c in chunks]
    _check_no_takeover(backend, entry_ids, entry_metas)
    counts = dict.fromkeys(ids, 0)
    for c in chunks:
        counts[c.metadata["parent_id"]] += 1
    stale = _chunks_beyond(backend, counts)
    stale += sorted(backend.existing([p for p, n in counts.items() if n > 0]))  # stored whole
    return WritePlan(ids, entry_ids, [c.text for c in chunks], entry_metas, stale)


def _check_no_takeover(
    backend: Backend, ids: Sequence[str], metadatas: Sequence[Mapping[str, Any]]
) -> None:
    """Refuse a write that would replace a stored entry of another kind under the same id: a
    chunk ``"<parent>#<n>"`` over a document stored whole with that id, or a whole document
    over another document's chunk. An upsert replaces *its own* entry; either of these would
    silently overwrite an unrelated document (and a later delete of the parent would take it).

    Only ids with a ``#`` can be chunk ids, so other writes cost no look-up.

    Raises:
        DuplicateIdError: such an id, named with its owner; nothing is written.
    """
    suspects = [i for i in ids if "#" in i]
    present = backend.existing(suspects) if suspects else set()
    if not present:
        return
    new_is_chunk = {i: is_chunk(i, m) for i, m in zip(ids, metadatas) if i in present}
    for doc in backend.get(list(new_is_chunk), missing="skip"):
        if is_chunk(doc.id, doc.metadata) == new_is_chunk[doc.id]:
            continue
        parent, index = doc.id.rsplit("#", 1)
        if new_is_chunk[doc.id]:
            raise DuplicateIdError(
                f"{doc.id!r} is stored as a document of its own: chunk {index} of {parent!r} "
                f"would replace it. Nothing was written; delete {doc.id!r} first or give "
                f"{parent!r} another id"
            )
        raise DuplicateIdError(
            f"{doc.id!r} is chunk {index} of the stored document {parent!r}. Nothing was "
            f"written; update {parent!r} instead, or choose another id"
        )


def _chunks_beyond(backend: Backend, counts: Mapping[str, int]) -> list[str]:
    """The stored chunks ``<parent>#<n>`` with ``n >= counts[parent]`` (contiguous from there)."""
    return [d.id for d in _chunk_documents_beyond(backend, counts)]


def _chunk_documents_beyond(backend: Backend, counts: Mapping[str, int]) -> list[Document]:
    """:func:`_chunks_beyond` as the stored documents (read once, to tell chunks from
    documents merely named like them)."""
    found: list[str] = []
    pending = dict(counts)
    while pending:
        probe = {chunk_id(p, n): p for p, n in pending.items()}
        present = backend.existing(list(probe))
        pending = {probe[c]: pending[probe[c]] + 1 for c in present}
        found += sorted(present)
    if not found:
        return []
    return [d for d in backend.get(found, missing="skip") if is_chunk(d.id, d.metadata)]


def _chunks_by_parent(backend: Backend, parents: Sequence[str]) -> dict[str, list[str]]:
    """The stored chunk ids of each of ``parents`` that has any, in chunk order."""
    by_parent: dict[str, list[str]] = {}
    for c in _chunks_beyond(backend, dict.fromkeys(parents, 0)):  # rounds: every #0, #1, ...
        by_parent.setdefault(c.rsplit("#", 1)[0], []).append(c)
    return by_parent


def scored_entries(backend: Backend, ids: Sequence[str]) -> tuple[list[str], list[int]]:
    """What to score for documents ``ids``: each one stored as it is, or a chunked
    document's chunks; with, per entry, the place in ``ids`` of the document it belongs to.

    Raises:
        UnknownIdError: an id is neither stored nor a chunked document.
    """
    whole = backend.existing(ids)
    chunks = _chunks_by_parent(backend, [i for i in ids if i not in whole])
    absent = [i for i in ids if i not in whole and i not in chunks]
    if absent:
        raise UnknownIdError(f"{len(absent)} id(s) not in the index, e.g. {absent[:5]!r}")
    entries: list[str] = []
    owners: list[int] = []
    for n, id_ in enumerate(ids):
        mine = [id_] if id_ in whole else chunks[id_]
        entries += mine
        owners += [n] * len(mine)
    return entries, owners


def entries_of(backend: Backend, ids: Sequence[str], missing: Missing = "raise") -> list[str]:
    """The stored entries of documents ``ids``: each one's chunks and the document itself.

    Raises:
        UnknownIdError: an id is neither stored nor a chunked parent, and ``missing="raise"``.
    """
    unique = list(dict.fromkeys(ids))
    by_parent = _chunks_by_parent(backend, unique)
    whole = backend.existing(unique)
    absent = [i for i in unique if i not in whole and i not in by_parent]
    if absent and missing == "raise":
        raise UnknownIdError(
            f"{len(absent)} id(s) not in the index, e.g. {absent[:5]!r}; nothing was deleted"
        )
    out: list[str] = []
    for i in unique:
        out += by_parent.get(i, [])
        if i in whole:
            out.append(i)
    return list(dict.fromkeys(out))


def documents_by_id(
    backend: Backend, ids: Sequence[str], missing: Missing = "raise"
) -> list[Document]:
    """Stored entries by id, in the order given; an id stored as chunks only (a chunked
    document, as searches name it) is its document, rebuilt by :func:`rebuilt_document`.

    Costs one look-up when every id is stored as it is.

    Raises:
        UnknownIdError: an id is neither stored nor a chunked document, and
            ``missing="raise"``.
    """
    unique = list(dict.fromkeys(ids))
    stored = {d.id: d for d in backend.get(unique, missing="skip")}
    others = [i for i in unique if i not in stored]
    if others:
        by_parent: dict[str, list[Document]] = {}
        for doc in _chunk_documents_beyond(backend, dict.fromkeys(others, 0)):
            by_parent.setdefault(doc.metadata["parent_id"], []).append(doc)
        absent = [i for i in others if i not in by_parent]
        if absent and missing == "raise":
            raise UnknownIdError(f"{len(absent)} id(s) not in the index, e.g. {absent[:5]!r}")
        for parent, parts in by_parent.items():
            stored[parent] = rebuilt_document(parent, parts)
    return [stored[i] for i in ids if i in stored]


def rebuilt_document(parent_id: str, chunks: Sequence[Document]) -> Document:
    """The document ``chunks`` were cut from: its metadata (every chunk carries it, plus the
    chunk keys) and its text from its first word to its last, by the chunks' character
    spans: an overlap appears once, the whitespace between two chunks (not stored) comes
    back as as many spaces.

    Examples:
        >>> parts = [Document("d#1", "c d", {"y": 1, "parent_id": "d", "chunk_index": 1,
        ...                                   "char_start": 4, "char_end": 7}),
        ...          Document("d#0", "a b c", {"y": 1, "parent_id": "d", "chunk_index": 0,
        ...                                     "char_start": 0, "char_end": 5})]
        >>> rebuilt_document("d", parts)
        Document(id='d', text='a b c d', metadata={'y': 1})
    """
    ordered = sorted(chunks, key=lambda c: c.metadata["chunk_index"])
    metadata = {k: v for k, v in ordered[0].metadata.items() if k not in CHUNK_KEYS}
    spans = [span for span in map(_span, ordered) if span is not None]
    if len(spans) < len(ordered):  # spans edited away: the chunks in order
        return Document(parent_id, " ".join(c.text for c in ordered), metadata)
    parts, end = [ordered[0].text], spans[0][1]
    for chunk, (start, stop) in zip(ordered[1:], spans[1:]):
        if start >= end:
            parts.append(" " * (start - end) + chunk.text)
        else:  # the first end - start characters repeat the previous chunk's tail
            parts.append(chunk.text[end - start :])
        end = max(end, stop)
    return Document(parent_id, "".join(parts), metadata)


def _span(chunk: Document) -> tuple[int, int] | None:
    """A chunk's ``(char_start, char_end)`` in its document, when they fit its text."""
    start, stop = chunk.metadata.get("char_start"), chunk.metadata.get("char_end")
    if type(start) is int and type(stop) is int and stop - start == len(chunk.text):
        return start, stop
    return None


# ---------------------------------------------------------------------------------- deprecated
def _deprecated(name: str, instead: str) -> None:
    warnings.warn(
        f"colmax.chunking.{name} is deprecated (removed in 0.3): {instead}",
        DeprecationWarning,
        stacklevel=3,
    )


def existing_chunk_ids(engine: Engine, parent_id: str, start: int = 0) -> list[str]:
    """Ids ``<parent_id>#<n>`` in the index for ``n = start, start+1, ...`` until one is missing
    (only real chunks of ``parent_id``: see :func:`~colmax.chunking.splitter.is_chunk`)."""
    return _chunks_beyond(engine.backend, {parent_id: start})


def search_parents(
    engine: Engine,
    query: str | list[str],
    k: int = 10,
    filter: Mapping[str, Any] | None = None,
    *,
    fetch_factor: int = 4,
    explain: bool = False,
    **search_kwargs: Any,
) -> Any:
    """Deprecated: ``engine.search(query, k, filter)`` groups chunks into parents itself.

    ``fetch_factor`` is ignored (the engine fetches what it needs).
    """
    _deprecated("search_parents", "engine.search() groups chunks by parent (group_chunks=True)")
    return engine.search(query, k, filter, explain=explain, group_chunks=True, **search_kwargs)


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
    """Deprecated: ``Engine(..., chunk_tokens=N)`` and ``engine.add(texts, ids, metadatas)``.

    Returns:
        The ids of the stored entries (chunk ids when chunking), as before.
    """
    _deprecated("upsert_documents", "open the engine with chunk_tokens=... and call engine.add()")
    metas = list(metadatas) if metadatas is not None else [None] * len(ids)
    if not (len(ids) == len(texts) == len(metas)):
        raise InvalidInputError(
            f"got {len(ids)} ids, {len(texts)} texts and {len(metas)} metadatas; pass one each"
        )
    written = engine._add_texts(chunker, list(texts), list(ids), metas, **add_kwargs)
    return written.entry_ids


def delete_documents(engine: Engine, ids: Sequence[str]) -> int:
    """Deprecated: ``engine.delete(ids)`` deletes a chunked document's chunks itself."""
    _deprecated("delete_documents", "engine.delete(ids) deletes chunked documents whole")
    return engine.delete(list(ids))
