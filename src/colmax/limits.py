"""The limits colmax enforces, in one place: every door (the engine, the HTTP server, the MCP
server, the CLI) uses these numbers, so a request refused by one is refused by all.

Each limit says why it exists; ``docs/reliability.md`` lists them with the threat model. Server
limits are defaults of :class:`colmax.server.ServerSettings` (each a ``colmax serve`` flag);
engine limits hold for every caller.

Examples:
    >>> MAX_FILTER_CONDITIONS, MAX_K
    (1000, 1000)
"""

from __future__ import annotations

__all__ = [
    "FILTER_TIMEOUT_S",
    "MAX_BODY_BYTES",
    "MAX_CHARS_PER_TOKEN",
    "MAX_CONNECTIONS",
    "MAX_DOCUMENTS",
    "MAX_FILTER_CONDITIONS",
    "MAX_FILTER_DEPTH",
    "MAX_HITS",
    "MAX_ID_LENGTH",
    "MAX_K",
    "MAX_QUERIES",
    "MAX_RERANK_CANDIDATES",
    "MAX_RESPONSE_BYTES",
    "MAX_TEXT_CHARS",
    "REQUEST_TIMEOUT_S",
]

# ---------------------------------------------------------------------------- the engine
#: Characters in one document id (ids are SQLite keys and travel in every hit).
MAX_ID_LENGTH = 1024
#: Conditions in one metadata filter (each field test; a ``$in`` list of any length is one).
#: A filter is evaluated per document in SQLite: 9,999 ``$or`` branches over 5,000 documents
#: took 12 s, stalling every other reader meanwhile.
MAX_FILTER_CONDITIONS = 1000
#: Nesting of ``$and`` / ``$or`` / ``$not``.
MAX_FILTER_DEPTH = 32
#: Seconds one filter query may run in SQLite before it is interrupted (``FilterTimeoutError``);
#: a cheap filter over a large corpus stays far below it.
FILTER_TIMEOUT_S = 10.0
#: Candidates one ``Engine.rerank`` call scores (all encoded and padded together: 5,000 took
#: 455 MB more memory at dim 16). Rerank larger sets in batches.
MAX_RERANK_CANDIDATES = 1000
#: Characters of a text kept per token the model can use: a text is cut at
#: ``length * MAX_CHARS_PER_TOKEN`` characters before it is tokenized (a 9 MB document took
#: 8.8 s and 1.4 GB to tokenize, for the 180 tokens the model keeps). Word-piece tokenizers
#: give up on words over 100 characters, so only text padded with long runs of whitespace can
#: lose a token to the cut; the cut is logged.
MAX_CHARS_PER_TOKEN = 100

# ---------------------------------------------------------------------------- the network doors
#: Request body size (413 before the body is parsed).
MAX_BODY_BYTES = 16 * 2**20
#: ``k`` of one search or rerank.
MAX_K = 1000
#: Queries in one search request.
MAX_QUERIES = 64
#: Hits one request may ask for, ``len(queries) * k``: 64 queries at k=1000 made a 728-byte
#: request answer 9.8 MB and cost the server 150 MB.
MAX_HITS = 10_000
#: Documents per add or rerank request, ids per delete.
MAX_DOCUMENTS = 1000
#: Characters of one query or document text.
MAX_TEXT_CHARS = 100_000
#: Bytes of one response; a larger one is refused (422) before it is sent: ask for fewer hits,
#: or ``include_text: false``.
MAX_RESPONSE_BYTES = 32 * 2**20
#: Seconds a request may run; its work is stopped after that (503), and as soon as the client
#: disconnects.
REQUEST_TIMEOUT_S = 60.0
#: Connections the HTTP server holds open at once; more get 503 at once (uvicorn's
#: ``limit_concurrency``).
MAX_CONNECTIONS = 64
