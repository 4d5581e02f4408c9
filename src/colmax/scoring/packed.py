"""Exact MaxSim over a packed corpus: the kernel behind the flat index.

A corpus is one token matrix ``tokens (n_tokens, dim)`` (stored float16, often memory-mapped)
plus ``offsets (n_docs + 1,)``: document ``i`` is ``tokens[offsets[i]:offsets[i + 1]]`` and has
at least one token. :class:`PackedDocuments` prepares a compute copy once and then scores many
queries against all documents, or against a subset, in bounded memory.

How it is fast (every choice measured; numbers in ``docs/benchmarks.md``):

* **float32 compute.** On the AVX2 machine this was written on, torch's float32 GEMM runs at
  ~62 GFLOP/s with 2 threads, while bfloat16 runs at ~2, float16 at 1 to 8 (by operand
  layout) and int8 (``torch._int_mm``) at ~3 GFLOP/s; fbgemm's dynamic int8 linear (a deprecated API) matched
  float32 without beating it. So all arithmetic is float32 and scores are exact up to float32
  rounding. The prepared copy is float32 by default; ``copy_dtype="float16"`` halves its memory
  and widens each block just before its GEMM: same scores, ~1.4x slower for one query, as fast
  for batches of 16 (the widening is shared by all queries of a pass).
* **one GEMM per block, document tokens as rows.** All query tokens of up to
  ``MAX_QUERY_TOKENS_PER_PASS`` tokens are stacked, so a batch of queries reads the corpus once.
* **length-sorted layout, dense ``amax``.** Documents are sorted by length and padded with
  duplicates of their own last token (see :mod:`colmax.scoring._layout`), so the per-document
  max is one ``amax`` over a ``(n_docs, length, query_tokens)`` view per run of equal lengths.
  This beat ``np.maximum.reduceat``, ``torch.segment_reduce``, ``index_reduce`` (amax) and a
  ``torch.maximum`` halving tree on this CPU.
* **blocks at document boundaries.** No ``(query tokens x all tokens)`` matrix is ever built:
  each block holds about ``BLOCK_ELEMENTS`` similarities; documents longer than a block are
  scored in pieces with a running max.

Error bound: see :func:`colmax.scoring.bounds.score_error_bound`.

Examples:
    >>> import numpy as np, torch
    >>> tokens = np.array([[1, 0], [0, 1], [-1, 0]], dtype=np.float16)
    >>> docs = PackedDocuments.from_arrays(tokens, np.array([0, 2, 3]))
    >>> docs.score([torch.tensor([[1.0, 0.0], [0.0, -1.0]])])   # doc 0: 1 + 0, doc 1: -1 + 0
    tensor([[ 1., -1.]])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from colmax.errors import DimensionMismatchError, InvalidEmbeddingError, InvalidInputError
from colmax.scoring._checks import check_token_matrices
from colmax.scoring._layout import Layout, Plan, build_layout, layout_rows, plan_blocks

__all__ = [
    "BLOCK_ELEMENTS",
    "MAX_QUERY_TOKENS_PER_PASS",
    "PackedDocuments",
]

#: Similarities held per block (2**20 float32 = 4 MiB): best or tied of 2**18 .. 2**22 measured.
BLOCK_ELEMENTS = 1 << 20
#: Query tokens stacked into one GEMM; more queries take further passes over the corpus.
MAX_QUERY_TOKENS_PER_PASS = 1024
_MIN_BLOCK_ROWS = 2048
_MAX_WASTE = 1.0 / 32  # padding allowed when merging neighbouring lengths into one group
_PREP_ROWS = 1 << 18  # rows converted per step while building the compute copy
_SUBSET_ROWS = 1 << 16  # rows gathered per step when scoring a subset of documents


def _check_offsets(offsets: Any, n_tokens: int) -> npt.NDArray[np.int64]:
    offs = np.asarray(offsets.cpu() if isinstance(offsets, torch.Tensor) else offsets)
    if offs.ndim != 1 or offs.size == 0 or not np.issubdtype(offs.dtype, np.integer):
        raise InvalidInputError(
            f"offsets must be a 1-D integer array of n_docs + 1 entries, got {offs.dtype} "
            f"with shape {offs.shape}"
        )
    offs = offs.astype(np.int64)
    if offs[0] != 0 or offs[-1] != n_tokens:
        raise InvalidInputError(
            f"offsets must start at 0 and end at n_tokens={n_tokens}, got {offs[0]} .. {offs[-1]}"
        )
    if offs.size > 1 and not bool((np.diff(offs) > 0).all()):
        raise InvalidInputError(
            "offsets must be strictly increasing: every document needs >= 1 token"
        )
    return offs


def _check_tokens(tokens: Any) -> Any:
    if isinstance(tokens, torch.Tensor):
        ok = tokens.is_floating_point()
    else:
        tokens = tokens if isinstance(tokens, np.ndarray) else np.asarray(tokens)
        ok = np.issubdtype(tokens.dtype, np.floating)
    if not ok or tokens.ndim != 2 or tokens.shape[1] == 0:
        raise InvalidEmbeddingError(
            f"tokens must be a (n_tokens, dim) floating-point matrix, got {tokens.dtype} with "
            f"shape {tuple(tokens.shape)}"
        )
    return tokens


def _copy_rows(tokens: Any, rows: npt.NDArray[np.int64], out: torch.Tensor) -> None:
    """``out[:] = tokens[rows]`` in ``out``'s dtype, checking that every value is finite."""
    if isinstance(tokens, torch.Tensor):
        out.copy_(tokens.index_select(0, torch.from_numpy(rows).to(tokens.device)))
    else:  # numpy or a memory map: only the rows asked for are read
        out.copy_(torch.from_numpy(np.ascontiguousarray(np.take(tokens, rows, axis=0))))
    if not bool(torch.isfinite(out).all()):
        raise InvalidEmbeddingError(
            f"tokens hold NaN or infinite values (or values beyond the range of {out.dtype})"
        )


def _fill_matrix(
    tokens: Any,
    offs: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    layout: Layout,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Build the prepared copy in the layout's row order, a bounded slice at a time."""
    matrix = torch.empty((layout.n_rows, int(tokens.shape[1])), dtype=dtype)
    step = max(1, _PREP_ROWS // int(lengths.max(initial=1)))  # documents per slice
    for a in range(0, layout.order.size, step):
        docs = layout.order[a : a + step]
        rows = layout_rows(offs[docs], lengths[docs], layout.padded_len[a : a + step])
        r0 = int(layout.row_start[a])
        _copy_rows(tokens, rows, matrix[r0 : r0 + rows.size])
    return matrix


def _query_passes(qs: list[torch.Tensor]) -> list[tuple[int, int]]:
    """Split queries into consecutive groups of at most MAX_QUERY_TOKENS_PER_PASS tokens."""
    passes: list[tuple[int, int]] = []
    start = tokens = 0
    for i, q in enumerate(qs):
        if i > start and tokens + q.shape[0] > MAX_QUERY_TOKENS_PER_PASS:
            passes.append((start, i))
            start, tokens = i, 0
        tokens += q.shape[0]
    passes.append((start, len(qs)))
    return passes


def _score_plan(
    matrix: torch.Tensor,
    plan: Plan,
    n_docs: int,
    block_rows: int,
    qt: torch.Tensor,
    ind: torch.Tensor,
) -> torch.Tensor:
    """Scores ``(n_docs, n_queries)`` of the documents stored in ``matrix`` as ``plan`` says.

    ``qt`` is ``(dim, m)``: the stacked query tokens, transposed. ``ind`` is ``(m, n_queries)``:
    1 where token ``i`` belongs to query ``j``, so ``best @ ind`` sums each query's tokens.
    """
    m = qt.shape[1]
    out = torch.empty((n_docs, ind.shape[1]), dtype=torch.float32)
    sim_buf = torch.empty(block_rows * m, dtype=torch.float32)  # reused: no page faults per block
    best_buf = torch.empty(plan.max_block_docs * m, dtype=torch.float32)
    wide = None if matrix.dtype == torch.float32 else torch.empty((block_rows, matrix.shape[1]))

    def rows_f32(a: int, b: int) -> torch.Tensor:  # float16 copies widen exactly, per block
        return matrix[a:b] if wide is None else wide[: b - a].copy_(matrix[a:b])

    for blk in plan.blocks:
        rows = blk.row1 - blk.row0
        sim = torch.mm(rows_f32(blk.row0, blk.row1), qt, out=sim_buf[: rows * m].view(rows, m))
        best = best_buf[: (blk.doc1 - blk.doc0) * m].view(-1, m)
        at = 0
        for row_a, row_b, count, length in blk.segments:
            torch.amax(sim[row_a:row_b].view(count, length, m), dim=1, out=best[at : at + count])
            at += count
        torch.mm(best, ind, out=out[blk.doc0 : blk.doc1])
    for row, length, doc in plan.long_docs:
        acc = torch.full((m,), float("-inf"))
        for a in range(row, row + length, block_rows):
            b = min(a + block_rows, row + length)
            sim = torch.mm(rows_f32(a, b), qt, out=sim_buf[: (b - a) * m].view(b - a, m))
            torch.maximum(acc, sim.amax(dim=0), out=acc)
        out[doc] = acc @ ind
    return out


class PackedDocuments:
    """A corpus of token matrices prepared for exact, fast MaxSim (see the module docstring).

    Build it with :meth:`from_arrays`. It is immutable and safe to share between threads.

    Attributes:
        n_docs: number of documents.
        n_tokens: number of real token vectors.
        dim: vector dimension.
        compute_dtype: dtype of the arithmetic (``torch.float32``).
        copy_dtype: dtype of the prepared copy held in memory (float32 or float16).
    """

    def __init__(self, matrix: torch.Tensor, layout: Layout, lengths: npt.NDArray[np.int64]):
        """Use :meth:`from_arrays`; this constructor takes an already prepared layout."""
        self._matrix = matrix
        self._layout = layout
        self._lengths = lengths
        self._plans: dict[int, Plan] = {}
        self.n_docs = int(lengths.size)
        self.n_tokens = int(lengths.sum())
        self.dim = int(matrix.shape[1])
        self.compute_dtype = torch.float32
        self.copy_dtype = matrix.dtype

    @classmethod
    def from_arrays(
        cls,
        tokens: Any,
        offsets: Any,
        *,
        compute_dtype: str = "auto",
        copy_dtype: str = "float32",
    ) -> PackedDocuments:
        """Prepare the compute copy of a packed corpus.

        Args:
            tokens: ``(n_tokens, dim)`` float16/bfloat16/float32/float64 numpy array, memory map
                or CPU tensor. It is read once and not kept.
            offsets: ``(n_docs + 1,)`` integers, ``offsets[0] == 0``,
                ``offsets[-1] == n_tokens``, strictly increasing (every doc has >= 1 token).
            compute_dtype: ``"auto"`` or ``"float32"`` (the same thing: float32 is the only
                dtype that was both fastest and exact on the CPUs measured).
            copy_dtype: ``"float32"`` (default, fastest) or ``"float16"``: keep the prepared
                copy in float16 (half the memory, the size of the stored index) and widen each
                block to float32 just before its GEMM. Scores are the same; single queries
                are ~1.4x slower, batches of 16 queries as fast (see ``docs/benchmarks.md``).
                float32/float64 tokens are rounded to float16 first in this mode.

        Returns:
            The prepared documents.

        Raises:
            InvalidEmbeddingError: ``tokens`` is not a 2-D float matrix or holds NaN/infinity.
            InvalidInputError: ``offsets`` is malformed or a dtype name is unknown.

        Examples:
            >>> import numpy as np
            >>> docs = PackedDocuments.from_arrays(np.ones((5, 4), np.float16), [0, 2, 5])
            >>> docs.n_docs, docs.n_tokens, docs.dim
            (2, 5, 4)
        """
        if compute_dtype not in ("auto", "float32"):
            raise InvalidInputError(
                f"compute_dtype must be 'auto' or 'float32', got {compute_dtype!r}"
            )
        if copy_dtype not in ("float32", "float16"):
            raise InvalidInputError(
                f"copy_dtype must be 'float32' or 'float16', got {copy_dtype!r}"
            )
        tokens = _check_tokens(tokens)
        offs = _check_offsets(offsets, int(tokens.shape[0]))
        lengths = np.diff(offs)
        layout = build_layout(lengths, _MAX_WASTE)
        dtype = torch.float32 if copy_dtype == "float32" else torch.float16
        matrix = _fill_matrix(tokens, offs, lengths, layout, dtype)
        return cls(matrix, layout, lengths)

    @property
    def nbytes(self) -> int:
        """Bytes held: the prepared copy plus the layout's index arrays."""
        lay = self._layout
        index_bytes = sum(
            a.nbytes for a in (lay.order, lay.position, lay.row_start, lay.padded_len)
        )
        return int(self._matrix.nbytes) + index_bytes + int(self._lengths.nbytes)

    def __repr__(self) -> str:
        return (
            f"PackedDocuments(n_docs={self.n_docs}, n_tokens={self.n_tokens}, dim={self.dim}, "
            f"nbytes={self.nbytes})"
        )

    def score(
        self,
        queries: Sequence[Any],
        doc_ids: Any | None = None,
        *,
        block_rows: int | None = None,
    ) -> torch.Tensor:
        """Exact MaxSim of each query against every document, or against ``doc_ids`` only.

        Args:
            queries: ``n_queries`` token matrices ``(t_q, dim)`` (tensors or arrays; ``t_q``
                may differ between queries). Up to ``MAX_QUERY_TOKENS_PER_PASS`` query tokens
                share one pass over the corpus.
            doc_ids: optional 1-D integer document numbers in ``[0, n_docs)`` (any order,
                repeats allowed). Small subsets are gathered and scored on their own, so
                filtered search costs in proportion to the subset.
            block_rows: token rows per GEMM block (a tuning and testing knob; default keeps
                about ``BLOCK_ELEMENTS`` similarities per block). Documents longer than a block
                are scored in pieces.

        Returns:
            ``(n_queries, n_docs)`` float32 scores (``(n_queries, len(doc_ids))`` with
            ``doc_ids``, columns in the given order), raw sums over query tokens, within
            :func:`~colmax.scoring.bounds.score_error_bound` of exact MaxSim.

        Raises:
            InvalidEmbeddingError: a query is not 2-D, has no tokens, or holds NaN/infinity.
            DimensionMismatchError: a query's ``dim`` differs from the documents'.
            InvalidInputError: ``doc_ids`` is not 1-D integers in range or ``block_rows < 1``.

        Examples:
            >>> import numpy as np, torch
            >>> tokens = np.array([[1, 0], [0, 1], [-1, 0]], dtype=np.float16)
            >>> docs = PackedDocuments.from_arrays(tokens, [0, 1, 2, 3])
            >>> q = torch.tensor([[1.0, 0.0]])
            >>> docs.score([q])
            tensor([[ 1.,  0., -1.]])
            >>> docs.score([q], doc_ids=[2, 0])
            tensor([[-1.,  1.]])
        """
        qs, dim = check_token_matrices(queries, "queries")
        if dim is not None and dim != self.dim:
            raise DimensionMismatchError(
                f"queries have dim {dim}, the documents have dim {self.dim}"
            )
        if block_rows is not None and block_rows < 1:
            raise InvalidInputError(f"block_rows must be >= 1, got {block_rows!r}")
        ids = None if doc_ids is None else self._check_doc_ids(doc_ids)
        out = torch.empty((len(qs), self.n_docs if ids is None else ids.size), dtype=torch.float32)
        if out.numel() == 0:
            return out
        for a, b in _query_passes(qs):
            stacked = torch.cat([q.detach().to("cpu", torch.float32) for q in qs[a:b]])
            owner = torch.repeat_interleave(
                torch.arange(b - a), torch.tensor([q.shape[0] for q in qs[a:b]])
            )
            ind = torch.nn.functional.one_hot(owner, b - a).to(torch.float32)
            rows = block_rows or max(BLOCK_ELEMENTS // stacked.shape[0], _MIN_BLOCK_ROWS)
            qt = stacked.T.contiguous()
            out[a:b] = (
                self._score_all(qt, ind, rows)
                if ids is None
                else self._score_ids(qt, ind, ids, rows)
            ).T
        return out

    def _check_doc_ids(self, doc_ids: Any) -> npt.NDArray[np.int64]:
        ids = np.asarray(doc_ids.cpu() if isinstance(doc_ids, torch.Tensor) else doc_ids)
        if ids.size == 0:
            return np.zeros(0, dtype=np.int64)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise InvalidInputError(
                f"doc_ids must be a 1-D integer array, got {ids.dtype} {ids.shape}"
            )
        if ids.min() < 0 or ids.max() >= self.n_docs:
            raise InvalidInputError(
                f"doc_ids must lie in [0, {self.n_docs}), got values {ids.min()} .. {ids.max()}"
            )
        return ids.astype(np.int64)

    def _plan(self, block_rows: int) -> Plan:
        plan = self._plans.get(block_rows)
        if plan is None:  # a benign race: two threads may build the same plan once each
            plan = plan_blocks(self._layout.padded_len, block_rows)
            self._plans[block_rows] = plan
        return plan

    def _score_all(self, qt: torch.Tensor, ind: torch.Tensor, rows: int) -> torch.Tensor:
        """``(n_docs, n_queries)`` in document order."""
        res = _score_plan(self._matrix, self._plan(rows), self.n_docs, rows, qt, ind)
        out = torch.empty_like(res)
        out[torch.from_numpy(self._layout.order)] = res
        return out

    def _score_ids(
        self, qt: torch.Tensor, ind: torch.Tensor, ids: npt.NDArray[np.int64], rows: int
    ) -> torch.Tensor:
        """``(len(ids), n_queries)``: gathers the subset's rows, slice by slice."""
        lay = self._layout
        pos = np.unique(lay.position[ids])  # layout positions, sorted: runs of equal length
        plen = lay.padded_len[pos]
        if 2 * int(plen.sum()) > lay.n_rows:  # gathering would cost more than one full pass
            return self._score_all(qt, ind, rows)[torch.from_numpy(ids)]
        res = torch.empty((pos.size, ind.shape[1]), dtype=torch.float32)
        ends = np.cumsum(plen)
        a = 0
        while a < pos.size:
            b = max(
                a + 1, int(np.searchsorted(ends, ends[a] - plen[a] + _SUBSET_ROWS, side="right"))
            )
            src = layout_rows(lay.row_start[pos[a:b]], plen[a:b], plen[a:b])
            matrix = self._matrix.index_select(0, torch.from_numpy(src))
            res[a:b] = _score_plan(matrix, plan_blocks(plen[a:b], rows), b - a, rows, qt, ind)
            a = b
        return res[torch.from_numpy(np.searchsorted(pos, lay.position[ids]))]
