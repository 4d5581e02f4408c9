"""Exact top-k from bounded approximations: narrow the candidates, re-score, decide exactly.

:meth:`colmax.scoring.PackedDocuments.top_k` scores every document cheaply (a bfloat16 or
int8 first pass, or plain float32), with a per-score bound on the error against MaxSim in real
arithmetic. :func:`exact_top_k` then keeps every document that could still be in the top ``k``
(its upper bound reaches the ``k``-th best lower bound: no other document can be in the top
``k`` or tied with it), re-scores those in float32 with the float32 kernel's bound, narrows again
the same way, and finally scores the few survivors in float64.

The result is the ranking by **exact MaxSim rounded to float32**, ties broken by document
number, and those rounded scores: the same on every CPU and for every first-pass precision.
(float64 sums of at most a few thousand float32 products are within ~1e-13 of exact, so they
round to the float32 of the exact value unless it lies that close to a rounding midpoint.)
A plain float32 pass orders documents the same way except where two scores differ by less
than its own error bound (about 1e-6 typically, :func:`~colmax.scoring.score_error_bound`
at worst).

Examples:
    >>> import numpy as np, torch
    >>> exact = {0: 3.0, 1: 1.0, 2: 2.9}
    >>> rescore = lambda ids: torch.tensor([exact[int(i)] for i in ids], dtype=torch.float64)
    >>> ids, scores, n = exact_top_k(
    ...     np.arange(3), torch.tensor([3.0, 1.0, 3.0], dtype=torch.float64),
    ...     torch.full((3,), 0.2, dtype=torch.float64), 1, None, 0.0, rescore)
    >>> ids.tolist(), scores.tolist(), n   # documents 0 and 2 could win; 1 could not
    ([0], [3.0], 2)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch

__all__ = ["Rescore", "exact_top_k", "survivors"]

_ULP = 2.0**-22
_TINY = 2.0**-126

#: ``rescore(document numbers) -> (n,)`` scores of those documents, float32 or float64.
Rescore = Callable[[npt.NDArray[np.int64]], torch.Tensor]


def survivors(approx: torch.Tensor, bound: torch.Tensor | float, k: int) -> torch.Tensor:
    """Indices of the entries whose upper bound reaches the ``k``-th best lower bound.

    Args:
        approx: ``(n,)`` float64 approximate scores.
        bound: ``(n,)`` or scalar float64 error bounds (``|approx - exact| <= bound``).
        k: places wanted (clamped to ``n``).

    Returns:
        1-D int64 indices into ``approx``; every entry that can be among the ``k`` best by
        exact score, or tied with the ``k``-th, is one of them.
    """
    n = approx.shape[0]
    if n <= k:
        return torch.arange(n)
    # One float32 step more: exact scores that differ by less than that can round to the
    # same float32 and tie with the k-th (float32 steps are <= 2**-23 of the magnitude).
    width = bound + _ULP * (approx.abs() + bound) + _TINY
    cut = torch.topk(approx - width, k).values[-1]
    return torch.nonzero(approx + width >= cut).flatten()


def exact_top_k(
    cols: npt.NDArray[np.int64],
    approx: torch.Tensor,
    bound: torch.Tensor | float,
    k: int,
    rescore32: Rescore | None,
    bound32: torch.Tensor | float,
    rescore64: Rescore,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], int]:
    """The ``k`` best of ``cols`` (plus ties with the ``k``-th) by exact score, best first.

    Args:
        cols: ``(n,)`` document numbers the approximations belong to.
        approx: ``(n,)`` approximate scores (any float dtype).
        bound: their error bounds against exact MaxSim (tensor or scalar).
        k: places wanted (>= 1).
        rescore32: float32 re-scoring of some documents, or ``None`` when ``approx`` already
            is the float32 kernel's output (then ``bound`` is its bound).
        bound32: the float32 kernel's error bound: one for all, or ``(n,)`` aligned with
            ``cols`` (documents from several corpora, each with its own bound).
        rescore64: float64 re-scoring.

    Returns:
        ``(ids, scores, rescored)``: document numbers and their float32-rounded exact scores
        sorted by score descending then number ascending, and how many documents were
        re-scored after the first pass.
    """
    approx = approx.double()
    pos = survivors(approx, bound, k).numpy()  # positions in cols
    rescored = 0
    if rescore32 is not None:
        s32 = rescore32(cols[pos]).double()
        rescored = int(pos.size)
        b32 = bound32[torch.from_numpy(pos)] if isinstance(bound32, torch.Tensor) else bound32
        pos = pos[survivors(s32, b32, k).numpy()]
    ids = cols[pos]
    s64 = rescore64(ids)
    rescored = max(rescored, int(ids.size))
    vals = s64.to(torch.float32).numpy()  # exact, rounded once
    if vals.size > k:
        cut = np.partition(vals, vals.size - k)[vals.size - k]
        mask = vals >= cut
        ids, vals = ids[mask], vals[mask]
    order = np.lexsort((ids, -vals))
    return ids[order], vals[order], rescored
