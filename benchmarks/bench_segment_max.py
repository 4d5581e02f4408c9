"""Ways to take the per-document max of a packed similarity block, side by side.

Every variant computes the same ``(n_docs, query_tokens)`` maxima of ``tokens @ queries.T``
over blocks of whole documents; only the segment-max step differs:

* ``gemm_only``: the matrix products alone (the floor).
* ``np_reduceat``: ``np.maximum.reduceat`` over the packed rows.
* ``segment_reduce``: ``torch.segment_reduce(..., "max")``.
* ``index_reduce``: ``Tensor.index_reduce_(0, doc_of_row, ..., "amax")``.
* ``sorted_amax``: documents sorted by length and padded with duplicates of their own tokens,
  one dense ``amax`` per run of equal lengths (what :mod:`colmax.scoring.packed` does).
* ``sorted_tree``: the same layout, max by a ``torch.maximum`` halving tree.
* ``sorted_amax_fp16_widened``: ``sorted_amax`` with the corpus kept float16 and each block
  widened to float32 before its GEMM (half the memory, but is it fast?).

Usage:
    .venv/bin/python benchmarks/bench_segment_max.py [--tokens 262144] [--repeats 7]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from colmax.scoring._layout import build_layout, layout_rows, plan_blocks

__all__ = ["main"]


def _tree_max(x: torch.Tensor) -> torch.Tensor:
    """Max over dim 1 of ``(n, length, m)`` by halving."""
    while x.shape[1] > 1:
        half = x.shape[1] // 2
        top = torch.maximum(x[:, :half], x[:, x.shape[1] - half :])
        x = torch.cat([top, x[:, half : half + 1]], dim=1) if x.shape[1] % 2 else top
    return x[:, 0]


def _variants(
    tokens: torch.Tensor, offsets: np.ndarray, qt: torch.Tensor, rows: int
) -> dict[str, Callable[[], None]]:
    lengths = np.diff(offsets)
    starts = offsets[:-1]
    cuts = [0]  # packed blocks of whole documents, about `rows` rows each
    for i in range(1, lengths.size):
        if offsets[i] - offsets[cuts[-1]] + lengths[i] > rows:
            cuts.append(i)
    cuts.append(lengths.size)
    doc_of_row = torch.from_numpy(np.repeat(np.arange(lengths.size), lengths))
    lens_t = torch.from_numpy(lengths)
    layout = build_layout(lengths, 1.0 / 32)
    src = layout_rows(starts[layout.order], lengths[layout.order], layout.padded_len)
    sorted_tokens = tokens[torch.from_numpy(src)].contiguous()
    plan = plan_blocks(layout.padded_len, rows)
    m = qt.shape[1]

    def packed(reduce: Callable[[torch.Tensor, int, int], object]) -> Callable[[], None]:
        def run() -> None:
            for a, b in itertools.pairwise(cuts):
                sim = tokens[offsets[a] : offsets[b]] @ qt
                reduce(sim, a, b)

        return run

    sorted_half = sorted_tokens.half()

    def layout_run(tree: bool, widen: bool = False) -> Callable[[], None]:
        def run() -> None:
            for blk in plan.blocks:
                if widen:  # keep float16 in memory, widen each block just before its GEMM
                    sim = sorted_half[blk.row0 : blk.row1].float() @ qt
                else:
                    sim = sorted_tokens[blk.row0 : blk.row1] @ qt
                for ra, rb, count, length in blk.segments:
                    view = sim[ra:rb].view(count, length, m)
                    _tree_max(view) if tree else view.amax(dim=1)

        return run

    return {
        "gemm_only": packed(lambda s, a, b: s),
        "np_reduceat": packed(
            lambda s, a, b: np.maximum.reduceat(s.numpy(), offsets[a:b] - offsets[a], axis=0)
        ),
        "segment_reduce": packed(
            lambda s, a, b: torch.segment_reduce(s, "max", lengths=lens_t[a:b], axis=0)
        ),
        "index_reduce": packed(
            lambda s, a, b: torch.full((b - a, m), float("-inf")).index_reduce_(
                0, doc_of_row[offsets[a] : offsets[b]] - a, s, "amax"
            )
        ),
        "sorted_amax": layout_run(tree=False),
        "sorted_tree": layout_run(tree=True),
        "sorted_amax_fp16_widened": layout_run(tree=False, widen=True),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=1 << 18)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--query-tokens", type=int, default=32)
    parser.add_argument("--rows", type=int, default=32768, help="rows per block")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    lengths = rng.integers(30, 301, size=args.tokens // 165)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = torch.nn.functional.normalize(torch.randn(int(offsets[-1]), args.dim), dim=1)
    qt = torch.nn.functional.normalize(torch.randn(args.query_tokens, args.dim), dim=1).T
    variants = _variants(tokens, offsets, qt.contiguous(), args.rows)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for fn in variants.values():
        fn()  # warm-up
    for _ in range(args.repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    scale = 1e3 * 1e6 / offsets[-1] * 32 / args.query_tokens  # ms per 32-token query per M tokens
    print(
        f"{offsets[-1]:,} tokens, dim {args.dim}, {args.query_tokens} query tokens, "
        f"{torch.get_num_threads()} threads"
    )
    print("| segment max | median ms/query/M tokens |\n|---|---:|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts) * scale:.1f} |")


if __name__ == "__main__":
    main()
