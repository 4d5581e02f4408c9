"""MaxSim over padded batches and ragged lists of token matrices.

``maxsim`` is the batch form used by reranking and by the approximate indexes after
decompression: queries ``(n_q, t_q, dim)`` against documents ``(n_d, t_d, dim)`` with boolean
masks (True = real token). The whole-corpus kernel of the flat index lives in
:mod:`colmax.scoring.packed`.

Padding rules (the pitfall this module exists to avoid): padded *document* tokens are filled with
``-inf`` before the max, never multiplied by the mask: with cosine similarities below 0, a
zeroed pad would win the max. Padded *query* tokens contribute exactly 0 to the sum.

Computation happens in float32 (float64 when an input is float64); float16 and bfloat16 inputs
are widened block by block. Blocks over queries and documents keep the similarity tensor under
``block_elements`` entries, so memory stays bounded for big batches.

Examples:
    >>> import torch
    >>> q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])            # 1 query, 2 tokens
    >>> d = torch.tensor([[[-1.0, 0.0], [0.0, 0.0]]])           # 1 doc, 1 real token + 1 pad
    >>> maxsim(q, d, d_mask=torch.tensor([[True, False]]))      # -1 + 0, not 0 + 0
    tensor([[-1.]])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

from colmax.errors import DimensionMismatchError, InvalidEmbeddingError, InvalidInputError
from colmax.scoring._checks import (
    as_float_tensor,
    check_finite,
    check_token_matrices,
    compute_dtype,
)

__all__ = ["DEFAULT_BLOCK_ELEMENTS", "maxsim", "maxsim_ragged"]

#: Similarity entries computed per block (2**22 float32 = 16 MiB).
DEFAULT_BLOCK_ELEMENTS = 1 << 22

Normalize = Literal["sum", "mean"]


def _check_batch(name: str, x: torch.Tensor) -> None:
    if x.ndim != 3:
        raise InvalidEmbeddingError(
            f"{name} must be a (n, n_tokens, dim) batch, got shape {tuple(x.shape)}"
        )
    if x.shape[1] == 0:
        raise InvalidEmbeddingError(f"{name} has 0 tokens per row, got shape {tuple(x.shape)}")


def _check_mask(name: str, mask: Any, x: torch.Tensor) -> torch.Tensor | None:
    if mask is None:
        return None
    m = torch.as_tensor(mask, device=x.device)
    if m.dtype != torch.bool:
        raise InvalidInputError(f"{name} must be a bool tensor (True = real token), got {m.dtype}")
    if tuple(m.shape) != tuple(x.shape[:2]):
        raise InvalidInputError(
            f"{name} must have shape {tuple(x.shape[:2])}, got {tuple(m.shape)}"
        )
    return m


def _block_scores(
    q: torch.Tensor, q_mask: torch.Tensor | None, d: torch.Tensor, d_mask: torch.Tensor | None
) -> torch.Tensor:
    """Raw MaxSim sums of one block: q ``(a, t_q, dim)``, d ``(b, t_d, dim)`` -> ``(a, b)``."""
    a, t_q, dim = q.shape
    b, t_d, _ = d.shape
    # Document tokens as GEMM rows: measured 1.6-1.75x faster than the transposed product on CPU.
    sim = torch.mm(d.reshape(b * t_d, dim), q.reshape(a * t_q, dim).T).view(b, t_d, a * t_q)
    if d_mask is not None:
        sim.masked_fill_(~d_mask.unsqueeze(-1), float("-inf"))
    best = sim.amax(dim=1).view(b, a, t_q)  # best document token per query token
    if q_mask is not None:
        best = best.masked_fill(~q_mask.unsqueeze(0), 0.0)
    return best.sum(dim=-1).T


def maxsim(
    q: torch.Tensor,
    d: torch.Tensor,
    q_mask: torch.Tensor | None = None,
    d_mask: torch.Tensor | None = None,
    *,
    normalize: Normalize = "sum",
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
) -> torch.Tensor:
    """MaxSim between a padded batch of queries and a padded batch of documents.

    Args:
        q: queries ``(n_q, t_q, dim)``.
        d: documents ``(n_d, t_d, dim)``, on the same device as ``q``.
        q_mask: optional bool ``(n_q, t_q)``, True for real tokens. Every query needs at least
            one real token. Padded query tokens add 0.
        d_mask: optional bool ``(n_d, t_d)``, True for real tokens. Padded document tokens are
            set to ``-inf`` before the max; a document with no real token scores ``-inf``.
        normalize: ``"sum"`` (the raw ColBERT score, the library-wide default) or ``"mean"``
            (the sum divided by the number of real query tokens).
        block_elements: upper bound on the similarity entries held at once (a tuning knob;
            each block holds one query and one document at least).

    Returns:
        ``(n_q, n_d)`` scores, float32 (float64 if an input is float64), on ``q``'s device.

    Raises:
        InvalidEmbeddingError: ``q`` or ``d`` is not 3-D, has 0 tokens per row, is not floating
            point, or a real token holds NaN or infinity (for ``d``: whenever that reaches a
            score, which NaN and ``+inf`` always do).
        DimensionMismatchError: ``q`` and ``d`` have different ``dim``.
        InvalidInputError: a mask has the wrong shape or dtype, a query has no real token,
            ``normalize`` is unknown, ``block_elements < 1``, or the devices differ.

    Examples:
        >>> import torch
        >>> q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
        >>> d = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.6, 0.8], [0.0, 0.0]]])
        >>> maxsim(q, d)
        tensor([[1.0000, 1.4000]])
        >>> maxsim(q, d, normalize="mean")
        tensor([[0.5000, 0.7000]])
    """
    q, d = as_float_tensor(q, "q"), as_float_tensor(d, "d")
    _check_batch("q", q)
    _check_batch("d", d)
    if q.shape[-1] != d.shape[-1]:
        raise DimensionMismatchError(f"q has dim {q.shape[-1]} but d has dim {d.shape[-1]}")
    if q.device != d.device:
        raise InvalidInputError(f"q is on {q.device} but d is on {d.device}")
    if normalize not in ("sum", "mean"):
        raise InvalidInputError(f"normalize must be 'sum' or 'mean', got {normalize!r}")
    if block_elements < 1:
        raise InvalidInputError(f"block_elements must be >= 1, got {block_elements!r}")
    qm, dm = _check_mask("q_mask", q_mask, q), _check_mask("d_mask", d_mask, d)
    if qm is not None and not bool(qm.any(dim=1).all()):
        raise InvalidInputError("every query needs at least one real token (q_mask row all False)")
    check_finite(q, "q", qm)
    out = _maxsim_unchecked(q, d, qm, dm, normalize, block_elements)
    # d is checked through the result, not by a pass of its own (which would cost about as much
    # as scoring one query): a NaN or +inf in a real document token turns its scores NaN or +inf.
    if bool(torch.isnan(out).any()) or bool(torch.isposinf(out).any()):
        raise InvalidEmbeddingError("d holds NaN or infinite values in real (unmasked) tokens")
    return out


def _maxsim_unchecked(
    q: torch.Tensor,
    d: torch.Tensor,
    qm: torch.Tensor | None,
    dm: torch.Tensor | None,
    normalize: Normalize,
    block_elements: int,
) -> torch.Tensor:
    """:func:`maxsim` without the input checks: blocks over queries, then over documents."""
    dtype = compute_dtype(q, d)
    (n_q, t_q, _), (n_d, t_d, _) = q.shape, d.shape
    out = torch.empty((n_q, n_d), dtype=dtype, device=q.device)
    q_step = max(1, min(n_q, block_elements // (t_q * t_d)))
    d_step = max(1, block_elements // (q_step * t_q * t_d))
    for qa in range(0, n_q, q_step):
        qb = min(qa + q_step, n_q)
        q_blk = q[qa:qb].to(dtype)
        qm_blk = None if qm is None else qm[qa:qb]
        for da in range(0, n_d, d_step):
            db = min(da + d_step, n_d)
            dm_blk = None if dm is None else dm[da:db]
            out[qa:qb, da:db] = _block_scores(q_blk, qm_blk, d[da:db].to(dtype), dm_blk)
    if normalize == "mean":
        n_real = torch.full((n_q,), t_q, device=q.device) if qm is None else qm.sum(dim=1)
        out /= n_real.to(dtype).unsqueeze(1)
    return out


def _pad(xs: Sequence[torch.Tensor], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ragged ``(t_i, dim)`` matrices into ``(n, max t_i, dim)`` plus a bool mask."""
    padded = torch.nn.utils.rnn.pad_sequence([x.to(dtype) for x in xs], batch_first=True)
    lengths = torch.tensor([x.shape[0] for x in xs], device=padded.device)
    mask = torch.arange(padded.shape[1], device=padded.device) < lengths.unsqueeze(1)
    return padded, mask


def maxsim_ragged(
    queries: Sequence[torch.Tensor],
    docs: Sequence[torch.Tensor],
    *,
    normalize: Normalize = "sum",
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
) -> torch.Tensor:
    """MaxSim between ragged lists of token matrices (pads internally).

    Documents are sorted by length and padded per block, so a few long documents do not make
    every short one pay for their padding.

    Args:
        queries: ``n_q`` matrices, each ``(t_q, dim)``; ``t_q`` may differ.
        docs: ``n_d`` matrices, each ``(t_d, dim)``; ``t_d`` may differ.
        normalize: ``"sum"`` or ``"mean"``, as in :func:`maxsim`.
        block_elements: upper bound on the similarity entries held at once.

    Returns:
        ``(n_q, n_d)`` scores, float32 (float64 if an input is float64); ``(n_q, 0)`` or
        ``(0, n_d)`` for empty lists.

    Raises:
        InvalidEmbeddingError: a matrix is not 2-D, has no tokens, or holds NaN/infinity.
        DimensionMismatchError: the matrices do not share one ``dim``.
        InvalidInputError: ``normalize`` is unknown or an argument is not a sequence.

    Examples:
        >>> import torch
        >>> queries = [torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])]
        >>> docs = [torch.tensor([[0.0, 1.0]]), torch.tensor([[-1.0, 0.0], [0.6, 0.8]])]
        >>> maxsim_ragged(queries, docs)
        tensor([[0.0000, 0.6000],
                [1.0000, 1.4000]])
    """
    qs, q_dim = check_token_matrices(queries, "queries")
    ds, d_dim = check_token_matrices(docs, "docs")
    if normalize not in ("sum", "mean"):
        raise InvalidInputError(f"normalize must be 'sum' or 'mean', got {normalize!r}")
    if q_dim is not None and d_dim is not None and q_dim != d_dim:
        raise DimensionMismatchError(f"queries have dim {q_dim} but docs have dim {d_dim}")
    dtype = compute_dtype(*qs, *ds)
    device = qs[0].device if qs else (ds[0].device if ds else torch.device("cpu"))
    out = torch.empty((len(qs), len(ds)), dtype=dtype, device=device)
    if not qs or not ds:
        return out
    q_pad, q_mask = _pad(qs, dtype)
    order = sorted(range(len(ds)), key=lambda j: ds[j].shape[0])
    q_elems = q_pad.shape[0] * q_pad.shape[1]
    start = 0
    while start < len(order):
        stop = start + 1  # grow the block while its padded size (longest doc last) fits
        while (
            stop < len(order)
            and (stop + 1 - start) * ds[order[stop]].shape[0] * q_elems <= block_elements
        ):
            stop += 1
        idx = order[start:stop]
        d_pad, d_mask = _pad([ds[j] for j in idx], dtype)
        cols = torch.tensor(idx, device=device)
        out[:, cols] = _maxsim_unchecked(q_pad, d_pad, q_mask, d_mask, normalize, block_elements)
        start = stop
    return out
