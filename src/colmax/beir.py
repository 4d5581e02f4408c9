"""Read a data set in BEIR layout: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from colmax.errors import InvalidInputError

__all__ = ["BeirDataset", "load_beir"]


@dataclass
class BeirDataset:
    """A retrieval data set in memory: documents, queries and relevance judgements.

    Attributes:
        corpus: document id -> text (``title + " " + text``, stripped; may be empty).
        queries: query id -> query text.
        qrels: query id -> {document id: relevance grade}; grades <= 0 mean "not relevant".

    Examples:
        >>> data = BeirDataset({"d1": "a b"}, {"q1": "a", "q2": "c"}, {"q1": {"d1": 1}})
        >>> data.judged_queries()
        {'q1': 'a'}
    """

    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    def judged_queries(self) -> dict[str, str]:
        """Queries that have at least one judgement."""
        return {q: t for q, t in self.queries.items() if q in self.qrels}

    def every_nth_judged(self, n: int) -> BeirDataset:
        """The judged queries 1, 1 + n, 1 + 2n, ... (in file order) with their judgements only,
        over the same corpus: a quicker evaluation whose scores average over those queries.

        Raises:
            InvalidInputError: ``n`` is not a positive integer.

        Examples:
            >>> data = BeirDataset({"d1": "a"}, {"q1": "a", "q2": "b", "q3": "c"},
            ...                    {"q1": {"d1": 1}, "q2": {"d1": 0}, "q3": {"d1": 2}})
            >>> sub = data.every_nth_judged(2)
            >>> sub.queries, sub.qrels
            ({'q1': 'a', 'q3': 'c'}, {'q1': {'d1': 1}, 'q3': {'d1': 2}})
        """
        from colmax.validation import check_positive_int  # imports torch: only when used

        queries = dict(list(self.judged_queries().items())[:: check_positive_int(n, "n")])
        qrels = {q: rel for q, rel in self.qrels.items() if q in queries}
        return BeirDataset(self.corpus, queries, qrels)


def load_beir(folder: str | Path, split: str = "test") -> BeirDataset:
    """Load a folder in BEIR layout (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``).

    Args:
        folder: the data set folder, e.g. ``../shared/data/cranfield``.
        split: which ``qrels/<split>.tsv`` to read (a header row is skipped if present).

    Returns:
        The corpus, the queries and the judgements of that split.

    Raises:
        InvalidInputError: a file is missing or a line is not valid JSON.

    Examples:
        >>> data = load_beir("../shared/data/scifact")  # doctest: +SKIP
        >>> len(data.corpus), len(data.judged_queries())  # doctest: +SKIP
        (5183, 300)
    """
    folder = Path(folder)
    corpus = {
        str(row["_id"]): f"{row.get('title') or ''} {row.get('text') or ''}".strip()
        for row in _jsonl(folder / "corpus.jsonl")
    }
    queries = {str(row["_id"]): str(row["text"]) for row in _jsonl(folder / "queries.jsonl")}
    qrels: dict[str, dict[str, int]] = {}
    path = folder / "qrels" / f"{split}.tsv"
    if not path.is_file():
        raise InvalidInputError(f"{path} is missing: not a BEIR data set folder")
    with path.open(encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        for i, row in enumerate(reader):
            if i == 0 and row and not row[-1].lstrip("-").isdigit():
                continue  # header
            if len(row) >= 3:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    return BeirDataset(corpus, queries, qrels)


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise InvalidInputError(f"{path} is missing: not a BEIR data set folder")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for n, line in enumerate(handle, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InvalidInputError(f"{path}:{n}: invalid JSON ({exc})") from exc
    return rows
