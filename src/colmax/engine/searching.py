"""The read pipelines behind ``Engine.search``, ``Engine.rerank`` and ``Engine.explain``.

Search: retrieve (MaxSim, or fused with BM25), group chunks into their parents, explain,
normalise. Every door calls the engine, so every door gets the same answer for the same
options; nothing here is repeated in a door.

Grouping costs nothing on an index without chunks: the first retrieval asks for ``k`` hits, and
only when some are chunks does it ask for more (``fetch_factor`` times as many each round) until
``k`` distinct parents come back or the index has no more matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from colmax.backends.base import Backend
from colmax.chunking.parents import collapse_hits, entry_id, scored_entries
from colmax.chunking.splitter import is_chunk
from colmax.encoders.base import Encoder
from colmax.engine.queries import Queries, encode_documents
from colmax.errors import InvalidInputError, UnknownIdError
from colmax.explain.stored import explain_document, explain_hits
from colmax.filters import Node
from colmax.hybrid.side import HybridSide
from colmax.scoring import maxsim_ragged
from colmax.types import Document, Hit
from colmax.validation import check_ids

__all__ = [
    "Parts",
    "SearchPlan",
    "best_entry",
    "rerank_candidates",
    "run_search",
    "score_candidates",
    "score_stored_candidates",
]

Row = tuple[str, str, dict[str, Any]]  # id, text, metadata


@dataclass(frozen=True)
class Parts:
    """What the pipelines need of an engine."""

    encoder: Encoder | None
    backend: Backend
    hybrid: HybridSide
    pages: Any  # colmax.vision.store.PageStore


@dataclass(frozen=True)
class SearchPlan:
    """Validated search options (see ``Engine.search``)."""

    k: int
    filter: Node | None
    explain: bool = False
    hybrid: str | None = None
    candidates: int = 100
    weight: float = 0.5
    group_chunks: bool = True
    normalize: bool = False
    fetch_factor: int = 4


def run_search(parts: Parts, queries: Queries, plan: SearchPlan) -> list[list[Hit]]:
    """Hits per query, best first, as ``Engine.search`` returns them."""
    first = _retrieve(parts, queries.texts, queries.vectors, plan.k, plan)
    results = []
    for text, qvec, hits in zip(queries.texts, queries.vectors, first):
        if plan.group_chunks and any(is_chunk(h.id, h.metadata) for h in hits):
            hits = _grouped(parts, text, qvec, hits, plan)
        if plan.explain:
            hits = _explained(parts, text, qvec, hits)
        if plan.normalize:
            hits = normalized(hits, int(qvec.shape[0]))
        results.append(hits)
    return results


def _retrieve(
    parts: Parts, texts: Sequence[str | None], qvecs: list[torch.Tensor], n: int, plan: SearchPlan
) -> list[list[Hit]]:
    if plan.hybrid is None:
        return parts.backend.search(qvecs, n, plan.filter)
    return [
        parts.hybrid.search(
            t or "",
            q,
            n,
            plan.filter,
            mode=plan.hybrid,
            candidates=plan.candidates,
            weight=plan.weight,
        )
        for t, q in zip(texts, qvecs)
    ]


def _grouped(
    parts: Parts, text: str | None, qvec: torch.Tensor, hits: list[Hit], plan: SearchPlan
) -> list[Hit]:
    size = plan.k
    parents = collapse_hits(hits, plan.k)
    while len(parents) < plan.k and len(hits) >= size:  # fewer hits than asked: no more exist
        size *= plan.fetch_factor
        hits = _retrieve(parts, [text], [qvec], size, plan)[0]
        parents = collapse_hits(hits, plan.k)
    return parents


def _explained(parts: Parts, text: str | None, qvec: torch.Tensor, hits: list[Hit]) -> list[Hit]:
    """``hits`` with the explanation of the stored entry each came from (a parent hit: its
    best chunk), page heatmaps included."""
    stored = [replace(h, id=entry_id(h)) for h in hits]
    explained = explain_hits(parts.encoder, parts.backend, text, qvec, stored)
    explained = explain_pages(parts, text, qvec, explained)
    return [replace(h, explanation=e.explanation) for h, e in zip(hits, explained)]


def explain_pages(parts: Parts, text: str | None, qvec: torch.Tensor, hits: list[Hit]) -> list[Hit]:
    """Heatmap data for page hits (a no-op for text documents)."""
    from colmax.vision.engine_pages import explain_pages as pages

    return pages(parts.encoder, parts.backend, parts.pages, text, qvec, hits)


def normalized(hits: list[Hit], n_query_vectors: int) -> list[Hit]:
    """MaxSim divided by the number of query vectors: the mean best cosine similarity, in
    ``[-1, 1]`` and comparable across queries. A hybrid hit's fused score is kept; its
    ``scores["late"]`` is divided.

    Examples:
        >>> normalized([Hit("a", 8.0, "", {}, 0)], 32)[0].score
        0.25
    """
    n = max(1, n_query_vectors)
    out = []
    for h in hits:
        if h.scores is None:
            out.append(replace(h, score=h.score / n))
        else:
            sides = {k: (v / n if k == "late" else v) for k, v in h.scores.items()}
            out.append(replace(h, scores=sides))
    return out


# ---------------------------------------------------------------------------------- rerank
def rerank_candidates(
    parts: Parts,
    texts: list[str],
    ids: Sequence[Any] | None,
    batch_size: int | None,
) -> tuple[list[Row], list[torch.Tensor]]:
    """Rows and vectors of rerank candidates given as texts (encoded, except those whose id
    is stored with the same text; candidates by id alone: :func:`score_stored_candidates`).

    Ids only say where stored vectors may be reused: an id that is ``None``, not a valid id,
    or given twice is not looked up (that candidate is encoded), and its hit is named by its
    position.
    """
    reuse: dict[int, np.ndarray] = {}  # position -> stored vectors of the same text
    names = [str(i) for i in range(len(texts))]
    if ids is not None:
        if len(ids) != len(texts):
            raise InvalidInputError(f"got {len(ids)} ids for {len(texts)} documents")
        usable = _lookup_ids(ids)
        names = [str(id_) if isinstance(id_, str) and id_ else n for id_, n in zip(ids, names)]
        stored_ = parts.backend.get_with_vectors(sorted(set(usable.values())), missing="skip")
        found = {d.id: (d.text, v) for d, v in stored_}
        reuse = {
            i: found[id_][1]
            for i, id_ in usable.items()
            if id_ in found and found[id_][0] == texts[i]
        }
    fresh = [i for i in range(len(texts)) if i not in reuse]
    vecs: list[np.ndarray | None] = [reuse.get(i) for i in range(len(texts))]
    if fresh:
        encoded = encode_documents(parts.encoder, [texts[i] for i in fresh], batch_size, None)
        for i, v in zip(fresh, encoded):
            vecs[i] = v
    tensors = [torch.from_numpy(np.asarray(v, dtype=np.float32)) for v in vecs if v is not None]
    return [(names[i], t, {}) for i, t in enumerate(texts)], tensors


def _lookup_ids(ids: Sequence[Any]) -> dict[int, str]:
    """Position -> id for the ids worth looking up: valid and given once."""
    counts: dict[Any, int] = {}
    for id_ in ids:
        if isinstance(id_, str):
            counts[id_] = counts.get(id_, 0) + 1
    out = {}
    for i, id_ in enumerate(ids):
        if isinstance(id_, str) and counts[id_] == 1:
            try:
                check_ids([id_], 1)
            except InvalidInputError:
                continue
            out[i] = id_
    return out


def best_entry(parts: Parts, qvec: torch.Tensor, doc_id: str) -> str:
    """``doc_id`` when it is stored as it is; for a chunked document, its chunk that scores
    best against ``qvec``.

    Raises:
        UnknownIdError: neither.
    """
    entries, _ = scored_entries(parts.backend, check_ids([doc_id], 1))
    if entries == [doc_id]:  # stored as it is
        return doc_id
    scored = parts.backend.score_stored(qvec, entries)
    return max(scored, key=lambda pair: pair[1])[0].id


def score_stored_candidates(
    parts: Parts,
    queries: Queries,
    ids: Sequence[Any],
    k: int | None,
    *,
    normalize: bool,
    explain: bool = False,
) -> list[Hit]:
    """Stored documents by id scored in place by the backend (no vectors copied out: the
    flat index scores its packed copy, as search does), best first; ties keep input order.

    A chunked document's id (as searches return it) is scored by its best chunk and comes
    back as a search returns it: that chunk's text and metadata, plus ``chunk_id``.
    """
    qvec = queries.vectors[0]
    given = check_ids(list(ids), len(ids))
    try:  # the usual case costs nothing more: every id stored as it is
        scored = parts.backend.score_stored(qvec, given)
        owners = list(range(len(given)))
    except UnknownIdError:
        entries, owners = scored_entries(parts.backend, given)  # raises for unknown ids
        scored = parts.backend.score_stored(qvec, entries)
    best: dict[int, int] = {}  # place in ``given`` -> its best entry in ``scored``
    for j, owner in enumerate(owners):
        if owner not in best or scored[j][1] > scored[best[owner]][1]:
            best[owner] = j
    order = sorted(best, key=lambda o: (-scored[best[o]][1], o))[: k or len(best)]
    hits = []
    for rank, owner in enumerate(order):
        doc, score = scored[best[owner]]
        meta = (
            dict(doc.metadata) if doc.id == given[owner] else {**doc.metadata, "chunk_id": doc.id}
        )
        hits.append(Hit(given[owner], score, doc.text, meta, rank, position=owner))
    if explain:
        hits = _explained(parts, queries.texts[0], qvec, hits)
    return normalized(hits, int(qvec.shape[0])) if normalize else hits


def score_candidates(
    parts: Parts,
    queries: Queries,
    rows: list[Row],
    vecs: list[torch.Tensor],
    k: int | None,
    *,
    explain: bool,
    normalize: bool,
) -> list[Hit]:
    """Candidates scored against the (one) query, best first; ``Hit.position`` is each
    candidate's place in the input."""
    if not rows:
        return []
    qvec, text = queries.vectors[0], queries.texts[0]
    scores = maxsim_ragged([qvec], vecs)[0].tolist()
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[: k or len(scores)]
    hits = [
        Hit(rows[i][0], float(scores[i]), rows[i][1], dict(rows[i][2]), r, position=i)
        for r, i in enumerate(order)
    ]
    if explain:  # of the very vectors just scored
        enc = parts.encoder
        hits = [
            replace(h, explanation=explain_document(enc, text, qvec, Document(*rows[i]), vecs[i]))
            for h, i in zip(hits, order)
        ]
    return normalized(hits, int(qvec.shape[0])) if normalize else hits
