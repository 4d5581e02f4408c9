"""Exact MaxSim over a packed corpus: the kernel behind the flat index.

A corpus is one token matrix ``tokens (n_tokens, dim)`` (stored float16, often memory-mapped)
plus ``offsets (n_docs + 1,)``: document ``i`` is ``tokens[offsets[i]:offsets[i + 1]]`` and has
at least one token. :class:`PackedDocuments` prepares a compute copy once and then scores many
queries against all documents, or against a subset, in bounded memory.

How it is fast (every choice measured; numbers in ``docs/benchmarks.md``):

* **precision follows the CPU.** :meth:`PackedDocuments.score` computes in float32 (the
  float16 copy widens exactly, block by block). :meth:`PackedDocuments.top_k`, the search
  path, first scores everything in bfloat16 where the CPU runs it natively (3-6x float32 on
  AVX512-BF16/AMX; 10-50x *slower* on AVX2-only CPUs, hence the check in
  :mod:`colmax.hardware`), else in int8 where int8 GEMMs are native (VNNI), then re-scores in float32 and
  float64 only the documents its per-score error bound cannot exclude
  (:mod:`colmax.scoring.lowp`, :mod:`colmax.scoring.cascade`): same ids, order and scores on
  every path. Where nothing is native the first pass is the float32 pass itself.
  The exact copy is float32 by default; ``copy_dtype="float16"`` halves its memory and widens
  each block just before its GEMM (the default beside a low-precision copy).
* **one GEMM per block, query tokens as rows** (``queries @ block.T``, so each document's
  similarities are a contiguous run per query token; see :mod:`colmax.scoring._kernel`).
  All query tokens of up to ``MAX_QUERY_TOKENS_PER_PASS`` tokens are stacked, so a batch of
  queries reads the corpus once.
* **length-sorted layout, dense ``amax``.** Documents are sorted by length and padded with
  duplicates of their own last token (see :mod:`colmax.scoring._layout`), so the per-document
  max is one ``amax`` over a ``(query_tokens, n_docs, length)`` view per run of equal lengths.
  A gathered subset (re-scoring, filters) is padded into a few length groups the same way.
  This beat ``np.maximum.reduceat``, ``torch.segment_reduce``, ``index_reduce`` (amax) and a
  ``torch.maximum`` halving tree on this CPU.
* **blocks at document boundaries.** No ``(query tokens x all tokens)`` matrix is ever built:
  each block holds about ``BLOCK_ELEMENTS`` similarities (``LOW_BLOCK_ELEMENTS`` in the first
  pass); documents longer than a block are scored in pieces with a running max. The
  per-document maxima of many blocks are summed per query in one small GEMM.

Error bound: see :func:`colmax.scoring.bounds.score_error_bound`.

Examples:
    >>> import numpy as np, torch
    >>> tokens = np.array([[1, 0], [0, 1], [-1, 0]], dtype=np.float16)
    >>> docs = PackedDocuments.from_arrays(tokens, np.array([0, 2, 3]))
    >>> docs.score([torch.tensor([[1.0, 0.0], [0.0, -1.0]])])   # doc 0: 1 + 0, doc 1: -1 + 0
    tensor([[ 1., -1.]])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from colmax.errors import DimensionMismatchError, InvalidInputError
from colmax.scoring._checks import check_token_matrices
from colmax.scoring._kernel import float32_sims, float64_sims, plan_maxima
from colmax.scoring._layout import (
    Layout,
    Plan,
    build_layout,
    group_padded,
    layout_rows,
    plan_blocks,
)
from colmax.scoring._prepare import (
    NORM_MARGIN,
    check_offsets,
    check_tokens,
    fill_matrix,
    max_row_norm,
)
from colmax.scoring._scratch import scratch
from colmax.scoring.bounds import score_error_bound
from colmax.scoring.cascade import Rescore, exact_top_k
from colmax.scoring.lowp import (
    LOW_PRECISIONS,
    LowCopy,
    build_low_copy,
    first_pass,
    first_pass_precision,
    low_rows,
    query_stats,
    score_bounds,
)
from colmax.validation import check_positive_int

#: ``kernel(matrix, plan, block_rows, n_docs, layout_positions) -> (n_docs, width)`` in plan
#: order (``plan`` was cut with ``block_rows``); ``layout_positions`` is ``None`` for the whole
#: corpus (plan order = layout order). ``matrix`` is a tensor or pre-packed rows.
Kernel = Callable[[Any, Plan, int, int, Any], torch.Tensor]
#: ``gather(source_rows, layout_positions, padded_lengths) -> rows`` of a subset.
Gather = Callable[
    [npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]], torch.Tensor
]

__all__ = [
    "BLOCK_ELEMENTS",
    "LOW_BLOCK_ELEMENTS",
    "LOW_PACK_ROWS",
    "MAX_QUERY_TOKENS_PER_PASS",
    "PackedDocuments",
    "SplitTopK",
    "TopK",
    "top_k_across",
]

#: Similarities held per block (2**20 float32 = 4 MiB): best or tied of 2**18 .. 2**22 measured.
BLOCK_ELEMENTS = 1 << 20
#: Similarities per block of the low-precision first pass (2**22: 8 MiB of bfloat16). Larger
#: than ``BLOCK_ELEMENTS``: on a busy 2-core host SciFact top-10 took 600 ms per query with
#: 2**17-row blocks against 968 ms with 2**20 / m rows (``bench_two_pass.py``, load 6), because
#: every parallel GEMM waits for both threads to be scheduled; on a quiet host they tie.
LOW_BLOCK_ELEMENTS = 1 << 22
#: Rows per block of the pre-packed low-precision copy (see :mod:`colmax.scoring._prepacked`):
#: its whole-corpus pass runs in these blocks whatever the query length. 2**12 to 2**17 rows
#: tied at 1 thread; 2**14 keeps a 1,024-token batch's bfloat16 block at 32 MiB.
LOW_PACK_ROWS = 1 << 14
#: Query tokens stacked into one GEMM; more queries take further passes over the corpus.
MAX_QUERY_TOKENS_PER_PASS = 1024
_MIN_BLOCK_ROWS = 2048
_MAX_WASTE = 1.0 / 32  # padding allowed when merging neighbouring lengths into one group
# Rows gathered per step when scoring a subset of documents: small enough that the gathered
# rows and their float32 widening stay in reused per-thread buffers (see _scratch).
_SUBSET_ROWS = 1 << 13
# A gathered subset (re-scoring, filters) pads its documents into a few length groups: each
# distinct length costs one amax call, and 150 re-scored SciFact documents had ~150 lengths
# (130 ms of re-scoring per query on a busy host, most of it waiting on those calls).
_SUBSET_WASTE = 0.25


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


def _stack(qs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stacked float32 query tokens ``(m, dim)``, each token's query, one-hot ``(m, n)``."""
    stacked = torch.cat([q.detach().to("cpu", torch.float32) for q in qs])
    owner = torch.repeat_interleave(torch.arange(len(qs)), torch.tensor([q.shape[0] for q in qs]))
    return stacked, owner, torch.nn.functional.one_hot(owner, len(qs)).to(torch.float32)


def _exact_plan(
    matrix: torch.Tensor,
    plan: Plan,
    n_docs: int,
    block_rows: int,
    q: torch.Tensor,
    ind: torch.Tensor,
) -> torch.Tensor:
    """Scores ``(n_docs, n_queries)`` of the documents stored in ``matrix``, in ``q``'s dtype
    (float32: the fast exact kernel; float64: the final decision between near ties).

    ``q`` is ``(m, dim)``: the stacked query tokens. ``ind`` is ``(m, n_queries)``: 1 where
    token ``i`` belongs to query ``j``, so ``best.T @ ind`` sums each query's tokens.
    """
    out = torch.empty((n_docs, ind.shape[1]), dtype=q.dtype)
    wide = q.dtype == torch.float64
    sims = float64_sims(matrix, q) if wide else float32_sims(matrix, q)
    for d0, d1, best in plan_maxima(plan, block_rows, q.shape[0], sims, q.dtype, rows_first=True):
        torch.mm(best.T, ind, out=out[d0:d1])
    return out


@dataclass(frozen=True)
class TopK:
    """The best documents of one query, best first.

    Attributes:
        ids: document numbers: the ``k`` best, plus any document tied with the ``k``-th
            (so a caller breaking ties by its own key sees every tied document).
        scores: their exact MaxSim scores rounded to float32 (see
            :mod:`colmax.scoring.cascade`); within :func:`~colmax.scoring.score_error_bound`
            of what :meth:`PackedDocuments.score` gives.
        rescored: documents scored again after the first pass (a measure of how much the
            first pass's bound left open).
    """

    ids: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]
    rescored: int


class PackedDocuments:
    """A corpus of token matrices prepared for exact, fast MaxSim (see the module docstring).

    Build it with :meth:`from_arrays`. It is immutable and safe to share between threads.

    Attributes:
        n_docs: number of documents.
        n_tokens: number of real token vectors.
        dim: vector dimension.
        compute_dtype: ``torch.float32`` (no first pass), or the first-pass dtype of
            :meth:`top_k` (``torch.bfloat16``, ``torch.int8``).
        copy_dtype: dtype of the exact copy held in memory (float32 or float16).
    """

    def __init__(
        self,
        matrix: torch.Tensor,
        layout: Layout,
        lengths: npt.NDArray[np.int64],
        low: LowCopy | None = None,
    ):
        """Use :meth:`from_arrays`; this constructor takes an already prepared layout."""
        self._matrix = matrix
        self._layout = layout
        self._lengths = lengths
        self._low = low
        self._plans: dict[int, Plan] = {}
        self.n_docs = int(lengths.size)
        self.n_tokens = int(lengths.sum())
        self.dim = int(matrix.shape[1])
        self.compute_dtype = torch.float32 if low is None else low.dtype
        self.copy_dtype = matrix.dtype
        # Largest stored token norm (for the float32 kernel's bound), from the copy itself.
        self._max_norm = max_row_norm(matrix)

    @classmethod
    def from_arrays(
        cls,
        tokens: Any,
        offsets: Any,
        *,
        compute_dtype: str = "auto",
        copy_dtype: str | None = None,
    ) -> PackedDocuments:
        """Prepare the compute copies of a packed corpus.

        Args:
            tokens: ``(n_tokens, dim)`` float16/bfloat16/float32/float64 numpy array, memory map
                or CPU tensor. It is read once and not kept.
            offsets: ``(n_docs + 1,)`` integers, ``offsets[0] == 0``,
                ``offsets[-1] == n_tokens``, strictly increasing (every doc has >= 1 token).
            compute_dtype: the first pass of :meth:`top_k`: ``"auto"`` (bfloat16 where this
                machine runs it natively, else int8 where int8 GEMMs are native, else
                float32; ``COLMAX_PRECISION`` overrides; see
                :func:`~colmax.scoring.lowp.first_pass_precision`), ``"float32"`` (no first pass), ``"bfloat16"`` or
                ``"int8"`` (correct on any CPU, fast only where native). Results are the same
                in every mode; :meth:`score` is float32 in every mode.
            copy_dtype: the exact copy: ``"float32"`` (fastest for :meth:`score`) or
                ``"float16"`` (half the memory, widened per block; float32/float64 tokens are
                rounded to float16 first). ``None``: float16 when the tokens are float16 and a
                first pass is used (the low copy then takes the memory saved), else float32.

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
        if compute_dtype not in ("auto", "float32", *LOW_PRECISIONS):
            raise InvalidInputError(
                "compute_dtype must be 'auto', 'float32', 'bfloat16' or 'int8', got "
                f"{compute_dtype!r}"
            )
        if copy_dtype not in (None, "float32", "float16"):
            raise InvalidInputError(
                f"copy_dtype must be 'float32', 'float16' or None, got {copy_dtype!r}"
            )
        compute = first_pass_precision(compute_dtype)
        tokens = check_tokens(tokens)
        offs = check_offsets(offsets, int(tokens.shape[0]))
        if copy_dtype is None:
            half = str(tokens.dtype).removeprefix("torch.") == "float16"
            copy_dtype = "float16" if half and compute != "float32" else "float32"
        lengths = np.diff(offs)
        layout = build_layout(lengths, _MAX_WASTE)
        dtype = torch.float32 if copy_dtype == "float32" else torch.float16
        matrix = fill_matrix(tokens, offs, lengths, layout, dtype)
        low = (
            None
            if compute == "float32"
            else build_low_copy(matrix, layout.padded_len, compute, LOW_PACK_ROWS)
        )
        return cls(matrix, layout, lengths, low)

    @property
    def nbytes(self) -> int:
        """Bytes held: the prepared copies plus the layout's index arrays."""
        lay = self._layout
        index_bytes = sum(
            a.nbytes for a in (lay.order, lay.position, lay.row_start, lay.padded_len)
        )
        low = 0 if self._low is None else self._low.nbytes
        return int(self._matrix.nbytes) + low + index_bytes + int(self._lengths.nbytes)

    def __repr__(self) -> str:
        return (
            f"PackedDocuments(n_docs={self.n_docs}, n_tokens={self.n_tokens}, dim={self.dim}, "
            f"compute_dtype={str(self.compute_dtype).removeprefix('torch.')!r}, "
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

        Always float32 (the first pass of :meth:`top_k` is not used here: every score is
        returned, so every score must be exact).

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
        qs, ids = self._check_call(queries, doc_ids, block_rows)
        out = torch.empty((len(qs), self.n_docs if ids is None else ids.size), dtype=torch.float32)
        if out.numel() == 0:
            return out
        for a, b in _query_passes(qs):
            stacked, _, ind = _stack(qs[a:b])
            rows = block_rows or max(BLOCK_ELEMENTS // stacked.shape[0], _MIN_BLOCK_ROWS)

            def kernel(matrix: Any, plan: Plan, brows: int, n: int, pos: Any) -> torch.Tensor:
                return _exact_plan(matrix, plan, n, brows, stacked, ind)  # noqa: B023 (called now)

            out[a:b] = self._run(kernel, ids, rows, ind.shape[1], torch.float32).T
        return out

    def top_k(
        self,
        queries: Sequence[Any],
        k: int,
        doc_ids: Any | None = None,
        *,
        block_rows: int | None = None,
    ) -> list[TopK]:
        """The ``k`` best documents of each query by exact MaxSim, on every path alike.

        A first pass scores every eligible document with a per-score error bound: in bfloat16
        or int8 with a low-precision ``compute_dtype`` (:mod:`colmax.scoring.lowp`), else in
        float32 (:func:`~colmax.scoring.bounds.score_error_bound`). Every document whose upper
        bound reaches the ``k``-th best lower bound is scored again in float32, and the few
        that float32 cannot separate in float64 (:mod:`colmax.scoring.cascade`). No other
        document can be in the top ``k`` or tied with it, so ids, order and scores are the
        same for every ``compute_dtype`` and on every CPU: exact MaxSim rounded to float32,
        ties broken by document number.

        Args:
            queries: token matrices ``(t_q, dim)``, as for :meth:`score`.
            k: documents wanted per query (>= 1; fewer when fewer are eligible).
            doc_ids: optional 1-D integer document numbers: only these are eligible.
            block_rows: as for :meth:`score`.

        Returns:
            One :class:`TopK` per query.

        Raises:
            InvalidEmbeddingError, DimensionMismatchError, InvalidInputError: as for
                :meth:`score`, or ``k < 1``.

        Examples:
            >>> import numpy as np, torch
            >>> tokens = np.array([[1, 0], [0, 1], [-1, 0], [1, 0]], dtype=np.float16)
            >>> docs = PackedDocuments.from_arrays(tokens, [0, 1, 2, 3, 4])
            >>> best = docs.top_k([torch.tensor([[1.0, 0.0]])], k=1)[0]
            >>> best.ids.tolist(), best.scores.tolist()   # documents 0 and 3 tie
            ([0, 3], [1.0, 1.0])
        """
        subsets = None if doc_ids is None else [doc_ids]
        found = top_k_across([self], queries, k, subsets, block_rows=block_rows)
        return [TopK(r.ids, r.scores, r.rescored) for r in found]

    def _first_pass(
        self,
        qs: list[torch.Tensor],
        ids: npt.NDArray[np.int64] | None,
        cols: npt.NDArray[np.int64],
        block_rows: int | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-precision scores ``(n, n_queries)`` and their bounds against exact MaxSim."""
        low = self._low
        if low is None:  # internal: only called with a low copy
            raise RuntimeError("no low-precision copy")
        stacked, owner, ind = _stack(qs)
        nq = len(qs)
        rows = block_rows or max(LOW_BLOCK_ELEMENTS // stacked.shape[0], _MIN_BLOCK_ROWS)
        q = query_stats(stacked, owner, nq, low.kind, low.query_levels)

        def kernel(matrix: Any, plan: Plan, brows: int, n: int, pos: Any) -> torch.Tensor:
            scale = low.scale
            if scale is not None and pos is not None:  # a gathered subset: its own scales
                scale = scale[torch.from_numpy(pos)]
            return first_pass(matrix, plan, n, brows, q, ind, scale)

        def gather(src: Any, pos: Any, glen: Any) -> torch.Tensor:
            if low.matrix is not None:
                return _gather(low.matrix, src)
            rs = None
            if low.scale is not None:
                rs = torch.repeat_interleave(
                    low.scale[torch.from_numpy(pos)], torch.from_numpy(glen)
                )
            return low_rows(_gather(self._matrix, src), low.kind, rs)

        # The whole corpus runs in the blocks the pre-packed copy was cut into (its own size,
        # whatever ``block_rows``); a subset is gathered and rounded afresh.
        full = (low.matrix, rows) if low.packed is None else (low.packed, low.pack_block_rows)
        res = self._run(kernel, ids, rows, 2 * nq, torch.float32, full=full, gather=gather)
        positions = torch.from_numpy(self._layout.position[cols])
        return res[:, :nq], score_bounds(low, positions, q, res[:, nq:], self.dim)

    def _bound32(self, q: torch.Tensor) -> float:
        """The float32 kernel's error bound for query ``q`` against these documents."""
        q_norm = float(torch.linalg.vector_norm(q.detach().float(), dim=1).max())
        return score_error_bound(
            int(q.shape[0]),
            self.dim,
            max_query_norm=q_norm * NORM_MARGIN,
            max_doc_norm=self._max_norm,
        )

    def _rescorer(self, q: torch.Tensor, block_rows: int | None, dtype: torch.dtype) -> Rescore:
        """Scores of some documents against ``q`` alone, in float32 or float64."""
        qd = q.detach().to("cpu", dtype).contiguous()
        ind = torch.ones((q.shape[0], 1), dtype=dtype)
        rows = block_rows or max(BLOCK_ELEMENTS // q.shape[0], _MIN_BLOCK_ROWS)

        def kernel(matrix: Any, plan: Plan, brows: int, n: int, pos: Any) -> torch.Tensor:
            return _exact_plan(matrix, plan, n, brows, qd, ind)

        def rescore(doc_ids: npt.NDArray[np.int64]) -> torch.Tensor:
            if doc_ids.size == 0:
                return torch.zeros(0, dtype=dtype)
            return self._run(kernel, doc_ids, rows, 1, dtype)[:, 0]

        return rescore

    def _check_call(
        self, queries: Sequence[Any], doc_ids: Any, block_rows: int | None
    ) -> tuple[list[torch.Tensor], npt.NDArray[np.int64] | None]:
        qs, dim = check_token_matrices(queries, "queries")
        return qs, self._check_args(dim, doc_ids, block_rows)

    def _check_args(
        self, query_dim: int | None, doc_ids: Any, block_rows: int | None
    ) -> npt.NDArray[np.int64] | None:
        """The checks of a call beyond the queries themselves; the checked ``doc_ids``."""
        if query_dim is not None and query_dim != self.dim:
            raise DimensionMismatchError(
                f"queries have dim {query_dim}, the documents have dim {self.dim}"
            )
        if block_rows is not None and block_rows < 1:
            raise InvalidInputError(f"block_rows must be >= 1, got {block_rows!r}")
        return None if doc_ids is None else self._check_doc_ids(doc_ids)

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

    def _gathered_positions(
        self, ids: npt.NDArray[np.int64] | None
    ) -> npt.NDArray[np.int64] | None:
        """The sorted layout positions of ``ids`` when a pass over them gathers their rows (a
        subset of at most half the rows); ``None`` when it runs over the whole corpus."""
        if ids is None:
            return None
        lay = self._layout
        pos = np.unique(lay.position[ids])
        return pos if 2 * int(lay.padded_len[pos].sum()) <= lay.n_rows else None

    def _run(
        self,
        kernel: Kernel,
        ids: npt.NDArray[np.int64] | None,
        rows: int,
        width: int,
        dtype: torch.dtype,
        *,
        full: tuple[Any, int] | None = None,
        gather: Gather | None = None,
    ) -> torch.Tensor:
        """``kernel`` over all documents, or over ``ids`` only: ``(n, width)`` in ``ids``' order.

        ``full`` is the matrix of a whole pass and its block rows (default: the exact copy in
        blocks of ``rows``); ``gather`` gives a subset's rows (default: gathered from the exact
        copy). A subset is gathered a slice at a time and scored on its own, unless it covers
        more than half the rows (then one full pass is cheaper).
        """
        lay = self._layout
        pos = self._gathered_positions(ids)
        if pos is None or ids is None:
            matrix, brows = full if full is not None else (self._matrix, rows)
            res = kernel(matrix, self._plan(brows), brows, self.n_docs, None)
            out = torch.empty_like(res)
            out[torch.from_numpy(lay.order)] = res
            return out if ids is None else out[torch.from_numpy(ids)]
        # pos: layout positions, sorted, so documents of equal padded length lie in runs
        plen = lay.padded_len[pos]
        glen = group_padded(plen, _SUBSET_WASTE)  # padding repeats a row: maxima unchanged
        res = torch.empty((pos.size, width), dtype=dtype)
        ends = np.cumsum(glen)
        a = 0
        while a < pos.size:
            b = max(
                a + 1, int(np.searchsorted(ends, ends[a] - glen[a] + _SUBSET_ROWS, side="right"))
            )
            src = layout_rows(lay.row_start[pos[a:b]], plen[a:b], glen[a:b])
            if gather is None:
                part = _gather(self._matrix, src)
            else:
                part = gather(src, pos[a:b], glen[a:b])
            res[a:b] = kernel(part, plan_blocks(glen[a:b], rows), rows, b - a, pos[a:b])
            a = b
        return res[torch.from_numpy(np.searchsorted(pos, lay.position[ids]))]


@dataclass(frozen=True)
class SplitTopK:
    """The best documents of one query over several corpora (:func:`top_k_across`).

    Attributes:
        parts: the corpus (index into the list given) of each document.
        ids: its document number within that corpus.
        scores: exact MaxSim rounded to float32, best first (ties: corpus, then number).
        rescored: documents scored again after the first pass.
    """

    parts: npt.NDArray[np.int64]
    ids: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]
    rescored: int


def top_k_across(
    corpora: Sequence[PackedDocuments],
    queries: Sequence[Any],
    k: int,
    doc_ids: Sequence[Any | None] | None = None,
    *,
    block_rows: int | None = None,
) -> list[SplitTopK]:
    """The ``k`` best documents of each query over several corpora at once, exactly as
    :meth:`PackedDocuments.top_k` over their union.

    The segments of one index are such corpora. Each runs its own first pass, then one
    cascade decides for all: only documents that could reach the **overall** ``k``-th place are
    re-scored, where per-corpus top-k would re-score ``k`` or more in every corpus (and pay each
    re-scoring's fixed costs once per corpus).

    Args:
        corpora: the corpora (same ``dim``).
        queries: token matrices ``(t_q, dim)``, as for :meth:`PackedDocuments.score`.
        k: documents wanted per query (>= 1).
        doc_ids: optional, one entry per corpus: ``None`` (all its documents are eligible) or
            the eligible document numbers.
        block_rows: as for :meth:`PackedDocuments.score`.

    Returns:
        One :class:`SplitTopK` per query: the ``k`` best plus any document tied with the
        ``k``-th.

    Raises:
        InvalidEmbeddingError, DimensionMismatchError, InvalidInputError: as for
            :meth:`PackedDocuments.top_k`, or ``doc_ids`` has another length than ``corpora``.
    """
    check_positive_int(k)
    if doc_ids is not None and len(doc_ids) != len(corpora):
        raise InvalidInputError(
            f"doc_ids needs one entry per corpus ({len(corpora)}), got {len(doc_ids)}"
        )
    qs, dim = check_token_matrices(queries, "queries")  # once, not once per corpus
    subsets = [
        c._check_args(dim, None if doc_ids is None else doc_ids[i], block_rows)
        for i, c in enumerate(corpora)
    ]
    cols = [np.arange(c.n_docs) if s is None else s for c, s in zip(corpora, subsets)]
    sizes = [int(c.size) for c in cols]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    live = [i for i, n in enumerate(sizes) if n]
    empty = np.zeros(0, dtype=np.int64)
    if not qs or not live:
        return [SplitTopK(empty, empty, np.zeros(0, dtype=np.float32), 0) for _ in qs]
    single = len(corpora) == 1
    # One corpus: its own document numbers (ties broken by them); several: global positions.
    gcols = cols[0] if single else np.arange(int(starts[-1]), dtype=np.int64)
    all_cols = cols[0] if single else np.concatenate(cols).astype(np.int64)
    out: list[SplitTopK] = []
    for a, b in _query_passes(qs):
        group = qs[a:b]
        first: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
        for i in live:
            c = corpora[i]
            # The float32 pass is the first pass without a low copy, and for a gathered
            # subset with an int8 copy: rounding the gathered rows afresh and re-scoring ~10x
            # more documents than bfloat16 cost more than int8 saves (100 SciFact candidates:
            # 40.5 ms int8 against 17.1 ms float32 on AVX2, 21.5 against 18.5 with VNNI).
            low = c._low
            if low is None or (
                low.kind == "int8" and c._gathered_positions(subsets[i]) is not None
            ):
                first[i] = (c.score(group, subsets[i], block_rows=block_rows).T, None)
            else:
                first[i] = c._first_pass(group, subsets[i], cols[i], block_rows)
        for j, q in enumerate(group):
            b32 = {i: corpora[i]._bound32(q) for i in live}
            approx = torch.cat([first[i][0][:, j].double() for i in live])
            # Each document's float32 bound; a low-precision pass adds its own per score.
            # Built only where used: a float32 pass's bound, or the per-document float32
            # bounds of several corpora (one corpus passes its scalar).
            lows = [(i, first[i][1]) for i in live]
            flat = {
                i: torch.full((sizes[i],), b32[i], dtype=torch.float64)
                for i, low in lows
                if low is None or not single
            }
            bound = torch.cat([flat[i] if low is None else low[:, j] + b32[i] for i, low in lows])
            bound32: torch.Tensor | float = (
                b32[live[0]] if single else torch.cat([flat[i] for i in live])
            )
            any_low = any(first[i][1] is not None for i in live)

            def rescorer(dtype: torch.dtype, q: torch.Tensor = q, j: int = j) -> Rescore:
                fns = {i: corpora[i]._rescorer(q, block_rows, dtype) for i in live}
                if single:
                    return fns[live[0]]
                # float32 first passes already hold float32 scores: reused, not recomputed.
                known = {i: first[i][0][:, j] for i in live if first[i][1] is None}  # noqa: B023
                return _split_rescorer(fns, known, cols, starts, dtype)

            ids, scores, n = exact_top_k(
                gcols,
                approx,
                bound,
                int(k),
                rescorer(torch.float32) if any_low else None,
                bound32,
                rescorer(torch.float64),
            )
            if single:
                out.append(SplitTopK(np.zeros(ids.size, dtype=np.int64), ids, scores, n))
            else:  # global positions index the corpora's columns laid end to end
                part = np.searchsorted(starts, ids, side="right") - 1
                out.append(SplitTopK(part.astype(np.int64), all_cols[ids], scores, n))
    return out


def _gather(matrix: torch.Tensor, rows: npt.NDArray[np.int64]) -> torch.Tensor:
    """``matrix[rows]`` in this thread's scratch buffer (consumed before the next gather)."""
    out = scratch("gather", (rows.size, matrix.shape[1]), matrix.dtype)
    return torch.index_select(matrix, 0, torch.from_numpy(rows), out=out)


def _split_rescorer(
    fns: dict[int, Rescore],
    known32: dict[int, torch.Tensor],
    cols: list[npt.NDArray[np.int64]],
    starts: npt.NDArray[np.int64],
    dtype: torch.dtype,
) -> Rescore:
    """Re-scoring by global position over several corpora: each position goes to its corpus's
    rescorer (``fns``), or, in float32, to the scores a float32 first pass already gave."""

    def run(at: npt.NDArray[np.int64]) -> torch.Tensor:
        part = np.searchsorted(starts, at, side="right") - 1
        res = torch.empty(at.size, dtype=dtype)
        for i in np.unique(part).tolist():
            mask = part == i
            local = at[mask] - starts[i]
            if dtype == torch.float32 and i in known32:
                got = known32[i][torch.from_numpy(local)]
            else:
                got = fns[i](cols[i][local])
            res[torch.from_numpy(mask)] = got.to(dtype)
        return res

    return run
