"""Low-precision document rows pre-packed in oneDNN's GEMM layout, once per index (private).

A bfloat16 or int8 GEMM on x86 does not read a row-major matrix directly: oneDNN first
reorders ("packs") it into the blocked layout its AVX512-BF16 / VNNI kernels consume, and
``torch.mm`` / ``torch._int_mm`` do that again on every call. In the first pass of exact search
the document rows are the large operand and never change, so repacking them per query is
pure waste: on the AVX512-BF16 + VNNI host of ``docs/benchmarks.md`` (2 threads, 32 query
tokens, 2**20 rows of dim 384) a bfloat16 GEMM took 105 ms with ``torch.mm`` and 72 ms with
rows packed once; int8 80 ms against ``torch._int_mm``'s 106 ms (1 thread). The results are
bit-identical: only the memory layout differs.

:class:`PrepackedRows` packs the row ranges a block plan will ask for (each block, and the
pieces of documents longer than a block), keyed by range. It is built only where it works
and gives exactly the plain GEMM's results on a small probe (bfloat16 packing needs AVX512);
otherwise the caller keeps the plain row-major copy.

**int8 without VNNI.** oneDNN's int8 GEMM multiplies unsigned activations (query integers
plus a zero point) by signed weights. With VNNI (``vpdpbusd``) or AMX the products add up in
32 bits. On AVX2 alone it uses ``vpmaddubsw``, which adds each *pair* of products in a
saturating 16-bit integer: ``255 * 127 * 2`` overflows it, ``127 * 127 * 2 = 32,258`` does
not. So query integers keep 127 levels either side of zero where the probe finds the sums
exact at full range, and 63 levels (activations 1..127, zero point 64) where only that is
exact: a coarser query rounding, which the error bound of :mod:`colmax.scoring.lowp` takes
from the rounded values themselves. On the AVX2 host of ``docs/benchmarks.md`` the packed
7-bit GEMM ran 1.4x faster than float32 with exact sums; the 8-bit one was off by up to
6 * 10**6 at the extremes.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from colmax.hardware import detect
from colmax.scoring._kernel import SimsFn, bfloat16_sims, int8_sims

__all__ = ["INT8_LEVELS", "PrepackedRows", "pack_rows", "packed_levels"]

#: Query integer ranges the int8 first pass may use, widest first: 8-bit (32-bit sums, VNNI or
#: AMX), then 7-bit (exact in AVX2's 16-bit pair sums). Activations are ``q + levels + 1``.
INT8_LEVELS = (127, 63)


class PrepackedRows:
    """Packed row ranges of one low-precision matrix (bfloat16 or int8).

    Attributes:
        kind: ``"bfloat16"`` or ``"int8"``.
        levels: int8: the query integers must lie in ``[-levels, levels]`` (see
            :data:`INT8_LEVELS`); the zero point is ``levels + 1``.
        dtype: dtype of the similarities :meth:`sims` returns (bfloat16, or float32 holding
            the exact int32 sums of the int8 GEMM).
        nbytes: bytes held by the packed ranges.
    """

    def __init__(
        self, kind: str, blocks: dict[tuple[int, int], torch.Tensor], levels: int = 127
    ) -> None:
        self.kind = kind
        self.levels = levels  # int8: query integers lie in [-levels, levels]
        self.dtype = torch.bfloat16 if kind == "bfloat16" else torch.float32
        self._blocks = blocks
        # Per output channel (row) scales of 1 and zero points of 0 for the int8 GEMM: the
        # output is then the exact integer sum, as torch._int_mm gives (|sum| < 2**24).
        most = max((b - a for a, b in blocks), default=0)
        self._ones = torch.ones(most, dtype=torch.float32)
        self._zeros = torch.zeros(most, dtype=torch.int64)
        self.nbytes = sum(int(w.numel()) * w.element_size() for w in blocks.values())

    def sims(self, q: torch.Tensor) -> SimsFn:
        """The similarities of query tokens ``q`` (bfloat16, or int8) with a packed range."""
        if self.kind == "bfloat16":

            def bf16(a: int, b: int, out: torch.Tensor) -> torch.Tensor:
                return torch.ops.mkldnn._linear_pointwise(
                    q, self._blocks[a, b], None, "none", [], ""
                )

            return bf16
        zero = self.levels + 1
        wide = q.to(torch.int16)
        if int(wide.abs().max()) > self.levels:  # would saturate silently: a caller's bug
            raise ValueError(f"query integers exceed +-{self.levels} (query_stats levels)")
        qx = (wide + zero).to(torch.uint8)

        def int8(a: int, b: int, out: torch.Tensor) -> torch.Tensor:
            n = b - a
            return torch.ops.onednn.qlinear_pointwise(
                qx,
                1.0,
                zero,
                self._blocks[a, b],
                self._ones[:n],
                self._zeros[:n],
                None,
                1.0,
                0,
                torch.float32,
                "none",
                [],
                "",
            )

        return int8


def _pack(kind: str, rows: torch.Tensor) -> torch.Tensor:
    if kind == "bfloat16":
        return torch.ops.mkldnn._reorder_linear_weight(rows, 32)
    return torch.ops.onednn.qlinear_prepack(rows, [32, rows.shape[1]])


def _packing_works(kind: str, dim: int, levels: int = 127) -> bool:
    """Pack and multiply a small extreme example; ``True`` iff it runs and equals the plain
    GEMM exactly (for int8, with query integers of ``levels``, sums at the saturation limits
    of 16-bit pair sums included)."""
    if kind == "bfloat16" and not detect().native_bf16:
        return False
    gen = torch.Generator().manual_seed(0)
    if kind == "bfloat16":
        rows = torch.randn((48, dim), generator=gen).to(torch.bfloat16)
        q = torch.randn((5, dim), generator=gen).to(torch.bfloat16)
    else:
        rows = torch.randint(-127, 128, (48, dim), generator=gen, dtype=torch.int8)
        rows[0], rows[1] = 127, -127
        q = torch.randint(-levels, levels + 1, (5, dim), generator=gen, dtype=torch.int8)
        q[0], q[1] = levels, -levels
    try:
        packed = PrepackedRows(kind, {(0, 48): _pack(kind, rows)}, levels)
        got = packed.sims(q)(0, 48, torch.empty(0)).float()
    except (RuntimeError, NotImplementedError, AttributeError):
        return False
    plain = bfloat16_sims if kind == "bfloat16" else int8_sims  # the unpacked first pass
    want = plain(rows, q)(0, 48, torch.empty((5, 48), dtype=rows.dtype)).float()
    return bool(torch.equal(got, want))


_WORKS: dict[tuple[str, int], int] = {}  # (kind, dim) -> exact levels, 0: packing unusable


def packed_levels(kind: str, dim: int) -> int:
    """The query levels packing is exact with here (bfloat16: 127 where it works), or 0."""
    key = (kind, dim)
    if key not in _WORKS:
        candidates = INT8_LEVELS if kind == "int8" else (127,)
        _WORKS[key] = next((n for n in candidates if _packing_works(kind, dim, n)), 0)
    return _WORKS[key]


def pack_rows(
    kind: str,
    matrix: torch.Tensor,
    ranges: Iterable[tuple[int, int]],
) -> PrepackedRows | None:
    """Pack the row ranges of ``matrix`` (bfloat16 or int8) a plan will read, or ``None`` where
    packing is unavailable or not bit-exact on this machine (checked once per process).

    Args:
        kind: ``"bfloat16"`` or ``"int8"``.
        matrix: ``(n_rows, dim)`` low-precision rows.
        ranges: ``(row_a, row_b)`` ranges, each read whole by one GEMM.
    """
    levels = packed_levels(kind, int(matrix.shape[1]))
    if not levels:
        return None
    blocks = {(a, b): _pack(kind, matrix[a:b].contiguous()) for a, b in ranges}
    return PrepackedRows(kind, blocks, levels)
