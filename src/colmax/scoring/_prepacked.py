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
and gives exactly the plain GEMM's results on a small probe (oneDNN on CPUs without VNNI
may saturate int8 sums, and bfloat16 packing needs AVX512); otherwise the caller keeps
the plain row-major copy.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from colmax.hardware import detect
from colmax.scoring._kernel import SimsFn, bfloat16_sims, int8_sims

__all__ = ["PrepackedRows", "pack_rows"]

_INT8_ZERO = 128  # oneDNN's int8 GEMM takes unsigned activations: q + 128, zero point 128


class PrepackedRows:
    """Packed row ranges of one low-precision matrix (bfloat16 or int8).

    Attributes:
        kind: ``"bfloat16"`` or ``"int8"``.
        dtype: dtype of the similarities :meth:`sims` returns (bfloat16, or float32 holding
            the exact int32 sums of the int8 GEMM).
        nbytes: bytes held by the packed ranges.
    """

    def __init__(self, kind: str, blocks: dict[tuple[int, int], torch.Tensor]) -> None:
        self.kind = kind
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
        qx = (q.to(torch.int16) + _INT8_ZERO).to(torch.uint8)

        def int8(a: int, b: int, out: torch.Tensor) -> torch.Tensor:
            n = b - a
            return torch.ops.onednn.qlinear_pointwise(
                qx,
                1.0,
                _INT8_ZERO,
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


def _packing_works(kind: str, dim: int) -> bool:
    """Pack and multiply a small extreme example; ``True`` iff it runs and equals the plain
    GEMM exactly (int8 sums at the saturation limits of non-VNNI kernels included)."""
    if kind == "int8" and not detect().native_int8:
        return False  # without VNNI oneDNN's u8 x s8 kernels may saturate 16-bit pair sums
    if kind == "bfloat16" and not detect().native_bf16:
        return False
    gen = torch.Generator().manual_seed(0)
    if kind == "bfloat16":
        rows = torch.randn((48, dim), generator=gen).to(torch.bfloat16)
        q = torch.randn((5, dim), generator=gen).to(torch.bfloat16)
    else:
        rows = torch.randint(-127, 128, (48, dim), generator=gen, dtype=torch.int8)
        rows[0], rows[1] = 127, -127
        q = torch.randint(-127, 128, (5, dim), generator=gen, dtype=torch.int8)
        q[0], q[1] = 127, -127
    try:
        packed = PrepackedRows(kind, {(0, 48): _pack(kind, rows)})
        got = packed.sims(q)(0, 48, torch.empty(0)).float()
    except (RuntimeError, NotImplementedError, AttributeError):
        return False
    plain = bfloat16_sims if kind == "bfloat16" else int8_sims  # the unpacked first pass
    want = plain(rows, q)(0, 48, torch.empty((5, 48), dtype=rows.dtype)).float()
    return bool(torch.equal(got, want))


_WORKS: dict[tuple[str, int], bool] = {}


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
    dim = int(matrix.shape[1])
    key = (kind, dim)
    if key not in _WORKS:
        _WORKS[key] = _packing_works(kind, dim)
    if not _WORKS[key]:
        return None
    blocks = {(a, b): _pack(kind, matrix[a:b].contiguous()) for a, b in ranges}
    return PrepackedRows(kind, blocks)
