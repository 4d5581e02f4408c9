"""The block loop shared by the packed kernels (private): per-document maxima, block by block.

A plan (:mod:`colmax.scoring._layout`) cuts a length-sorted matrix into blocks of whole
documents. For each block one GEMM gives the similarities of its rows with every stacked query
token, and one ``amax`` per run of equal lengths gives each document's best row per query
token. :func:`plan_maxima` yields those maxima block by block, so the caller reduces them
(``best @ ind``, scaling, bounds) while they are still in cache and nothing of size
``n_docs x query tokens`` is ever held whole.

The GEMM itself is a parameter (``sims``): float32 (exact pass), bfloat16 (its output widened
to float32 before the max, because torch's ``amax`` over bfloat16 is ~30x slower than over
float32 on CPUs) or int8 with int32 accumulation (the max runs on the integers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from colmax.scoring._layout import Plan

__all__ = ["SimsFn", "bfloat16_sims", "float32_sims", "float64_sims", "int8_sims", "plan_maxima"]

#: ``sims(row_a, row_b, out)`` writes the ``(row_b - row_a, m)`` similarities into ``out``
#: (a reused buffer of that shape) and returns it (or a tensor of the same shape and dtype).
SimsFn = Callable[[int, int, torch.Tensor], torch.Tensor]


def plan_maxima(
    plan: Plan, block_rows: int, m: int, sims: SimsFn, dtype: torch.dtype
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(doc0, doc1, best)``: ``best[d - doc0, i]`` is document ``d``'s largest similarity
    with query token ``i``, for consecutive document ranges covering the plan.

    Args:
        plan: the blocks of the matrix ``sims`` reads.
        block_rows: rows per block (the plan was cut with it).
        m: stacked query tokens (columns of every similarity block).
        sims: the GEMM of a row range (see :data:`SimsFn`).
        dtype: dtype of the similarities (float32 or int32).

    Yields:
        ``best`` is a reused buffer: consume it before asking for the next item.
    """
    sim_buf = torch.empty(block_rows * m, dtype=dtype)  # reused: no page faults per block
    best_buf = torch.empty(plan.max_block_docs * m, dtype=dtype)
    for blk in plan.blocks:
        rows = blk.row1 - blk.row0
        sim = sims(blk.row0, blk.row1, sim_buf[: rows * m].view(rows, m))
        best = best_buf[: (blk.doc1 - blk.doc0) * m].view(-1, m)
        at = 0
        for row_a, row_b, count, length in blk.segments:
            torch.amax(sim[row_a:row_b].view(count, length, m), dim=1, out=best[at : at + count])
            at += count
        yield blk.doc0, blk.doc1, best
    for row, length, doc in plan.long_docs:  # longer than a block: scored in pieces
        acc: torch.Tensor | None = None
        for a in range(row, row + length, block_rows):
            b = min(a + block_rows, row + length)
            piece = sims(a, b, sim_buf[: (b - a) * m].view(b - a, m)).amax(dim=0)
            acc = piece if acc is None else torch.maximum(acc, piece)
        if acc is not None:
            yield doc, doc + 1, acc.view(1, m)


def float32_sims(matrix: torch.Tensor, qt: torch.Tensor) -> SimsFn:
    """Exact float32 similarities of ``matrix`` rows (float32, or float16 widened per block)."""
    wide = None if matrix.dtype == torch.float32 else torch.empty(0)

    def sims(a: int, b: int, out: torch.Tensor) -> torch.Tensor:
        nonlocal wide
        rows = matrix[a:b]
        if wide is not None:  # float16 widens exactly; one buffer for every block
            if wide.shape[0] < b - a:
                wide = torch.empty((b - a, matrix.shape[1]))
            rows = wide[: b - a].copy_(rows)
        return torch.mm(rows, qt, out=out)

    return sims


def float64_sims(matrix: torch.Tensor, qt: torch.Tensor) -> SimsFn:
    """float64 similarities (for the final, exact decision between near ties)."""

    def sims(a: int, b: int, out: torch.Tensor) -> torch.Tensor:
        return torch.mm(matrix[a:b].double(), qt, out=out)

    return sims


def bfloat16_sims(matrix: torch.Tensor, qt: torch.Tensor) -> SimsFn:
    """bfloat16 GEMM (float32 accumulation, bfloat16 output), widened into ``out``."""

    buf = torch.empty(0, dtype=torch.bfloat16)

    def sims(a: int, b: int, out: torch.Tensor) -> torch.Tensor:
        nonlocal buf
        if buf.numel() < out.numel():
            buf = torch.empty(out.numel(), dtype=torch.bfloat16)
        low = torch.mm(matrix[a:b], qt, out=buf[: out.numel()].view(out.shape))
        return out.copy_(low)

    return sims


def int8_sims(matrix: torch.Tensor, qt: torch.Tensor) -> SimsFn:
    """int8 GEMM with exact int32 accumulation (``torch._int_mm``; VNNI where the CPU has it)."""

    def sims(a: int, b: int, out: torch.Tensor) -> torch.Tensor:
        return torch._int_mm(matrix[a:b], qt)

    return sims
