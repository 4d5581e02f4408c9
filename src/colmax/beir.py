"""Read a data set in BEIR layout: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from colmax.errors import InvalidInputError
from colmax.ingest import beir_rows, numbered_lines

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
        InvalidInputError: a file is missing or not UTF-8, a line is not a JSON object with an
            ``_id`` (string or integer) and a string ``text``, an ``_id`` is repeated, or a
            judgement is not three
            tab-separated columns ending in an integer grade; the message names file and line.

    Examples:
        >>> data = load_beir("../shared/data/scifact")  # doctest: +SKIP
        >>> len(data.corpus), len(data.judged_queries())  # doctest: +SKIP
        (5183, 300)
    """
    folder = Path(folder)
    corpus = _by_id(_existing(folder / "corpus.jsonl"), with_title=True)
    queries = _by_id(_existing(folder / "queries.jsonl"), with_title=False)
    qrels: dict[str, dict[str, int]] = {}
    path = _existing(folder / "qrels" / f"{split}.tsv")
    # csv.reader as BEIR's own loader reads qrels (a quoted field may hold a tab); the lines
    # come from numbered_lines, so a BOM is dropped and a bad byte is reported with its line.
    reader = csv.reader((line for _, line in numbered_lines(path)), delimiter="\t")
    first = True
    try:
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if not any(cell.strip() for cell in row):
                continue  # blank line
            if first and not _NUMBER.fullmatch(row[-1].strip()):
                first = False
                continue  # header
            first = False
            if len(row) < 3:
                raise InvalidInputError(
                    f"{where}: expected 3 tab-separated columns (query id, document id, "
                    f"grade), got {len(row)}: {row!r:.80}"
                )
            qrels.setdefault(row[0], {})[row[1]] = _grade(row[2], where)
    except csv.Error as exc:
        raise InvalidInputError(f"{path}:{reader.line_num}: malformed TSV ({exc})") from exc
    return BeirDataset(corpus, queries, qrels)


# A grade is an integer, as in BEIR's own loader and trec_eval: "1", "-1", "+2" are read (after
# stripping blanks); "1.0", "0.5" or "1e3" are refused rather than rounded, since a decimal grade
# says the file uses a scale this reader would silently change. _NUMBER only tells a header
# row ("score") from a first data row whose grade is malformed ("1.0"), which must be reported.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _grade(cell: str, where: str) -> int:
    if not _INTEGER.fullmatch(cell.strip()):
        raise InvalidInputError(
            f"{where}: relevance grade {cell!r:.40} is not an integer (write e.g. 0, 1 or 2)"
        )
    return int(cell)


def _by_id(path: Path, *, with_title: bool) -> dict[str, str]:
    """id -> text of a BEIR ``corpus.jsonl`` / ``queries.jsonl``; a repeated id is an error
    (it would silently replace the first one's text, and ``colmax index`` refuses it too)."""
    texts: dict[str, str] = {}
    first_seen: dict[str, str] = {}
    for _, row_id, title, text, where in beir_rows(path):
        if row_id in texts:
            raise InvalidInputError(
                f"{where}: duplicate _id {row_id!r} (first seen at {first_seen[row_id]}); "
                "ids must be unique within one file"
            )
        texts[row_id] = f"{title} {text}".strip() if with_title else text
        first_seen[row_id] = where
    return texts


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise InvalidInputError(f"{path} is missing: not a BEIR data set folder")
    return path
