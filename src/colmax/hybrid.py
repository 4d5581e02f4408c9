"""Hybrid retrieval: a BM25 side index (bm25s) fused with late interaction.

Three modes, all through :func:`hybrid_search`, which takes the retrievers as callables so any
engine (or a benchmark over cached vectors) can use it:

* ``"rrf"``: reciprocal-rank fusion (Cormack, Clarke and Buettcher, SIGIR 2009):
  ``score(d) = sum_i w_i / (rrf_k + rank_i(d))`` with 1-based ranks and ``rrf_k = 60``.
* ``"minmax"``: each list's scores scaled to ``[0, 1]`` by its own min and max, then
  ``weight * late + (1 - weight) * bm25`` (a document missing from a list gets 0 there).
* ``"rerank"``: BM25 retrieves ``candidates`` documents, MaxSim rescores only those (cheap:
  no search over every token vector).

:class:`BM25Index` is the BM25 side: bm25s over the documents' text, English stopwords and the
Snowball stemmer (PyStemmer) when installed. It is a derived cache of the engine's documents:
:meth:`BM25Index.open` loads the copy saved in a folder when it was built for the engine's
current generation and otherwise rebuilds it from the texts and saves it. The files are
bm25s's own format (``np.save`` arrays and JSON, loaded with ``allow_pickle=False``) plus our
``colmax-bm25.json``; nothing is pickled.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from colmax.errors import InvalidInputError
from colmax.validation import check_k

__all__ = [
    "MODES",
    "BM25Index",
    "BM25Settings",
    "FusedHit",
    "hybrid_search",
    "minmax_fusion",
    "reciprocal_rank_fusion",
]

logger = logging.getLogger(__name__)

Mode = Literal["rrf", "minmax", "rerank"]
#: The fusion modes :func:`hybrid_search` accepts.
MODES: tuple[str, ...] = ("rrf", "minmax", "rerank")
Scored = Sequence[tuple[str, float]]  # (id, score), best first

_META = "colmax-bm25.json"
_FORMAT_VERSION = 1


# ---------------------------------------------------------------------------------- fusion
def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], *, rrf_k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Fuse ranked id lists by reciprocal rank: ``sum_i w_i / (rrf_k + rank_i)``, ranks from 1.

    Ties keep the order in which ids first appear (first list first).

    Examples:
        >>> reciprocal_rank_fusion([["a", "b"], ["b", "c"]], rrf_k=1)
        [('b', 0.8333333333333333), ('a', 0.5), ('c', 0.3333333333333333)]
    """
    weights = _weights(weights, len(rankings))
    if isinstance(rrf_k, bool) or not isinstance(rrf_k, int) or rrf_k < 0:
        raise InvalidInputError(f"rrf_k must be an integer >= 0, got {rrf_k!r}")
    fused: dict[str, float] = {}
    for ranking, w in zip(rankings, weights):
        for rank, id_ in enumerate(ranking, start=1):
            fused[id_] = fused.get(id_, 0.0) + w / (rrf_k + rank)
    return _sorted(fused)


def minmax_fusion(
    results: Sequence[Scored], weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Fuse scored lists after scaling each to ``[0, 1]`` by its own min and max.

    A list whose scores are all equal scales to 1. An id missing from a list gets 0 there.

    Examples:
        >>> minmax_fusion([[("a", 20.0), ("b", 10.0)], [("b", 3.0), ("c", 1.0)]], [0.5, 0.5])
        [('a', 0.5), ('b', 0.5), ('c', 0.0)]
    """
    weights = _weights(weights, len(results))
    fused: dict[str, float] = {}
    for scored, w in zip(results, weights):
        if not scored:
            continue
        values = np.array([s for _, s in scored], dtype=np.float64)
        low, span = values.min(), values.max() - values.min()
        for (id_, _), v in zip(scored, values):
            norm = (v - low) / span if span > 0 else 1.0
            fused[id_] = fused.get(id_, 0.0) + w * float(norm)
        for id_, _ in scored:  # also register ids so ties keep first-appearance order
            fused.setdefault(id_, 0.0)
    return _sorted(fused)


@dataclass(frozen=True)
class FusedHit:
    """One fused result: the fused score and each side's own score and rank (0-based).

    ``late_*`` / ``bm25_*`` are ``None`` when that side did not return the document (for
    ``"rerank"`` the late score is the MaxSim rerank score).
    """

    id: str
    score: float
    rank: int
    late_score: float | None
    late_rank: int | None
    bm25_score: float | None
    bm25_rank: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def hybrid_search(
    k: int,
    *,
    bm25: Callable[[int], Scored],
    late: Callable[[int], Scored] | None = None,
    rerank: Callable[[list[str]], Scored] | None = None,
    mode: str = "rrf",
    candidates: int = 100,
    weight: float = 0.5,
    rrf_k: int = 60,
) -> list[FusedHit]:
    """Fuse BM25 with late interaction for one query.

    Args:
        k: results wanted (fewer when the retrievers return fewer).
        bm25: ``n -> [(id, score), ...]``, the query's best ``n`` BM25 hits, best first
            (documents sharing no term with the query left out).
        late: ``n -> [(id, score), ...]``, the best ``n`` MaxSim hits (modes ``"rrf"``,
            ``"minmax"``).
        rerank: ``ids -> [(id, score), ...]``, MaxSim scores of those documents (mode
            ``"rerank"``; any order).
        mode: ``"rrf"``, ``"minmax"`` or ``"rerank"``.
        candidates: hits taken from each side before fusing (at least ``k`` are taken).
        weight: weight of the late-interaction side in ``[0, 1]``; BM25 gets ``1 - weight``
            (for ``"rrf"`` both are scaled by 2 so 0.5 gives plain RRF).
        rrf_k: the RRF constant.

    Returns:
        Up to ``k`` :class:`FusedHit`, best first; ties keep late-interaction order first.

    Raises:
        InvalidInputError: bad ``k``, ``mode``, ``candidates``, ``weight``, or a callable the
            mode needs is missing.
    """
    k = check_k(k)
    n = max(check_k(candidates, "candidates"), k)
    if mode not in MODES:
        raise InvalidInputError(f"mode must be one of {MODES}, got {mode!r}")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
        raise InvalidInputError(f"weight must be a number in [0, 1], got {weight!r}")
    if mode == "rerank":
        if rerank is None:
            raise InvalidInputError('mode="rerank" needs rerank=... (MaxSim over given ids)')
        lexical = list(bm25(n))
        rescored = _sorted(dict(rerank([i for i, _ in lexical]))) if lexical else []
        return _hits(rescored[:k], late=rescored, bm25=lexical)
    if late is None:
        raise InvalidInputError(f"mode={mode!r} needs late=... (late-interaction search)")
    dense, lexical = list(late(n)), list(bm25(n))
    if mode == "rrf":
        fused = reciprocal_rank_fusion(
            [[i for i, _ in dense], [i for i, _ in lexical]],
            rrf_k=rrf_k,
            weights=[2 * weight, 2 * (1 - weight)],
        )
    else:
        fused = minmax_fusion([dense, lexical], [weight, 1 - weight])
    return _hits(fused[:k], late=dense, bm25=lexical)


def _weights(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0] * n
    out = list(weights)
    if len(out) != n or not all(
        isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in out
    ):
        raise InvalidInputError(f"weights must be {n} numbers >= 0, got {weights!r}")
    return [float(w) for w in out]


def _sorted(scores: dict[str, float]) -> list[tuple[str, float]]:
    # sorted() is stable: equal scores keep insertion (first-appearance) order.
    return sorted(scores.items(), key=lambda item: -item[1])


def _hits(fused: Scored, *, late: Scored, bm25: Scored) -> list[FusedHit]:
    late_at = {id_: (r, s) for r, (id_, s) in enumerate(late)}
    bm25_at = {id_: (r, s) for r, (id_, s) in enumerate(bm25)}
    out = []
    for rank, (id_, score) in enumerate(fused):
        lr, ls = late_at.get(id_, (None, None))
        br, bs = bm25_at.get(id_, (None, None))
        out.append(FusedHit(id_, float(score), rank, ls, lr, bs, br))
    return out


# ---------------------------------------------------------------------------------- BM25
@dataclass(frozen=True)
class BM25Settings:
    """How the BM25 side tokenizes and scores (saved with the index; a change rebuilds it).

    Attributes:
        stemmer: Snowball language for PyStemmer (``None``: no stemming). Without PyStemmer
            installed, stemming is skipped with a warning.
        stopwords: bm25s stopword list name (``"en"``) or ``None``.
        k1, b: BM25 parameters.
        method: bm25s variant (``"lucene"``, ``"robertson"``, ``"atire"``).
    """

    stemmer: str | None = "english"
    stopwords: str | None = "en"
    k1: float = 1.5
    b: float = 0.75
    method: str = "lucene"


class BM25Index:
    """BM25 over document texts, addressed by the engine's string ids.

    Args:
        ids: one string id per text.
        texts: the document texts (an empty text is indexed and never matches).
        settings: tokenization and scoring settings.
        generation: the engine generation these texts come from (saved, checked on open).

    Examples:
        >>> index = BM25Index(["a", "b"], ["late interaction retrieval", "cooking pasta"])
        >>> [id_ for id_, _ in index.search("retrieving interactions", k=5)]
        ['a']
    """

    def __init__(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        settings: BM25Settings | None = None,
        *,
        generation: int = 0,
        _model: Any = None,
    ) -> None:
        bm25s = _bm25s()
        if len(ids) != len(texts):
            raise InvalidInputError(f"got {len(ids)} ids for {len(texts)} texts")
        self.settings = settings or BM25Settings()
        self.generation = generation
        self.ids = list(ids)
        self._row = {id_: i for i, id_ in enumerate(self.ids)}
        self._stemmer = _stemmer(self.settings.stemmer)
        if _model is not None:
            self._model = _model
            return
        s = self.settings
        self._model = bm25s.BM25(k1=s.k1, b=s.b, method=s.method, backend="numpy")
        if self.ids:
            tokens = self._tokenize(list(texts), return_ids=True)
            self._model.index(tokens, show_progress=False)

    def __len__(self) -> int:
        return len(self.ids)

    def search(
        self, query: str, k: int, *, allowed: Collection[str] | None = None
    ) -> list[tuple[str, float]]:
        """Best ``k`` documents for ``query`` by BM25, best first.

        Documents that share no term with the query are left out, so fewer than ``k`` may
        come back. ``allowed`` restricts the search to those ids (a metadata filter).
        """
        k = check_k(k)
        if not isinstance(query, str):
            raise InvalidInputError(f"query must be a str, got {type(query).__name__}")
        if not self.ids:
            return []
        terms = self._tokenize([query], return_ids=False)[0]
        known = [t for t in terms if t in self._model.vocab_dict]
        if not known:
            return []
        scores = np.asarray(self._model.get_scores(known), dtype=np.float64)
        if allowed is not None:
            mask = np.zeros(len(self.ids), dtype=bool)
            mask[[self._row[i] for i in allowed if i in self._row]] = True
            scores = np.where(mask, scores, 0.0)
        top = _top(scores, k)
        return [(self.ids[i], float(scores[i])) for i in top if scores[i] > 0]

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        """Write to ``folder`` (replaced as a whole: a reader sees the old or the new copy)."""
        folder = Path(folder)
        # Not ".*.tmp": the index folder's garbage collector unlinks those (files only).
        staging = folder.with_name(f".{folder.name}-{uuid.uuid4().hex[:8]}.building")
        try:
            if self.ids:
                self._model.save(str(staging), show_progress=False)
            else:  # bm25s cannot save an index of nothing
                staging.mkdir(parents=True)
            meta = {
                "format_version": _FORMAT_VERSION,
                "generation": self.generation,
                "settings": asdict(self.settings),
                "ids": self.ids,
            }
            # Written last: a folder without it is unfinished and is rebuilt.
            (staging / _META).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
            old = folder.with_name(f".{folder.name}-{uuid.uuid4().hex[:8]}.old")
            if folder.exists():
                os.replace(folder, old)
            os.replace(staging, folder)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return folder

    @classmethod
    def load(
        cls,
        folder: str | Path,
        *,
        generation: int | None = None,
        settings: BM25Settings | None = None,
    ) -> BM25Index | None:
        """The index saved in ``folder``, or ``None`` when it is missing, unreadable, built for
        another ``generation`` or with other ``settings`` (then rebuild it)."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / _META).read_text(encoding="utf-8"))
            saved = BM25Settings(**meta["settings"])
            if meta.get("format_version") != _FORMAT_VERSION:
                return None
            if generation is not None and meta["generation"] != generation:
                return None
            if settings is not None and saved != settings:
                return None
            ids = meta["ids"]
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                return None
            model = None
            if ids:
                # bm25s reads JSON and .npy files with allow_pickle=False (its default, made
                # explicit here); a damaged file raises and the cache is rebuilt.
                model = _bm25s().BM25.load(str(folder), allow_pickle=False, show_progress=False)
                if int(model.scores["num_docs"]) != len(ids):
                    return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.info("BM25 cache at %s not usable (%s); it will be rebuilt", folder, exc)
            return None
        return cls(ids, [""] * len(ids), saved, generation=int(meta["generation"]), _model=model)

    @classmethod
    def open(
        cls,
        folder: str | Path,
        generation: int,
        documents: Callable[[], tuple[Sequence[str], Sequence[str]]],
        settings: BM25Settings | None = None,
    ) -> BM25Index:
        """Load the cache in ``folder`` if it matches ``generation`` and ``settings``; else
        build it from ``documents()`` (``(ids, texts)``) and save it there."""
        settings = settings or BM25Settings()
        loaded = cls.load(folder, generation=generation, settings=settings)
        if loaded is not None:
            return loaded
        ids, texts = documents()
        index = cls(ids, texts, settings, generation=generation)
        try:
            index.save(folder)
        except OSError as exc:  # a read-only index folder still gets hybrid search
            logger.warning("could not save the BM25 cache to %s: %s", folder, exc)
        return index

    # ------------------------------------------------------------------ internals
    def _tokenize(self, texts: list[str], *, return_ids: bool) -> Any:
        return _bm25s().tokenize(
            texts,
            stopwords=self.settings.stopwords,
            stemmer=self._stemmer,
            return_ids=return_ids,
            show_progress=False,
        )


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k]
    # Stable order: by score, then by row (the document added first wins a tie).
    return part[np.lexsort((part, -scores[part]))]


def _bm25s() -> Any:
    try:
        import bm25s
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('hybrid search needs bm25s: pip install "colmax[hybrid]"') from exc
    return bm25s


def _stemmer(language: str | None) -> Any:
    if language is None:
        return None
    try:
        import Stemmer
    except ImportError:  # pragma: no cover - depends on the environment
        logger.warning(
            'PyStemmer is not installed: BM25 without stemming (pip install "colmax[hybrid]")'
        )
        return None
    try:
        return Stemmer.Stemmer(language)
    except KeyError as exc:
        raise InvalidInputError(
            f"unknown stemmer language {language!r}; PyStemmer has {Stemmer.algorithms()}"
        ) from exc
