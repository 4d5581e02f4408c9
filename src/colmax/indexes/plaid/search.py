"""The four-stage PLAID search over coded segments (Santhanam et al., CIKM 2022).

For one query ``q`` (``t`` tokens) and the codec's centroids ``C``:

1. **Probe.** ``S = q C^T`` (``t x n_centroids``, one GEMM); each query token keeps its top
   ``nprobe`` centroids. Their union is the only part of the index read in stage 2.
2. **Candidates + pruned centroid interaction.** Every document in the inverted lists of the
   probed centroids is a candidate, scored ``sum_i max(max_{c in probed(d)} S[i, c], floor_i)``
   where ``probed(d)`` are the document's centroids among the probed ones (PLAID's pruning:
   other centroids are ignored) and ``floor_i`` is token ``i``'s weakest probed centroid score
   (WARP's missing-similarity estimate: a token with no probed match is assumed to score
   about what the probe cut-off allowed). The top ``ndocs`` go on. Without a filter, the
   default (``COLMAX_PLAID_STAGE2=tokens``) does it per query token, as WARP does: token
   ``i`` scores the documents of its own ``nprobe`` cells with ``S[i, c]`` and every other
   document with ``floor_i``; that writes one value per (cell entry, token) instead of a row
   of all query tokens per (document, probed centroid), and measured the same Recall@10 at
   15% less time at 25 M tokens, the same on SciFact (``docs/benchmarks.md``). With a
   filter (or ``COLMAX_PLAID_STAGE2=pairs``) the pruned form above runs, with its widening
   of ``nprobe`` until enough allowed documents are found.
3. **Centroid interaction, then corrected.** For each query token, the best centroid score
   ``S[i, c]`` over the document's distinct centroids (a gather from ``S``), summed: PLAID's
   centroid interaction, which keeps the best ``4 * nfinal``. For those, each query token's
   best centroid score is then corrected by the document's first token coded to that centroid,
   scored exactly against its code (residual and length byte); the top ``nfinal`` go on.
4. **Residual scoring.** ``q_i . x_t = (S[i, c] + q_i . r) * s_t`` for every token, the
   residual term summed from the query's lookup table over the code bytes
   (``ResidualCodec.score_residuals``) and ``s_t`` the token's length factor: the MaxSim of
   the decoded vectors, without decoding them. Top ``k``.

Stages 2-4 rank documents of all coded segments together, so their cost does not grow with
the number of segments. A filter (``ok`` masks) removes documents before stage 2. When no more
than ``ndocs`` documents are eligible, stage 2 is skipped and all of them are candidates, so a
selective filter never loses eligible documents to probing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from colmax.indexes.plaid.codec import ResidualCodec
from colmax.indexes.plaid.ivf import InvertedLists, ranges
from colmax.indexes.plaid.segment import CodedSegment

__all__ = ["CodedView", "SearchParams", "search_coded"]

_T_MULTIPLE = 32
_MODE = __import__("os").environ.get("COLMAX_PLAID_STAGE2", "tokens")
# Stage 3 corrects (reads the residuals of) this many times ``nfinal`` documents: the best by
# centroid interaction alone. At 25 M tokens that cut a query from 88 to 66 ms at the same
# Recall@10 (docs/benchmarks.md); 2x lost 0.004 of recall there, 8x was slower than 4x.
_CORRECTED = 4


@dataclass(frozen=True)
class SearchParams:
    """How wide each stage looks (larger: slower, closer to exhaustive).

    Attributes:
        nprobe: centroids probed per query token (stage 1).
        ndocs: candidates kept after the pruned centroid interaction (stage 2).
        nfinal: documents scored against their residuals (stage 4).
    """

    nprobe: int
    ndocs: int
    nfinal: int

    @classmethod
    def for_k(
        cls,
        k: int,
        nprobe: int | None = None,
        ndocs: int | None = None,
        nfinal: int | None = None,
        n_docs: int = 0,
    ) -> SearchParams:
        """Defaults that grow with ``k`` and with the corpus (``n_docs`` live documents).

        At k = 10 (measured with stage 3's centroid-only cut, ``docs/benchmarks.md``):
        Recall@10 of the exact top 10 0.956 on SciFact (5,183 documents, 1.2 M tokens, 2-bit
        codes) at 8 / 1,024 / 64; 0.951 on a 25 M-token corpus (104,287 documents, 3-bit
        codes) at 8 / 4,096 / 128. Stage 2's candidate list is what a larger corpus needs more
        of, up to a cap: at 25 M tokens ``documents / 16`` (6,517) cost 2.8x the time of 2,048
        for 0.002 of recall.

        Examples:
            >>> SearchParams.for_k(10)
            SearchParams(nprobe=8, ndocs=1024, nfinal=64)
            >>> SearchParams.for_k(10, n_docs=20_867)
            SearchParams(nprobe=8, ndocs=1304, nfinal=64)
            >>> SearchParams.for_k(10, n_docs=104_287)
            SearchParams(nprobe=8, ndocs=4096, nfinal=128)
            >>> SearchParams.for_k(100)
            SearchParams(nprobe=16, ndocs=1600, nfinal=400)
        """
        nd = ndocs if ndocs is not None else max(1024, 16 * k, min(n_docs // 16, 4096))
        nf = nfinal if nfinal is not None else max(64, 4 * k, nd // 32)
        np_ = nprobe if nprobe is not None else (8 if k <= 10 else 16)
        return cls(np_, nd, max(1, min(nf, nd)))


@dataclass(frozen=True)
class CodedView:
    """A coded segment prepared for search: inverted lists and codes as tensors."""

    segment: CodedSegment
    alive: np.ndarray  # bool (n_docs,)
    order: np.ndarray  # argsort of segment.keys, for key lookups
    ivf: InvertedLists
    codes: torch.Tensor  # (n_tokens,) int64, document order
    offsets: torch.Tensor  # (n_docs + 1,) int64
    lengths: torch.Tensor  # (n_docs,) int64

    @classmethod
    def of(cls, segment: CodedSegment, alive: np.ndarray) -> CodedView:
        codes = np.asarray(segment.codes)
        offsets = np.asarray(segment.offsets)
        ivf = InvertedLists.build(codes, offsets, segment.codec.n_centroids)
        return cls(
            segment,
            alive,
            np.argsort(segment.keys, kind="stable"),
            ivf,
            torch.from_numpy(codes.astype(np.int64)),
            torch.from_numpy(offsets.copy()),
            torch.from_numpy(np.diff(offsets)),
        )

    def with_alive(self, alive: np.ndarray) -> CodedView:
        return CodedView(
            self.segment, alive, self.order, self.ivf, self.codes, self.offsets, self.lengths
        )

    def positions(self, keys: np.ndarray) -> np.ndarray:
        """Positions of ``keys`` in this segment, -1 where absent or dead."""
        seg_keys = self.segment.keys
        idx = np.minimum(np.searchsorted(seg_keys, keys, sorter=self.order), len(seg_keys) - 1)
        pos = self.order[idx]
        found = (seg_keys[pos] == keys) & self.alive[pos]
        return np.where(found, pos, -1)

    def padded_rows(self, positions: torch.Tensor) -> _Padded:
        """Token rows of the documents at ``positions``, laid out for a dense per-document max.

        Documents are sorted by length rounded up to a bucket (at most 1/8 more rows) and
        padded by repeating their own last token, which can never change a max (the trick of
        :mod:`colmax.scoring._layout`); each run of equal padded length is then one ``amax``
        over a ``(docs, length, t)`` view instead of a scatter.
        """
        return _padded(self.offsets[positions], self.lengths[positions])

    def padded_pairs(self, positions: torch.Tensor) -> _Padded:
        """Like :meth:`padded_rows` over the documents' distinct centroids: rows index
        ``ivf.doc_pair_cents`` / ``ivf.doc_pair_rows``."""
        offsets = self.ivf.doc_pair_offsets
        starts = offsets[positions]
        return _padded(starts, offsets[positions + 1] - starts)


def _padded(starts: torch.Tensor, lengths: torch.Tensor) -> _Padded:
    """The :meth:`CodedView.padded_rows` layout of row ranges ``[start, start + length)``."""
    padded = _bucket(lengths)
    order = torch.argsort(padded, stable=True)
    lengths, padded, starts = lengths[order], padded[order], starts[order]
    total = int(padded.sum())
    within = ranges(torch.zeros_like(padded), padded)  # 0..padded-1 per document
    last = torch.repeat_interleave(lengths - 1, padded, output_size=total)
    base = torch.repeat_interleave(starts, padded, output_size=total)
    runs, counts = torch.unique_consecutive(padded, return_counts=True)
    return _Padded(base + torch.minimum(within, last), order, runs.tolist(), counts.tolist())


def _bucket(lengths: torch.Tensor) -> torch.Tensor:
    """Lengths rounded up to a multiple of 2**(floor(log2 n) - 3): <= 12.5% padding."""
    step = torch.pow(2, torch.clamp(torch.floor(torch.log2(lengths.to(torch.float32))) - 3, min=0))
    step = step.to(torch.int64)
    return (lengths + step - 1) // step * step


@dataclass(frozen=True)
class _Padded:
    """Rows for a dense per-document max (see :meth:`CodedView.padded_rows`)."""

    rows: torch.Tensor  # token rows, documents in ``order``, each padded to its run length
    order: torch.Tensor  # document i of the layout is positions[order[i]]
    runs: list[int]  # padded length of each run of documents
    counts: list[int]  # documents in each run

    def doc_max(self, values: torch.Tensor) -> torch.Tensor:
        """``(n_docs, t)`` per-document max of ``values (len(rows), t)``, in positions order."""
        out = torch.empty((len(self.order), values.shape[1]))
        at = row = 0
        for length, count in zip(self.runs, self.counts):
            block = values[row : row + length * count].view(count, length, -1)
            torch.amax(block, dim=1, out=out[at : at + count])
            at, row = at + count, row + length * count
        result = torch.empty_like(out)
        result[self.order] = out
        return result

    def doc_argmax(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`doc_max`, plus the row (a real row, not padding) of each max."""
        n, t = len(self.order), values.shape[1]
        out = torch.empty((n, t))
        arg = torch.empty((n, t), dtype=torch.int64)
        at = row = 0
        for length, count in zip(self.runs, self.counts):
            block = values[row : row + length * count].view(count, length, -1)
            torch.max(block, dim=1, out=(out[at : at + count], arg[at : at + count]))
            arg[at : at + count] += row + torch.arange(count).unsqueeze(1) * length
            at, row = at + count, row + length * count
        result, rows = torch.empty_like(out), torch.empty_like(arg)
        result[self.order] = out
        rows[self.order] = self.rows[arg]
        return result, rows


@dataclass
class _Pool:
    """Candidates across views: view number, position in the view, score."""

    view: torch.Tensor
    pos: torch.Tensor
    score: torch.Tensor

    @classmethod
    def of(cls, parts: list[tuple[int, torch.Tensor, torch.Tensor]]) -> _Pool:
        if not parts:
            empty = torch.zeros(0, dtype=torch.int64)
            return cls(empty, empty, torch.zeros(0))
        return cls(
            torch.cat([torch.full_like(p, v) for v, p, _ in parts]),
            torch.cat([p for _, p, _ in parts]),
            torch.cat([s for _, _, s in parts]),
        )

    def top(self, n: int) -> _Pool:
        if self.score.shape[0] <= n:
            return self
        idx = torch.topk(self.score, n).indices
        return _Pool(self.view[idx], self.pos[idx], self.score[idx])

    def by_view(self) -> list[tuple[int, torch.Tensor]]:
        return [(int(v), self.pos[self.view == v]) for v in torch.unique(self.view)]


def _probe(
    views: list[CodedView],
    oks: list[torch.Tensor | None],
    sims: torch.Tensor,
    st: torch.Tensor,
    params: SearchParams,
    want: int,
) -> _Pool:
    """Stages 1-2. Probing widens (x4 at a time) until ``want`` eligible candidates are found
    or every centroid is probed: with a selective filter the usual ``nprobe`` may reach few of
    the eligible documents."""
    n_centroids = sims.shape[1]
    nprobe = min(params.nprobe, n_centroids)
    while True:
        top = torch.topk(sims, nprobe, dim=1)
        floor = top.values[:, -1]
        cents = torch.unique(top.indices)
        parts = []
        for i, (view, ok) in enumerate(zip(views, oks)):
            pos, score = _stage2(view, ok, cents, st, floor)
            if pos.numel():
                parts.append((i, pos, score))
        pool = _Pool.of(parts)
        if pool.pos.shape[0] >= want or nprobe >= n_centroids:
            return pool.top(params.ndocs)
        nprobe = min(4 * nprobe, n_centroids)


def _probe_tokens(
    views: list[CodedView],
    oks: list[torch.Tensor | None],
    sims: torch.Tensor,
    t_real: int,
    params: SearchParams,
) -> _Pool:
    """Stages 1-2, WARP-style: query token ``i`` scores the documents of its own ``nprobe``
    cells with ``S[i, c]``, and every other document with ``floor_i``."""
    n_centroids = sims.shape[1]
    nprobe = min(params.nprobe, n_centroids)
    top = torch.topk(sims[:t_real], nprobe, dim=1)
    floor = top.values[:, -1].contiguous()
    cells = top.indices.reshape(-1)
    vals = top.values.reshape(-1)
    tok = torch.arange(t_real).repeat_interleave(nprobe)
    parts = []
    for v, (view, ok) in enumerate(zip(views, oks)):
        lo = view.ivf.list_offsets
        starts, lengths = lo[cells], lo[cells + 1] - lo[cells]
        total = int(lengths.sum())
        docs = view.ivf.docs[ranges(starts, lengths)]
        key = docs * t_real + torch.repeat_interleave(tok, lengths, output_size=total)
        val = torch.repeat_interleave(vals, lengths, output_size=total)
        n_docs = view.segment.n_docs
        best = floor.repeat(n_docs)
        best.scatter_reduce_(0, key, val, "amax")
        score = best.view(n_docs, t_real).sum(dim=1)
        touched = torch.zeros(n_docs, dtype=torch.bool)
        touched[docs] = True
        if ok is not None:
            touched &= ok
        pos = torch.nonzero(touched).flatten()
        if pos.numel():
            parts.append((v, pos, score[pos]))
    return _Pool.of(parts).top(params.ndocs)


def _probe_warp(
    views: list[CodedView],
    oks: list[torch.Tensor | None],
    sims: torch.Tensor,
    columns_table: torch.Tensor,
    codec: ResidualCodec,
    t_real: int,
    params: SearchParams,
) -> _Pool:
    """Stages 1-2 as WARP does them: query token ``i`` scores every token of its own
    ``nprobe`` cells exactly against its code, ``(S[i, c] + q_i . r) * s``, without rebuilding
    a vector; a document's score sums, over query tokens, its best scored token, or ``floor_i``
    (the weakest probed cell's score) where none of its tokens was in token ``i``'s cells."""
    nprobe = min(params.nprobe, sims.shape[1])
    top = torch.topk(sims[:t_real], nprobe, dim=1)
    floor = top.values[:, -1].contiguous()
    cells = top.indices.reshape(-1)
    cell_score = top.values.reshape(-1)
    cell_token = torch.arange(t_real).repeat_interleave(nprobe)
    parts = []
    for v, (view, ok) in enumerate(zip(views, oks)):
        rows, docs32, lengths = view.ivf.cells(cells)
        total = int(rows.shape[0])
        token = torch.repeat_interleave(cell_token, lengths, output_size=total)
        base = torch.repeat_interleave(cell_score, lengths, output_size=total)
        docs = docs32.to(torch.int64)
        if ok is not None:
            keep = ok[docs]
            rows, docs, token, base = rows[keep], docs[keep], token[keep], base[keep]
        if docs.numel() == 0:
            continue
        packed = torch.from_numpy(np.take(view.segment.residuals, rows.numpy(), axis=0))
        score = base + codec.score_residual_columns(packed, columns_table, token)
        score *= codec.scales(packed)
        n_docs = view.segment.n_docs
        best = floor.repeat(n_docs)
        best.scatter_reduce_(0, docs * t_real + token, score, "amax")
        touched = torch.zeros(n_docs, dtype=torch.bool)
        touched[docs] = True
        pos = torch.nonzero(touched).flatten()
        parts.append((v, pos, best.view(n_docs, t_real)[pos].sum(dim=1)))
    return _Pool.of(parts).top(params.ndocs)


def _all_eligible(views: list[CodedView], oks: list[torch.Tensor | None]) -> _Pool:
    parts = []
    for i, (view, ok) in enumerate(zip(views, oks)):
        pos = torch.arange(view.segment.n_docs) if ok is None else torch.nonzero(ok).flatten()
        parts.append((i, pos, torch.zeros(pos.shape[0])))
    return _Pool.of(parts)


def _group_max(values: torch.Tensor, group: torch.Tensor, n_groups: int) -> torch.Tensor:
    """``(n_groups, t)``: per group, the column-wise max of its rows of ``values (n, t)``."""
    out = torch.full((n_groups, values.shape[1]), float("-inf"))
    index = group.unsqueeze(1).expand(-1, values.shape[1])
    return out.scatter_reduce_(0, index, values, "amax")  # 2x faster than index_reduce_ here


def _stage2(
    view: CodedView,
    ok: torch.Tensor | None,
    cents: torch.Tensor,
    st: torch.Tensor,
    floor: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates of one view and their pruned centroid-interaction scores."""
    docs, cent = view.ivf.pairs(cents)
    if ok is not None:
        keep = ok[docs]
        docs, cent = docs[keep], cent[keep]
    if docs.numel() == 0:
        return docs, torch.zeros(0)
    n_docs = view.segment.n_docs
    if n_docs <= 4 * docs.numel():  # dense per-document buffer is cheaper than a sort
        best = _group_max(st.index_select(0, cent), docs, n_docs)
        touched = torch.zeros(n_docs, dtype=torch.bool)
        touched[docs] = True
        pos = torch.nonzero(touched).flatten()
        best = best[pos]
    else:
        pos, inverse = torch.unique(docs, return_inverse=True)
        best = _group_max(st.index_select(0, cent), inverse, pos.numel())
    return pos, torch.maximum(best, floor).sum(dim=1)


def _stage3(
    view: CodedView,
    pos: torch.Tensor,
    st: torch.Tensor,
    columns_table: torch.Tensor,
    codec: ResidualCodec,
    t_real: int,
) -> torch.Tensor:
    """Centroid interaction over all tokens of the documents at ``pos``, corrected by the
    residual of each query token's best-centroid token.

    For query token ``i`` and document ``d`` the best centroid score ``S[i, c]`` is found over
    ``d``'s distinct centroids (about half as many as its tokens), and the residual term
    ``q_i . r_t*`` of ``d``'s first token ``t*`` coded to that centroid is added from one column
    of the lookup table. That costs one table read per code byte per ``(document, query
    token)``, ~t times less than scoring every token (stage 4), and turns the centroid-only
    estimate into the approximate score of an actual token.
    """
    layout = view.padded_pairs(pos)
    ivf = view.ivf
    best, pairs = layout.doc_argmax(st.index_select(0, ivf.doc_pair_cents[layout.rows]))
    rows = ivf.doc_pair_rows[pairs[:, :t_real].reshape(-1)]  # padded query tokens add 0 anyway
    packed = torch.from_numpy(np.take(view.segment.residuals, rows.numpy(), axis=0))
    columns = torch.arange(t_real).repeat(pos.numel())
    correction = codec.score_residual_columns(packed, columns_table, columns)
    token = (best[:, :t_real].reshape(-1) + correction) * codec.scales(packed)
    return token.view(-1, t_real).sum(dim=1)


def _stage3_centroids(
    view: CodedView, pos: torch.Tensor, st: torch.Tensor, t_real: int
) -> torch.Tensor:
    """Centroid interaction alone (PLAID's stage 3): per query token the best centroid score
    over each document's distinct centroids, summed; no residuals read."""
    layout = view.padded_pairs(pos)
    best = layout.doc_max(st.index_select(0, view.ivf.doc_pair_cents[layout.rows]))
    return best[:, :t_real].sum(dim=1)


def _stage4(
    view: CodedView, pos: torch.Tensor, st: torch.Tensor, table: torch.Tensor, codec: ResidualCodec
) -> torch.Tensor:
    """MaxSim of the documents at ``pos`` against their decoded vectors, via the lookup table."""
    layout = view.padded_rows(pos)
    # np.take on the memory map: ~8x faster than fancy indexing or torch.index_select here.
    packed = torch.from_numpy(np.take(view.segment.residuals, layout.rows.numpy(), axis=0))
    sims = st.index_select(0, view.codes[layout.rows])
    # The table has the real query tokens' columns only (the residual sums cost one table
    # read per code byte per column); the padding columns of ``st`` are 0 and stay 0.
    sims[:, : table.shape[1]] += codec.score_residuals(packed, table)
    sims *= codec.scales(packed).unsqueeze(1)  # the decoded vector's length correction
    return layout.doc_max(sims).sum(dim=1)


def search_coded(
    views: list[CodedView],
    codec: ResidualCodec,
    query: torch.Tensor,
    k: int,
    params: SearchParams,
    oks: list[torch.Tensor | None],
) -> tuple[list[int], list[np.ndarray], list[np.ndarray]]:
    """Top-``k`` of one query over coded views.

    Args:
        views: the coded views.
        codec: the codec all of them were coded with.
        query: ``(t, dim)`` float32.
        k: results wanted.
        params: stage widths.
        oks: per view, a bool mask of eligible (live and allowed) documents, or ``None`` for
            "all documents of the view are eligible".

    Returns:
        ``(views, positions, scores)``: per contributing view its number, the positions of its
        hits and their scores (unsorted across views).
    """
    q = query.to(torch.float32)
    # Zero query tokens add exactly 0 to every stage's score, and with a multiple of 32
    # columns torch's max over the middle dimension of (docs, length, t) is vectorised: 10 to
    # 20x faster than at t = 8..31 on AVX2 (measured, torch 2.13).
    pad = -q.shape[0] % _T_MULTIPLE
    if pad:
        q = torch.cat([q, torch.zeros((pad, q.shape[1]))])
    t_real = query.shape[0]
    sims = torch.zeros((q.shape[0], codec.n_centroids))  # (t, n_centroids); padding rows 0
    torch.matmul(q[:t_real], codec.centroids.T, out=sims[:t_real])
    st = sims.T.contiguous()  # (n_centroids, t): one row per centroid for the gathers
    n_eligible = sum(
        int(v.segment.n_docs) if ok is None else int(ok.sum()) for v, ok in zip(views, oks)
    )
    table = codec.lookup_table(q[:t_real])
    columns_table = table.T.contiguous()
    if n_eligible <= params.ndocs:
        pool = _all_eligible(views, oks)
    else:
        if _MODE == "tokens" and oks == [None] * len(oks):
            pool = _probe_tokens(views, oks, sims, query.shape[0], params)
        elif _MODE == "warp" and oks == [None] * len(oks):
            pool = _probe_warp(views, oks, sims, columns_table, codec, t_real, params)
        else:
            pool = _probe(views, oks, sims, st, params, min(params.ndocs, n_eligible))
    keep = _CORRECTED * params.nfinal
    if pool.pos.shape[0] > keep:
        parts = [
            (v, pos, _stage3_centroids(views[v], pos, st, t_real)) for v, pos in pool.by_view()
        ]
        pool = _Pool.of(parts).top(keep)
    if pool.pos.shape[0] > params.nfinal:
        parts = [
            (v, pos, _stage3(views[v], pos, st, columns_table, codec, t_real))
            for v, pos in pool.by_view()
        ]
        pool = _Pool.of(parts).top(params.nfinal)
    parts = [(v, pos, _stage4(views[v], pos, st, table, codec)) for v, pos in pool.by_view()]
    pool = _Pool.of(parts).top(k)
    out_views, out_pos, out_scores = [], [], []
    for v, pos in pool.by_view():
        mask = pool.view == v
        out_views.append(v)
        out_pos.append(pos.numpy())
        out_scores.append(pool.score[mask].numpy())
    return out_views, out_pos, out_scores
