"""Row layout and block plans for the packed MaxSim kernel (private).

The packed kernel turns "max over each document's rows" into one dense ``amax`` per run of
equally long documents. To get long runs it keeps its compute copy of the corpus with the
documents **sorted by length**, and pads each document up to the length of its group by
repeating the document's own last token: a duplicate can never change a max, so no mask and no
``-inf`` fill is needed. Groups merge neighbouring lengths while the padding stays below
``max_waste`` of the real rows (a few percent more GEMM work for far fewer small ``amax`` calls).

A *plan* cuts that layout into blocks of at most ``block_rows`` rows at document boundaries.
Documents longer than ``block_rows`` are listed apart and scored in pieces with a running max.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "Block",
    "Layout",
    "Plan",
    "build_layout",
    "group_padded",
    "layout_rows",
    "plan_blocks",
]

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Layout:
    """Where each document sits in the compute copy.

    Attributes:
        order: ``(n_docs,)`` layout position -> document number.
        position: ``(n_docs,)`` document number -> layout position.
        row_start: ``(n_docs,)`` layout position -> first row in the compute copy.
        padded_len: ``(n_docs,)`` layout position -> rows used (real length plus padding);
            non-decreasing.
        n_rows: rows of the compute copy (``padded_len.sum()``).
    """

    order: IntArray
    position: IntArray
    row_start: IntArray
    padded_len: IntArray
    n_rows: int


@dataclass(frozen=True)
class Block:
    """Documents ``doc0:doc1`` (plan order) stored in rows ``row0:row1`` of the plan's matrix.

    ``segments`` are ``(row_a, row_b, n_docs, length)`` runs, rows relative to ``row0``.
    """

    row0: int
    row1: int
    doc0: int
    doc1: int
    segments: tuple[tuple[int, int, int, int], ...]


@dataclass(frozen=True)
class Plan:
    """Blocks of whole documents plus ``(row, length, doc)`` for documents scored in pieces."""

    blocks: tuple[Block, ...]
    long_docs: tuple[tuple[int, int, int], ...]
    max_block_docs: int


def _group_lengths(lengths: IntArray, max_waste: float) -> dict[int, int]:
    """Map each distinct length to its group's padded length (groups of neighbouring lengths)."""
    uniq, counts = np.unique(lengths, return_counts=True)
    padded: dict[int, int] = {}
    members: list[int] = []
    real = n_docs = 0
    for length, count in zip(uniq.tolist(), counts.tolist(), strict=True):
        if n_docs and length * (n_docs + count) > (1.0 + max_waste) * (real + length * count):
            padded.update({m: members[-1] for m in members})
            members, real, n_docs = [], 0, 0
        members.append(length)
        real += length * count
        n_docs += count
    padded.update({m: members[-1] for m in members})
    return padded


def build_layout(lengths: IntArray, max_waste: float) -> Layout:
    """Sort documents by length and group them (see the module docstring).

    Args:
        lengths: ``(n_docs,)`` real token counts, all >= 1.
        max_waste: allowed padding rows as a fraction of real rows per group (0 = exact runs).

    Returns:
        The layout.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lengths, kind="stable").astype(np.int64)
    position = np.empty_like(order)
    position[order] = np.arange(order.size, dtype=np.int64)
    if order.size:
        table = _group_lengths(lengths, max_waste)
        keys = np.fromiter(table.keys(), dtype=np.int64, count=len(table))
        vals = np.fromiter(table.values(), dtype=np.int64, count=len(table))
        padded_len = vals[np.searchsorted(keys, lengths[order])]
    else:
        padded_len = np.zeros(0, dtype=np.int64)
    row_start = np.concatenate([[0], np.cumsum(padded_len)[:-1]]).astype(np.int64)
    return Layout(order, position, row_start, padded_len, int(padded_len.sum()))


def group_padded(lengths: IntArray, max_waste: float) -> IntArray:
    """Padded lengths for ``lengths`` sorted ascending: neighbours merged into groups (as in
    :func:`build_layout`), so a gathered subset of documents needs few ``amax`` runs.

    Args:
        lengths: ``(k,)`` non-decreasing row counts.
        max_waste: allowed padding rows as a fraction of real rows per group.

    Returns:
        ``(k,)`` padded lengths, each >= its length, non-decreasing.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size == 0:
        return lengths
    table = _group_lengths(lengths, max_waste)
    keys = np.fromiter(table.keys(), dtype=np.int64, count=len(table))
    vals = np.fromiter(table.values(), dtype=np.int64, count=len(table))
    return vals[np.searchsorted(keys, lengths)]


def layout_rows(
    starts: IntArray, real_len: IntArray, padded_len: IntArray
) -> npt.NDArray[np.int64]:
    """Source row of every layout row: each document's rows, then its last row repeated.

    Args:
        starts: ``(k,)`` first source row of each document (in layout order).
        real_len: ``(k,)`` real token counts.
        padded_len: ``(k,)`` rows each document occupies in the layout (>= ``real_len``).

    Returns:
        ``(padded_len.sum(),)`` int64 source row numbers.
    """
    total = int(padded_len.sum())
    first = np.concatenate([[0], np.cumsum(padded_len)[:-1]]).astype(np.int64)
    within = np.arange(total, dtype=np.int64) - np.repeat(first, padded_len)
    return np.repeat(starts, padded_len) + np.minimum(within, np.repeat(real_len - 1, padded_len))


def plan_blocks(padded_len: IntArray, block_rows: int) -> Plan:
    """Cut documents stored back to back (``padded_len`` rows each) into blocks.

    Args:
        padded_len: ``(k,)`` rows per document, in storage order; equal neighbours form runs.
        block_rows: maximum rows per block; longer documents go to ``Plan.long_docs``.

    Returns:
        The plan; its blocks cover every document not in ``long_docs``, in order.
    """
    lens = np.asarray(padded_len, dtype=np.int64)
    cuts = np.flatnonzero(np.diff(lens)) + 1
    run_starts = np.concatenate([[0], cuts]).astype(np.int64).tolist()
    run_ends = [*cuts.tolist(), int(lens.size)]
    blocks: list[Block] = []
    long_docs: list[tuple[int, int, int]] = []
    segs: list[tuple[int, int, int, int]] = []
    row0 = doc0 = row = 0  # current block's first row/doc; next free row
    for start, end in zip(run_starts, run_ends, strict=True):
        if start == end:
            continue
        length = int(lens[start])
        doc = start
        while doc < end:
            fit = (block_rows - (row - row0)) // length
            if length > block_rows or fit == 0:  # close the current block first
                if segs:
                    blocks.append(Block(row0, row, doc0, doc, tuple(segs)))
                    segs = []
                row0, doc0 = row, doc
                if length > block_rows:
                    long_docs.append((row, length, doc))
                    row += length
                    doc += 1
                    row0, doc0 = row, doc
                continue
            take = min(fit, end - doc)
            segs.append((row - row0, row - row0 + take * length, take, length))
            row += take * length
            doc += take
    if segs:
        blocks.append(Block(row0, row, doc0, int(lens.size), tuple(segs)))
    most = max((b.doc1 - b.doc0 for b in blocks), default=0)
    return Plan(tuple(blocks), tuple(long_docs), most)
