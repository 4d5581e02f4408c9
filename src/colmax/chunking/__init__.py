"""Chunking: split long documents into token windows, and map chunk hits back to parents.

- :mod:`colmax.chunking.splitter`: :class:`Chunker`, the text splitter (``"<parent>#<n>"`` ids,
  parent metadata plus ``parent_id``, ``chunk_index``, ``char_start``, ``char_end``);
- :mod:`colmax.chunking.parents`: parents in an engine (write, delete, search grouped by
  parent).

Examples:
    >>> chunker = Chunker(max_tokens=4, overlap=1)  # no tokenizer: whitespace words
    >>> [c.id for c in chunker.split("doc", "one two three four five six seven")]
    ['doc#0', 'doc#1']
"""

from __future__ import annotations

from colmax.chunking.parents import (
    chunker_for,
    collapse_hits,
    delete_documents,
    existing_chunk_ids,
    search_parents,
    upsert_documents,
)
from colmax.chunking.splitter import CHUNK_KEYS, Chunk, Chunker, chunk_id

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
