"""The block loop shared by the packed kernels (private): per-document maxima, block by block.

A plan (:mod:`colmax.scoring._layout`) cuts a length-sorted matrix into blocks of whole
documents. For each block one GEMM gives the similarities of every stacked query token with
every row, **query tokens as rows** (``(m, rows)``: the product ``queries @ block.T``), so each
document is a contiguous run of ``length`` columns and one ``amax`` over the last axis of a
``(m, n_docs, length)`` view gives each document's best row per query token. That reduction is
contiguous and vectorised whatever ``m`` is; with document rows first it reduced a middle axis
of width ``m`` (15-30 query tokens), which is not vectorised and took as long as the bfloat16
GEMM itself (measured in ``docs/benchmarks.md``, "Precision"). :func:`plan_maxima` yields those
maxima block by block, so the caller reduces them (``ind.T @ best``, scaling, bounds) while
they are still in cache and nothing of size ``n_docs x query tokens`` is ever held whole.

The GEMM itself is a parameter (``sims``): float32 (exact pass), bfloat16 (the max runs on
its bfloat16 output) or int8 with int32 accumulation (the max runs on the integers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from colmax.scoring._layout import Plan
from colmax.scoring._scratch import scratch

__all__ = [
    "HOLD_ELEMENTS",
    "INT8_AS_FLOAT_MAX_DIM",
    "SimsFn",
    "bfloat16_sims",
    "float32_sims",
    "float64_sims",
    "int8_as_float_sims",
    "int8_sims",
    "plan_maxima",
    "plan_ranges",
]

#: Per-document maxima held before the caller reduces them (2**20 = 4 MiB of float32).
HOLD_ELEMENTS = 1 << 20

#: ``sims(row_a, row_b, out)`` writes the ``(m, row_b - row_a)`` similarities into ``out``
#: (a reused buffer of that shape) and returns it (or a tensor of the same shape and dtype).
SimsFn = Callable[[int, int, torch.Tensor], torch.Tensor]


def plan_maxima(
    plan: Plan,
    block_rows: int,
    m: int,
    sims: SimsFn,
    dtype: torch.dtype,
    hold_docs: int | None = None,
    rows_first: bool = False,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(doc0, doc1, best)``: ``best[i, d - doc0]`` is document ``d``'s largest similarity
    with query token ``i``, for consecutive document ranges covering the plan.

    Args:
        plan: the blocks of the matrix ``sims`` reads.
        block_rows: rows per block (the plan was cut with it).
        m: stacked query tokens (rows of every similarity block).
        sims: the GEMM of a row range (see :data:`SimsFn`).
        dtype: dtype of the similarities (float32, float64, bfloat16 or int32).
        hold_docs: gather the maxima of consecutive blocks until about this many documents
            before yielding (0: yield every block; default ``HOLD_ELEMENTS // m``). Each yield costs the caller its reductions
            (a few small GEMMs), and on a busy CPU every parallel operation waits for both
            threads to be scheduled, so fewer, wider yields are faster there.
        rows_first: ``sims`` writes ``(row_b - row_a, m)`` (document rows first) instead of
            ``(m, row_b - row_a)``. float32 GEMMs run faster that way with MKL on the hosts
            measured (AVX2 Zen 3: ``rows @ q.T`` 1.4-1.7x ``q @ rows.T`` at 32 query tokens,
            ``docs/benchmarks.md``, "Precision"); oneDNN's bfloat16 and int8 GEMMs are
            faster with the query tokens first.

    Yields:
        ``best`` ``(m, doc1 - doc0)``, a view of a reused buffer: consume it before asking
        for the next item.
    """
    # Reused per block, and per thread across calls (no page faults; see _scratch). Safe as
    # one generator runs at a time per thread: callers consume ``best`` before the next item.
    sim_buf = scratch("sims", (block_rows * m,), dtype)
    hold = HOLD_ELEMENTS // m if hold_docs is None else hold_docs
    width = max(plan.max_block_docs, min(hold, sum(b.doc1 - b.doc0 for b in plan.blocks)))
    # Rows first, the maxima are held document-major and yielded as a transposed view (a
    # GEMM reads either layout; an ``out`` strided the other way made torch.amax 30x slower).
    best_buf = (
        scratch("best_rows", (width, m), dtype).T
        if rows_first
        else scratch("best", (m, width), dtype)
    )
    start = used = 0  # documents start .. start + used are held in best_buf
    for blk in plan.blocks:
        n = blk.doc1 - blk.doc0
        if used and (blk.doc0 != start + used or used + n > width):
            yield start, start + used, best_buf[:, :used]
            used = 0
        if not used:
            start = blk.doc0
        rows = blk.row1 - blk.row0
        if rows_first:
            sim = sims(blk.row0, blk.row1, sim_buf[: rows * m].view(rows, m))
            at = used
            for row_a, row_b, count, length in blk.segments:
                run = sim[row_a:row_b].view(count, length, m)
                torch.amax(run, dim=1, out=best_buf.T[at : at + count])
                at += count
        else:
            sim = sims(blk.row0, blk.row1, sim_buf[: rows * m].view(m, rows))
            at = used
            for row_a, row_b, count, length in blk.segments:
                run = sim[:, row_a:row_b].view(m, count, length)
                torch.amax(run, dim=2, out=best_buf[:, at : at + count])
                at += count
        used += n
    if used:
        yield start, start + used, best_buf[:, :used]
    for row, length, doc in plan.long_docs:  # longer than a block: scored in pieces
        acc: torch.Tensor | None = None
        for a, b in _pieces(row, length, block_rows):
            if rows_first:
                piece = sims(a, b, sim_buf[: (b - a) * m].view(b - a, m)).amax(dim=0)
            else:
                piece = sims(a, b, sim_buf[: (b - a) * m].view(m, b - a)).amax(dim=1)
            acc = piece if acc is None else torch.maximum(acc, piece)
        if acc is not None:
            yield doc, doc + 1, acc.view(m, 1)


def _pieces(row: int, length: int, block_rows: int) -> Iterator[tuple[int, int]]:
    """Row ranges of a document longer than a block, each at most ``block_rows``."""
    for a in range(row, row + length, block_rows):
        yield a, min(a + block_rows, row + length)


def plan_ranges(plan: Plan, block_rows: int) -> list[tuple[int, int]]:
    """Every ``(row_a, row_b)`` range :func:`plan_maxima` asks ``sims`` for, in order."""
    out = [(blk.row0, blk.row1) for blk in plan.blocks]
    for row, length, _ in plan.long_docs:
        out.extend(_pieces(row, length, block_rows))
    return out


def float32_sims(matrix: torch.Tensor, q: torch.Tensor) -> SimsFn:
    """Exact float32 similarities ``rows @ q.T`` ``(rows, m)`` (rows first: see
    :func:`plan_maxima`) of ``matrix`` rows (float32, or float16 widened per block into this
    thread's scratch buffer) with the query tokens ``q`` ``(m, dim)``."""
    half = matrix.dtype != torch.float32
    wide: torch.Tensor | None = None  # held for the whole call, even if too big to keep
    qt = q.T

    def sims(a: int, b: int, out: torch.Tensor) -> torch.Tensor:
        nonlocal wide
        rows = matrix[a:b]
        if half:  # float16 widens exactly
            if wide is None or wide.shape[0] < b - a:
                wide = scratch("wide", (b - a, matrix.shape[1]), torch.float32)
            rows = wide[: b - a].copy_(rows)
        return torch.mm(rows, qt, out=out)

    return sims


def float64_sims(matrix: torch.Tensor, q: torch.Tensor) -> SimsFn:
    """float64 similarities ``(rows, m)``, rows first (for the final, exact decision between
    near ties)."""
    qt = q.T

    def sims(a: int, b: int, out: torch.Tensor) -> torch.Tensor:
        return torch.mm(matrix[a:b].double(), qt, out=out)

    return sims


def bfloat16_sims(matrix: torch.Tensor, q: torch.Tensor) -> SimsFn:
    """bfloat16 GEMM (float32 accumulation, bfloat16 output) into ``out`` (bfloat16).

    The max runs on the bfloat16 output itself: rounding is monotonic, so the max of the
    rounded values is the rounded max, and a widening copy first would be one more pass (and,
    on a busy CPU, one more wait for both threads) per block.
    """

    def sims(a: int, b: int, out: torch.Tensor) -> torch.Tensor:
        return torch.mm(q, matrix[a:b].T, out=out)

    return sims


def int8_sims(matrix: torch.Tensor, q: torch.Tensor) -> SimsFn:
    """int8 GEMM with exact int32 accumulation (``torch._int_mm``; VNNI where the CPU has it)."""

    def sims(a: int, b: int, out: torch.Tensor) -> torch.Tensor:
        return torch._int_mm(q, matrix[a:b].T)

    return sims


#: Largest dim at which a float32 GEMM of int8 values sums exactly: every partial sum is an
#: integer of magnitude <= 127 * 127 * dim, and float32 holds integers exactly up to 2**24.
INT8_AS_FLOAT_MAX_DIM = 2**24 // (127 * 127)


def int8_as_float_sims(matrix: torch.Tensor, q: torch.Tensor) -> SimsFn:
    """The exact int8 similarities ``(rows, m)``, rows first, from a float32 GEMM of the
    widened integers (float32 out).

    For CPUs whose ``torch._int_mm`` has no fast kernel (AVX2 without VNNI: 20-50x slower
    than float32): the integer sums are the same, at float32 speed. Only for
    ``dim <= INT8_AS_FLOAT_MAX_DIM``.
    """
    qt = q.float().T

    def sims(a: int, b: int, out: torch.Tensor) -> torch.Tensor:
        return torch.mm(matrix[a:b].float(), qt, out=out)

    return sims
