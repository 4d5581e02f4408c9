"""Low-precision first pass of exact MaxSim, and the error bound that keeps the result exact.

On CPUs with native bfloat16 (AVX512-BF16, AMX) a bfloat16 GEMM runs 3 to 6 times faster than
float32, and on CPUs with VNNI an int8 GEMM does too. :class:`~colmax.scoring.PackedDocuments`
uses one for a first pass over the whole corpus, then re-scores in float32 every document that
could still be in the top ``k`` (see :meth:`~colmax.scoring.PackedDocuments.top_k`). That
needs, for every document ``d`` and query ``q``, a bound ``B`` with
``|first-pass score - exact score| <= B``. This module computes it from per-document and
per-query numbers recorded while rounding, never from the scores it bounds.

**The bound.** With document tokens ``d_j`` (as stored), their low-precision values ``~d_j``
and residuals ``r_j = d_j - ~d_j`` (likewise ``~q_i``, ``s_i`` for query tokens):
``q_i . d_j = ~q_i . ~d_j + ~q_i . r_j + s_i . d_j``, so by Cauchy-Schwarz the product the
GEMM approximates is off by at most ``|~q_i| R_d + |s_i| (N_d + R_d)``, where ``R_d`` is the
largest residual norm and ``N_d`` the largest low-precision token norm of document ``d``. The
GEMM adds its own rounding: bfloat16 products are exact in float32 and accumulate in float32
(checked by :mod:`colmax.hardware`'s probe), at most ``gamma(dim + 2) |~q_i| N_d`` (Higham,
eq. 3.5); int8 products accumulate exactly in int32 and three float32 roundings scale them.
bfloat16 output rounding is monotonic, so it commutes with the max and adds at most
``u / (1 - u) |m_i|`` per query token maximum ``m_i`` (``u = 2**-8``); the float32 sum over
query tokens adds ``gamma(t_q) sum |m_i|``. An absolute term covers flushed subnormals. The
sum is per score, so documents far from the cut-off are excluded however large the corpus.

Examples:
    >>> import torch
    >>> q = query_stats(torch.tensor([[0.6, 0.8]]), torch.tensor([0]), 1, "bfloat16")
    >>> float(q.low_norm_sum[0]) > 0.99, float(q.residual_sum[0]) < 2**-8
    (True, True)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from colmax.hardware import ENV_VAR, detect, resolve_precision
from colmax.scoring._kernel import (
    INT8_AS_FLOAT_MAX_DIM,
    SimsFn,
    bfloat16_sims,
    int8_as_float_sims,
    int8_sims,
    plan_maxima,
    plan_ranges,
)
from colmax.scoring._layout import Plan, plan_blocks
from colmax.scoring._prepacked import INT8_LEVELS, PrepackedRows, pack_rows, packed_levels
from colmax.scoring._scratch import scratch

__all__ = [
    "LOW_PRECISIONS",
    "LowCopy",
    "QueryStats",
    "build_low_copy",
    "first_pass",
    "first_pass_precision",
    "low_rows",
    "packed_int8_levels",
    "query_stats",
    "score_bounds",
]

#: The first-pass precisions.
LOW_PRECISIONS = ("bfloat16", "int8")

_U_BF16 = 2.0**-8  # unit roundoff of bfloat16 (8 significand bits, round to nearest)
_U_FP32 = 2.0**-24
_TINY = 2.0**-120  # per-product slack for subnormals flushed to zero (DAZ/FTZ kernels)
_MARGIN = 1.0 + 2.0**-10  # covers the float32 rounding of the norms the bound is built from
_SLICE_ROWS = 1 << 16  # rows rounded per step while building the copy (bounded memory)


def first_pass_precision(requested: str = "auto") -> str:
    """The first pass of exact top-k: an explicit choice, else ``COLMAX_PRECISION``, else
    bfloat16 where this CPU runs it natively, else int8 where int8 GEMMs are native (VNNI
    without bfloat16, e.g. Cascade Lake, Alder Lake), else ``"float32"`` (no first pass).

    On the AVX512-BF16 + VNNI host of ``docs/benchmarks.md`` ("Precision") the two low
    precisions tie on SciFact top-10 (90.6 ms each; int8's pre-packed GEMM alone is 1.6x
    faster, but its coarser rounding re-scores ~140-180 documents per query against ~13), and
    on random vectors, where scores crowd together, int8 was 2.7x slower (dim 128). So
    bfloat16, which leaves less to the re-scoring whatever the data, is preferred where both
    are native. Results are identical on every path.

    Args:
        requested: ``"auto"``, ``"float32"``, ``"bfloat16"`` or ``"int8"``.

    Returns:
        ``"float32"``, ``"bfloat16"`` or ``"int8"``.
    """
    if requested != "auto" or os.environ.get(ENV_VAR, "").lower() not in ("", "auto"):
        return resolve_precision(requested)
    hw = detect()
    if hw.native_bf16:
        return "bfloat16"
    return "int8" if hw.native_int8 else "float32"


def packed_int8_levels(dim: int) -> int | None:
    """The query integer range (127, or 63 on CPUs without VNNI) with which int8 document rows
    of ``dim`` pre-pack for oneDNN and sum exactly on this machine, or ``None`` where they do
    not pack (then the plain copy is used). Probed once per process and dim."""
    return packed_levels("int8", dim) or None


def _gamma(n: int) -> float:
    return n * _U_FP32 / (1.0 - n * _U_FP32)


@dataclass(frozen=True)
class LowCopy:
    """The low-precision copy of a packed corpus, in the exact copy's row order.

    Attributes:
        kind: ``"bfloat16"`` or ``"int8"``.
        matrix: ``(n_rows, dim)`` bfloat16 or int8 rows, or ``None`` where ``packed`` holds
            them (a subset is then rounded afresh from the exact copy: :func:`low_rows`).
        packed: the rows pre-packed for oneDNN, in the blocks of
            ``plan_blocks(padded_len, pack_block_rows)`` (see :mod:`colmax.scoring._prepacked`),
            or ``None`` where this machine cannot pack them exactly.
        pack_block_rows: the block size ``packed`` was cut with.
        residual: ``(n_docs,)`` float64, per layout position: largest ``|d_j - ~d_j|``.
        norm: ``(n_docs,)`` float64: largest ``|~d_j|`` (``N_d``).
        scale: int8 only, ``(n_docs,)`` float32: the document's quantisation step.
    """

    kind: str
    matrix: torch.Tensor | None
    packed: PrepackedRows | None
    pack_block_rows: int
    residual: torch.Tensor
    norm: torch.Tensor
    scale: torch.Tensor | None

    @property
    def query_levels(self) -> int:
        """int8: query tokens round to integers in ``[-query_levels, query_levels]``: the
        packed GEMM's exact range (63 where it is exact only with 7-bit activations, see
        :mod:`colmax.scoring._prepacked`), else 127."""
        return INT8_LEVELS[0] if self.packed is None else self.packed.levels

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.kind == "bfloat16" else torch.int8

    @property
    def nbytes(self) -> int:
        extra = 0 if self.scale is None else self.scale.nbytes
        extra += 0 if self.matrix is None else int(self.matrix.nbytes)
        extra += 0 if self.packed is None else self.packed.nbytes
        return int(self.residual.nbytes + self.norm.nbytes + extra)


def _round_rows(
    rows: torch.Tensor,
    row_scale: torch.Tensor | None,
    out: torch.Tensor | None = None,
    levels: int = INT8_LEVELS[0],
) -> torch.Tensor:
    """bfloat16 rows (``row_scale is None``), else int8 steps of ``row_scale`` in
    ``[-levels, levels]``: the one rounding of documents and queries. With ``out``, float32
    ``rows`` is used as scratch (overwritten) and the result written into ``out``."""
    if row_scale is not None:
        scale = row_scale.unsqueeze(1)
        steps = rows / scale if out is None else rows.div_(scale)
        rows = steps.round_().clamp_(-levels, levels)
    if out is not None:
        return out.copy_(rows)
    return rows.to(torch.bfloat16 if row_scale is None else torch.int8)


def low_rows(exact: torch.Tensor, kind: str, row_scale: torch.Tensor | None) -> torch.Tensor:
    """Rows of the exact copy rounded as :func:`build_low_copy` rounds them (bit-identical):
    how a gathered subset gets its low-precision rows when the full copy is pre-packed.
    Works in this thread's scratch buffers (see :mod:`colmax.scoring._scratch`): the result is
    valid until the next call on the same thread.

    Args:
        exact: ``(n, dim)`` float32 or float16 rows.
        kind: ``"bfloat16"`` or ``"int8"``.
        row_scale: int8: ``(n,)`` each row's document step; bfloat16: ``None``.
    """
    if kind == "int8" and row_scale is None:
        raise ValueError("int8 rows need their scales")
    wide = scratch("low_wide", tuple(exact.shape), torch.float32).copy_(exact)
    out = scratch(
        "low_rows", tuple(exact.shape), torch.bfloat16 if kind == "bfloat16" else torch.int8
    )
    return _round_rows(wide, row_scale if kind == "int8" else None, out)


def _dequantised(
    low: torch.Tensor, row_scale: torch.Tensor | None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    if row_scale is None:
        return low.to(dtype)  # bfloat16 widens exactly
    return low.to(dtype) * row_scale.to(dtype).unsqueeze(1)


def _doc_max(values: npt.NDArray[np.float32], starts: npt.NDArray[np.int64]) -> np.ndarray:
    return np.maximum.reduceat(values, starts) if values.size else values


def build_low_copy(
    exact: torch.Tensor,
    padded_len: npt.NDArray[np.int64],
    kind: str,
    pack_block_rows: int = 1 << 14,
) -> LowCopy:
    """Round the exact copy to ``kind``, recording each document's residual and norm, and
    pre-pack it for oneDNN where this machine can (then the plain copy is dropped).

    Args:
        exact: ``(n_rows, dim)`` float32 or float16 rows in layout order (documents are runs of
            ``padded_len`` rows, padding being repeats of a real row).
        padded_len: ``(n_docs,)`` rows per document.
        kind: ``"bfloat16"`` or ``"int8"`` (one scale per document: max ``|value|`` / 127, so
            the first pass can take the max over integers before scaling).
        pack_block_rows: rows per block of the pre-packed copy (the full first pass's plan).

    Returns:
        The copy.
    """
    n_rows, dim = exact.shape
    starts = np.concatenate([[0], np.cumsum(padded_len)[:-1]]).astype(np.int64)
    dtype = torch.bfloat16 if kind == "bfloat16" else torch.int8
    matrix = torch.empty((n_rows, dim), dtype=dtype)
    row_resid = np.empty(n_rows, dtype=np.float32)
    row_norm = np.empty(n_rows, dtype=np.float32)
    row_scale_all = None
    scale = None
    if kind == "int8":
        row_max = np.empty(n_rows, dtype=np.float32)
        for a in range(0, n_rows, _SLICE_ROWS):
            row_max[a : a + _SLICE_ROWS] = exact[a : a + _SLICE_ROWS].float().abs().amax(1).numpy()
        doc_max = _doc_max(row_max, starts)
        scale = torch.from_numpy(np.where(doc_max > 0, doc_max / 127.0, 1.0).astype(np.float32))
        row_scale_all = torch.repeat_interleave(scale, torch.from_numpy(padded_len))
    for a in range(0, n_rows, _SLICE_ROWS):
        b = min(a + _SLICE_ROWS, n_rows)
        rows = exact[a:b].float()
        rs = None if row_scale_all is None else row_scale_all[a:b]
        low = _round_rows(rows, rs)
        matrix[a:b] = low
        approx = _dequantised(low, rs)
        row_resid[a:b] = torch.linalg.vector_norm(rows - approx, dim=1).numpy()
        row_norm[a:b] = torch.linalg.vector_norm(approx, dim=1).numpy()
    # The norms are float32 sums of dim squares (relative error < dim * 2**-24); the margin
    # and, for int8, an absolute term for the rounded products scale * k cover it.
    slack = 0.0
    if scale is not None and scale.numel():
        slack = float(np.sqrt(dim)) * _U_FP32 * 127.0 * float(scale.max())
    residual = torch.from_numpy(_doc_max(row_resid, starts).astype(np.float64) * _MARGIN + slack)
    norm = torch.from_numpy(_doc_max(row_norm, starts).astype(np.float64) * _MARGIN + slack)
    ranges = plan_ranges(plan_blocks(padded_len, pack_block_rows), pack_block_rows)
    packed = pack_rows(kind, matrix, ranges)
    dense = matrix if packed is None else None
    return LowCopy(kind, dense, packed, pack_block_rows, residual, norm, scale)


@dataclass(frozen=True)
class QueryStats:
    """Stacked query tokens in the low precision, and the per-query sums the bound needs.

    Attributes:
        tokens: ``(m, dim)`` bfloat16 or int8 query tokens.
        scale: int8 only: ``(m,)`` float32 per-token quantisation steps.
        low_norm_sum: ``(n_queries,)`` float64, ``sum_i |~q_i|``.
        residual_sum: ``(n_queries,)`` float64, ``sum_i |q_i - ~q_i|``.
        n_tokens: ``(n_queries,)`` float64 token counts ``t_q``.
    """

    tokens: torch.Tensor
    scale: torch.Tensor | None
    low_norm_sum: torch.Tensor
    residual_sum: torch.Tensor
    n_tokens: torch.Tensor


def query_stats(
    stacked: torch.Tensor,
    owner: torch.Tensor,
    n_queries: int,
    kind: str,
    levels: int = INT8_LEVELS[0],
) -> QueryStats:
    """Round the stacked query tokens ``(m, dim)`` (float32) for the first pass.

    Args:
        stacked: all query tokens of a pass, float32.
        owner: ``(m,)`` query number of each token.
        n_queries: number of queries in the pass.
        kind: ``"bfloat16"`` or ``"int8"`` (one scale per query token).
        levels: int8: the integers lie in ``[-levels, levels]`` (``LowCopy.query_levels``).

    Returns:
        The rounded tokens and the sums (float64, with the norm margin applied).
    """
    scale = None
    if kind == "int8":
        top = stacked.abs().amax(dim=1)
        scale = torch.where(top > 0, top / float(levels), torch.ones_like(top))
    low = _round_rows(stacked, scale, levels=levels)
    approx = _dequantised(low, scale, torch.float64)  # exact: 8-bit integers times a float32
    exact = stacked.double()
    per_low = torch.linalg.vector_norm(approx, dim=1) * _MARGIN
    per_res = torch.linalg.vector_norm(exact - approx, dim=1) * _MARGIN
    sums = torch.zeros((2, n_queries), dtype=torch.float64)
    sums[0].index_add_(0, owner, per_low)
    sums[1].index_add_(0, owner, per_res)
    counts = torch.bincount(owner, minlength=n_queries).double()
    return QueryStats(low.contiguous(), scale, sums[0], sums[1], counts)


def first_pass(
    matrix: torch.Tensor | PrepackedRows,
    plan: Plan,
    n_docs: int,
    block_rows: int,
    q: QueryStats,
    ind: torch.Tensor,
    doc_scale: torch.Tensor | None,
) -> torch.Tensor:
    """Approximate scores and ``sum_i |m_i|`` of the documents in ``matrix`` (plan order).

    Args:
        matrix: low-precision rows (bfloat16 or int8), or pre-packed ones (then ``plan`` must
            be the plan they were packed for).
        plan: its blocks.
        n_docs: documents in the plan.
        block_rows: rows per block.
        q: the rounded queries.
        ind: ``(m, n_queries)`` float32 one-hot owner matrix.
        doc_scale: int8: ``(n_docs,)`` per-document steps in plan order; else ``None``.

    Returns:
        ``(n_docs, 2 * n_queries)`` float32: approximate scores, then ``sum_i |m_i|``.
    """
    nq, m = ind.shape[1], ind.shape[0]
    out = torch.empty((2 * nq, n_docs), dtype=torch.float32)
    ind_t = ind.T.contiguous()
    sims: SimsFn
    rows_first = False
    int8 = (
        matrix.kind == "int8" if isinstance(matrix, PrepackedRows) else matrix.dtype == torch.int8
    )
    if int8:
        if doc_scale is None or q.scale is None:
            raise ValueError("int8 first pass needs document and query scales")
        q_scale = q.scale.unsqueeze(1)
    if isinstance(matrix, PrepackedRows):  # exact integer sums (float32) or bfloat16
        sims, dtype = matrix.sims(q.tokens), matrix.dtype
    elif int8 and (detect().native_int8 or matrix.shape[1] > INT8_AS_FLOAT_MAX_DIM):
        sims, dtype = int8_sims(matrix, q.tokens), torch.int32
    elif int8:  # torch._int_mm is slow here: the same integer sums from a float32 GEMM
        sims, dtype, rows_first = int8_as_float_sims(matrix, q.tokens), torch.float32, True
    else:
        sims, dtype = bfloat16_sims(matrix, q.tokens), torch.bfloat16
    for d0, d1, best in plan_maxima(plan, block_rows, m, sims, dtype, rows_first=rows_first):
        # exact: bfloat16 widens without rounding, int32 sums fit float32. Contiguous, so the
        # GEMMs below sum in the same order whatever layout the kernel left (bit-identical
        # results for the packed and the plain copy).
        best = best.float().contiguous()
        if doc_scale is not None and q.scale is not None:
            best = best * doc_scale[d0:d1].unsqueeze(0) * q_scale
        torch.mm(ind_t, best, out=out[:nq, d0:d1])
        torch.mm(ind_t, best.abs(), out=out[nq:, d0:d1])
    return out.T


def score_bounds(
    low: LowCopy, positions: torch.Tensor, q: QueryStats, abs_sum: torch.Tensor, dim: int
) -> torch.Tensor:
    """``(n, n_queries)`` float64 bound on ``|first-pass score - exact score|``.

    "Exact" is MaxSim in real arithmetic on the stored values; the caller adds the float32
    kernel's own bound to compare with float32 scores.

    Args:
        low: the low-precision copy.
        positions: ``(n,)`` layout positions of the scored documents.
        q: the rounded queries.
        abs_sum: ``(n, n_queries)`` ``sum_i |m_i|`` from :func:`first_pass`.
        dim: the vector dimension.
    """
    resid = low.residual[positions].unsqueeze(1)
    norm = low.norm[positions].unsqueeze(1)
    qlow, qres = q.low_norm_sum.unsqueeze(0), q.residual_sum.unsqueeze(0)
    if low.kind == "int8":
        acc, out_round = 4.0 * _U_FP32, 0.0  # exact int32 sums; int->float and two products
    else:
        acc, out_round = _gamma(dim + 2), _U_BF16 / (1.0 - _U_BF16)
    tq = q.n_tokens.unsqueeze(0)
    bound = resid * qlow + (norm + resid) * qres + acc * norm * qlow
    bound += (out_round + _gamma(int(q.n_tokens.max()))) * abs_sum.double()
    bound += tq * dim * _TINY
    return bound * _MARGIN
