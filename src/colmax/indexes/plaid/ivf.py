"""Inverted lists: for each centroid, the documents that have a token coded to it.

Built in memory from a coded segment's ``codes`` when the segment is opened (a stable sort of
the codes, then one entry per distinct ``(centroid, document)`` pair), so the folder stores only
``codes``. Within a list, documents are in ascending position order.

Examples:
    >>> import numpy as np
    >>> ivf = InvertedLists.build(np.array([2, 0, 2, 2, 1]), np.array([0, 2, 5]), n_centroids=3)
    >>> ivf.docs.tolist(), ivf.list_offsets.tolist()   # doc 0: {2, 0}; doc 1: {2, 1}
    ([0, 1, 0, 1], [0, 1, 2, 4])
    >>> docs, cents = ivf.pairs(torch.tensor([2]))
    >>> docs.tolist(), cents.tolist()
    ([0, 1], [2, 2])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["InvertedLists", "ranges"]


def ranges(starts: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Concatenation of ``arange(s, s + n)`` for each ``(s, n)``, without a Python loop.

    Examples:
        >>> ranges(torch.tensor([5, 0, 9]), torch.tensor([2, 0, 3])).tolist()
        [5, 6, 9, 10, 11]
    """
    lengths = lengths.to(torch.int64)
    total = int(lengths.sum())
    if total == 0:
        return torch.zeros(0, dtype=torch.int64)
    ends = torch.cumsum(lengths, 0)
    shift = starts.to(torch.int64) - (ends - lengths)  # per range: value minus output position
    return torch.arange(total) + torch.repeat_interleave(shift, lengths, output_size=total)


@dataclass(frozen=True)
class InvertedLists:
    """Centroid -> documents (positions in one segment).

    Attributes:
        list_offsets: ``(n_centroids + 1,)`` int64; centroid ``c``'s documents are
            ``docs[list_offsets[c]:list_offsets[c + 1]]``.
        docs: ``(n_pairs,)`` int64 document positions.
        cell_offsets: ``(n_centroids + 1,)`` int64; the tokens coded to centroid ``c`` are
            ``cell_rows[cell_offsets[c]:cell_offsets[c + 1]]`` (token rows of the segment)
            and belong to documents ``cell_docs[...]`` (same range).
        cell_rows, cell_docs: ``(n_tokens,)`` int32.
        doc_pair_offsets: ``(n_docs + 1,)`` int64; document ``d``'s distinct centroids are
            ``doc_pair_cents[doc_pair_offsets[d]:doc_pair_offsets[d + 1]]`` (ascending), each
            with ``doc_pair_rows[...]``, the segment row of the document's first token coded to
            it. The same ``(centroid, document)`` pairs as ``docs``, in document order: stage 3
            takes a document's best centroid score per query token over these, about half as
            many as its tokens (0.49 on SciFact, 4,096 centroids).
        doc_pair_cents, doc_pair_rows: ``(n_pairs,)`` int64.
    """

    list_offsets: torch.Tensor
    docs: torch.Tensor
    cell_offsets: torch.Tensor
    cell_rows: torch.Tensor
    cell_docs: torch.Tensor
    doc_pair_offsets: torch.Tensor
    doc_pair_cents: torch.Tensor
    doc_pair_rows: torch.Tensor

    @classmethod
    def build(cls, codes: np.ndarray, offsets: np.ndarray, n_centroids: int) -> InvertedLists:
        """From doc-ordered token ``codes`` and the segment's ``offsets``."""
        lengths = np.diff(offsets)
        doc_of_token = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        order = np.argsort(codes, kind="stable")  # radix sort for uint16; keeps doc order
        sorted_codes = np.asarray(codes)[order].astype(np.int64)
        sorted_docs = doc_of_token[order]
        first = np.ones(len(order), dtype=bool)  # keep one entry per (centroid, document)
        first[1:] = (sorted_codes[1:] != sorted_codes[:-1]) | (sorted_docs[1:] != sorted_docs[:-1])
        counts = np.bincount(sorted_codes[first], minlength=n_centroids)
        list_offsets = np.zeros(n_centroids + 1, dtype=np.int64)
        np.cumsum(counts, out=list_offsets[1:])
        cell_offsets = np.zeros(n_centroids + 1, dtype=np.int64)
        np.cumsum(np.bincount(sorted_codes, minlength=n_centroids), out=cell_offsets[1:])
        # Within a (centroid, document) run the stable sort kept token order, so the run's
        # first entry is the document's first token with that centroid.
        pair_docs = sorted_docs[first]
        by_doc = np.argsort(pair_docs, kind="stable")  # then centroid ascending within a doc
        doc_pair_offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(np.bincount(pair_docs, minlength=len(lengths)), out=doc_pair_offsets[1:])
        return cls(
            torch.from_numpy(list_offsets),
            torch.from_numpy(sorted_docs[first]),
            torch.from_numpy(cell_offsets),
            torch.from_numpy(order.astype(np.int32)),
            torch.from_numpy(sorted_docs.astype(np.int32)),
            torch.from_numpy(doc_pair_offsets),
            torch.from_numpy(sorted_codes[first][by_doc]),
            torch.from_numpy(order[first][by_doc].astype(np.int64)),
        )

    @property
    def n_pairs(self) -> int:
        return int(self.docs.shape[0])

    def cells(self, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(rows, docs, lengths)``: the token rows and documents of each of ``centroids``
        (not necessarily distinct), concatenated, and how many each contributed."""
        starts = self.cell_offsets[centroids]
        lengths = self.cell_offsets[centroids + 1] - starts
        at = ranges(starts, lengths)
        return self.cell_rows[at], self.cell_docs[at], lengths

    def pairs(self, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(docs, centroids)`` of every list entry of the given (distinct) centroids."""
        starts = self.list_offsets[centroids]
        lengths = self.list_offsets[centroids + 1] - starts
        docs = self.docs[ranges(starts, lengths)]
        return docs, torch.repeat_interleave(centroids, lengths, output_size=docs.shape[0])
