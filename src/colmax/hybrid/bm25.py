"""The BM25 side index of hybrid search: bm25s over the stored document texts.

:class:`BM25Index` uses English stopwords and the Snowball stemmer (PyStemmer) when installed.
It is a derived cache of the engine's documents: :meth:`BM25Index.open` loads the copy saved in
a folder when it was built for the engine's current generation and otherwise rebuilds it from
the texts and saves it. The files are bm25s's own format (``np.save`` arrays and JSON, loaded
with ``allow_pickle=False``) plus our ``colmax-bm25.json``; nothing is pickled.
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
from typing import Any

import numpy as np

from colmax.errors import InvalidInputError
from colmax.validation import check_positive_int

__all__ = ["BM25Index", "BM25Settings"]

logger = logging.getLogger(__name__)

_META = "colmax-bm25.json"
_FORMAT_VERSION = 1


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
            if tokens.vocab:
                self._model.index(tokens, show_progress=False)
            else:  # no document has a term (page images, stopwords only): bm25s cannot
                self._model = None  # index that; every search finds nothing

    def __len__(self) -> int:
        return len(self.ids)

    def search(
        self, query: str, k: int, *, allowed: Collection[str] | None = None
    ) -> list[tuple[str, float]]:
        """Best ``k`` documents for ``query`` by BM25, best first.

        Documents that share no term with the query are left out, so fewer than ``k`` may
        come back. ``allowed`` restricts the search to those ids (a metadata filter).
        """
        k = check_positive_int(k)
        if not isinstance(query, str):
            raise InvalidInputError(f"query must be a str, got {type(query).__name__}")
        if not self.ids or self._model is None:
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
        # Only rows that score rank: rows at 0 would all tie at the cut when fewer than k
        # match, and sorting them all costs O(n log n). ``matched`` keeps row order.
        matched = np.flatnonzero(scores > 0)
        top = matched[_top(scores[matched], k)]
        return [(self.ids[i], float(scores[i])) for i in top]

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        """Write to ``folder`` (replaced as a whole: a reader sees the old or the new copy)."""
        folder = Path(folder)
        # Not ".*.tmp": the index folder's garbage collector unlinks those (files only).
        staging = folder.with_name(f".{folder.name}-{uuid.uuid4().hex[:8]}.building")
        try:
            if self._model is not None and self.ids:
                self._model.save(str(staging), show_progress=False)
            else:  # bm25s cannot save an index of nothing
                staging.mkdir(parents=True)
            meta = {
                "format_version": _FORMAT_VERSION,
                "generation": self.generation,
                "settings": asdict(self.settings),
                "ids": self.ids,
                "terms": self._model is not None,
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
            if ids and meta.get("terms", True):  # without terms: rebuilt from ids at once
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
    """The rows of the best ``k`` scores; a tie goes to the document added first (the lower
    row), at the cut as well as within."""
    k = min(k, len(scores))
    if k == 0:
        return np.empty(0, dtype=np.intp)
    kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
    # argpartition keeps an arbitrary subset of the rows tied at the k-th score: take them all
    # and let the stable order decide.
    rows = np.flatnonzero(scores >= kth)
    return rows[np.lexsort((rows, -scores[rows]))][:k]


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
