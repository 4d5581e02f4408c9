"""GEMM throughput per dtype on this CPU: the numbers that pick the MaxSim compute dtype.

Shape: ``tokens (n, dim) @ query_tokens (dim, m)``, the product the packed kernel runs per
block. Reports the median GFLOP/s over interleaved repeats for float32, bfloat16, float16 and
int8 (``torch._int_mm``, int32 accumulation).

Usage:
    .venv/bin/python benchmarks/bench_gemm.py [--dim 128] [--rows 8192] [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

__all__ = ["main"]


def _candidates(rows: int, dim: int, m: int) -> dict[str, Callable[[], torch.Tensor]]:
    t = torch.nn.functional.normalize(torch.randn(rows, dim), dim=1)
    q = torch.nn.functional.normalize(torch.randn(m, dim), dim=1).T.contiguous()
    tb, qb, th, qh = t.bfloat16(), q.bfloat16(), t.half(), q.half()
    ti = torch.randint(-127, 128, (rows, dim), dtype=torch.int8)
    qi = torch.randint(-127, 128, (dim, m), dtype=torch.int8)
    return {
        "float32": lambda: torch.mm(t, q),
        "bfloat16": lambda: torch.mm(tb, qb),
        "float16": lambda: torch.mm(th, qh),
        "int8 (_int_mm)": lambda: torch._int_mm(ti, qi),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--query-tokens", type=int, nargs="+", default=[32, 512])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    from colmax.hardware import detect  # every benchmark reports what it ran on

    print(detect().summary(), flush=True)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"capability {torch.backends.cpu.get_cpu_capability()}"
    )
    print("| query tokens | dtype | median GFLOP/s |\n|---:|---|---:|")
    for m in args.query_tokens:
        fns = _candidates(args.rows, args.dim, m)
        times: dict[str, list[float]] = {k: [] for k in fns}
        for fn in fns.values():
            fn()  # warm-up
        for _ in range(args.repeats):
            for name, fn in fns.items():  # interleaved, so load spikes hit every dtype
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        flop = 2.0 * args.rows * args.dim * m
        for name, ts in times.items():
            print(f"| {m} | {name} | {flop / statistics.median(ts) / 1e9:.1f} |")


if __name__ == "__main__":
    main()
