"""What this process can run fast: native bfloat16, int8 dot products, CUDA.

colmax computes in float32 where nothing faster is native, and in bfloat16 (encoding, the first
pass of exact scoring) where the CPU or GPU runs it natively. "Native" is decided from three
sources, because each alone can be wrong (a virtual machine may hide a flag; a torch build may
lack the kernels; a flag may be there and the kernels still slow):

* the CPU flags in ``/proc/cpuinfo``: ``avx512_bf16`` / ``amx_bf16`` (bfloat16 dot products),
  ``avx512_vnni`` / ``avx_vnni`` / ``amx_int8`` (int8 dot products);
* oneDNN's own check, ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``;
* a tiny timed probe (a few milliseconds): one GEMM of the packed-scoring shape per dtype.
  bfloat16 counts as native only if the probe runs it at least :data:`MIN_SPEEDUP` times
  faster than float32 (on AVX2-only CPUs it runs 10 to 50 times *slower*).

The probe also checks that the bfloat16 GEMM accumulates in float32 (the error bound of the
two-pass exact scoring, :mod:`colmax.scoring.lowp`, assumes it). The result is computed once
per process (:func:`detect`) and printed by ``colmax doctor``.

Forcing a path: the environment variable ``COLMAX_PRECISION`` (``auto``, ``float32``,
``bfloat16`` or ``int8``) overrides the automatic choice for encoding and for scoring, and the
functions that choose also take an explicit argument (``load_encoder(dtype=...)``,
``PackedDocuments.from_arrays(compute_dtype=...)``). Every path gives correct results on every
host; only the speed differs, so tests force each path anywhere.

Examples:
    >>> from colmax.hardware import resolve_precision
    >>> resolve_precision("float32")   # an explicit choice always wins
    'float32'
"""

from __future__ import annotations

import os
import platform
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from colmax.errors import InvalidInputError

__all__ = [
    "ENV_VAR",
    "MIN_SPEEDUP",
    "PRECISIONS",
    "Hardware",
    "detect",
    "resolve_precision",
]

#: Environment variable that forces a precision for encoding and scoring.
ENV_VAR = "COLMAX_PRECISION"
#: The precisions a caller (or ``COLMAX_PRECISION``) may ask for.
PRECISIONS = ("auto", "float32", "bfloat16", "int8")
#: A low-precision path is "native" when the probe runs it at least this much faster.
MIN_SPEEDUP = 1.3

_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
_SHOWN_FLAGS = ("avx2", "avx512f", *_BF16_FLAGS, "amx_tile", *_INT8_FLAGS, "avx512_fp16")
_lock = threading.Lock()
_PROBE_REPEATS = 5


@dataclass(frozen=True)
class Hardware:
    """What was found about this process's hardware (see the module docstring).

    Attributes:
        cpu_model: ``model name`` from ``/proc/cpuinfo`` (or ``platform.processor()``).
        cpu_flags: the flags that matter here which the CPU reports, e.g. ``("avx2",
            "avx512_bf16", "avx512_vnni")``.
        torch_version: ``torch.__version__``.
        threads: ``torch.get_num_threads()`` when detected.
        onednn_bf16: oneDNN's own bfloat16 check.
        cuda: the CUDA device name, or ``None``.
        cuda_bf16: whether that device supports bfloat16.
        gflops: probe throughput per dtype (``float32``, ``bfloat16``, ``int8``), GFLOP/s;
            empty when the probe was not run.
        bf16_fp32_accumulation: the bfloat16 GEMM was seen to accumulate in float32 (``None``:
            not probed).
        native_bf16: bfloat16 is fast here (flag, oneDNN and probe agree).
        native_int8: int8 GEMMs with int32 accumulation are fast here.
    """

    cpu_model: str
    cpu_flags: tuple[str, ...]
    torch_version: str
    threads: int
    onednn_bf16: bool
    cuda: str | None
    cuda_bf16: bool
    gflops: dict[str, float] = field(default_factory=dict)
    bf16_fp32_accumulation: bool | None = None
    native_bf16: bool = False
    native_int8: bool = False

    def precision(self, device: str = "cpu") -> str:
        """The automatic *encoding* precision on ``device``: ``"bfloat16"`` where native, else
        ``"float32"``.

        int8 is never chosen for encoding (it did not pass the quality gate, ``docs/benchmarks.md``,
        "Precision"). Exact search chooses its first pass itself (:mod:`colmax.scoring.lowp`):
        bfloat16 where native, int8 only where int8 alone is native (its coarser rounding makes
        the exact second pass re-score many more documents), else float32.
        """
        if device.startswith("cuda"):
            return "bfloat16" if self.cuda_bf16 else "float32"
        return "bfloat16" if self.native_bf16 else "float32"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (for ``colmax doctor --json`` and benchmark reports)."""
        out = asdict(self)
        out["cpu_flags"] = list(self.cpu_flags)
        out["auto_precision_cpu"] = self.precision("cpu")
        out["forced"] = os.environ.get(ENV_VAR) or None
        return out

    def summary(self) -> str:
        """A few human-readable lines (what benchmarks print above their results)."""
        rates = ", ".join(f"{k} {v:.0f}" for k, v in self.gflops.items()) or "not probed"
        forced = os.environ.get(ENV_VAR)
        lines = [
            f"CPU: {self.cpu_model}; flags: {' '.join(self.cpu_flags) or '(none of interest)'}",
            f"torch {self.torch_version}, {self.threads} threads; oneDNN bf16: "
            f"{self.onednn_bf16}; CUDA: {self.cuda or 'none'}",
            f"probe GFLOP/s: {rates}; bf16 accumulates in fp32: {self.bf16_fp32_accumulation}",
            f"native bf16: {self.native_bf16}; native int8: {self.native_int8}; "
            f"chosen precision: {resolve_precision('auto')}"
            + (f" (forced by {ENV_VAR}={forced})" if forced else " (automatic)"),
        ]
        return "\n".join(lines)


def _cpu_info() -> tuple[str, tuple[str, ...]]:
    """CPU model name and the flags of interest, from ``/proc/cpuinfo`` where it exists."""
    model: str | None = None
    flags: set[str] = set()
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:  # not Linux: no flags to read (the probe still runs)
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model or platform.processor() or "unknown", tuple(f for f in _SHOWN_FLAGS if f in flags)


def _onednn_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def _cuda() -> tuple[str | None, bool]:
    if not torch.cuda.is_available():
        return None, False
    return torch.cuda.get_device_name(0), bool(torch.cuda.is_bf16_supported())


def _probe(with_bf16: bool, with_int8: bool) -> tuple[dict[str, float], bool | None]:
    """GFLOP/s of ``(rows, dim) @ (dim, cols)`` per dtype, and the bf16 accumulation check.

    The shape is a packed-scoring block (document rows x query tokens), small enough to cost
    about a millisecond in float32. The dtypes run interleaved and each keeps its best time, so
    a busy neighbour slows every dtype alike and cannot make a slow path look fast.
    """
    rows, dim, cols = 2048, 256, 64
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(rows, dim, generator=gen)
    b = torch.randn(dim, cols, generator=gen)
    runs = {"float32": lambda: torch.mm(a, b)}
    accumulates = None
    if with_bf16:
        ab, bb = a.bfloat16(), b.bfloat16()
        runs["bfloat16"] = lambda: torch.mm(ab, bb)
        accumulates = _bf16_accumulates_in_fp32()
    if with_int8:
        ai = torch.randint(-127, 128, (rows, dim), dtype=torch.int8, generator=gen)
        bi = torch.randint(-127, 128, (dim, cols), dtype=torch.int8, generator=gen)
        runs["int8"] = lambda: torch._int_mm(ai, bi)
    best = dict.fromkeys(runs, float("inf"))
    for rep in range(_PROBE_REPEATS + 1):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            if rep:  # the first round warms up packing and the thread pool
                best[name] = min(best[name], time.perf_counter() - start)
    flop = 2.0 * rows * dim * cols
    return {k: flop / v / 1e9 for k, v in best.items()}, accumulates


def _bf16_accumulates_in_fp32() -> bool:
    """A dot product whose exact value a bfloat16 accumulator cannot hold.

    Each row is ``1`` followed by 255 terms of ``2**-10``: exactly ``1.2490234375`` in float32
    (rounded to bfloat16 at the output: 1.25); a bfloat16 accumulator loses every small term
    (``1 + 2**-10`` rounds back to 1) and returns 1.0. Rows of the probe's shape, so the same
    kernel family runs.
    """
    dim, rows = 256, 512
    a = torch.full((rows, dim), 2.0**-10)
    a[:, 0] = 1.0
    b = torch.ones(dim, 64)
    got = torch.mm(a.bfloat16(), b.bfloat16()).float()
    return bool((got == 1.25).all())


def _detect(probe: bool) -> Hardware:
    model, flags = _cpu_info()
    onednn = _onednn_bf16()
    cuda, cuda_bf16 = _cuda()
    bf16_flag = any(f in flags for f in _BF16_FLAGS)
    int8_flag = any(f in flags for f in _INT8_FLAGS)
    gflops: dict[str, float] = {}
    accumulates = None
    if probe:
        gflops, accumulates = _probe(with_bf16=bf16_flag or onednn, with_int8=int8_flag)
    fp32 = gflops.get("float32", 0.0)
    native_bf16 = (
        bf16_flag
        and onednn
        and bool(accumulates)
        and gflops.get("bfloat16", 0.0) >= MIN_SPEEDUP * fp32 > 0
    )
    native_int8 = int8_flag and gflops.get("int8", 0.0) >= MIN_SPEEDUP * fp32 > 0
    return Hardware(
        cpu_model=model,
        cpu_flags=flags,
        torch_version=torch.__version__,
        threads=torch.get_num_threads(),
        onednn_bf16=onednn,
        cuda=cuda,
        cuda_bf16=cuda_bf16,
        gflops={k: round(v, 1) for k, v in gflops.items()},
        bf16_fp32_accumulation=accumulates,
        native_bf16=native_bf16,
        native_int8=native_int8,
    )


@lru_cache(maxsize=2)
def _cached(probe: bool) -> Hardware:
    with _lock:  # one probe at a time: concurrent probes would time each other
        return _detect(probe)


def detect(*, probe: bool = True) -> Hardware:
    """This process's :class:`Hardware`, computed once (a few milliseconds of probing).

    Args:
        probe: run the timed probe (without it nothing counts as native).

    Returns:
        The cached description.
    """
    return _cached(bool(probe))


def resolve_precision(requested: str | None = None, device: str = "cpu") -> str:
    """The precision to run in: an explicit request, else ``COLMAX_PRECISION``, else automatic.

    Args:
        requested: ``None`` or ``"auto"`` (decide), or ``"float32"``, ``"bfloat16"``,
            ``"int8"`` (use it whatever the hardware: correct everywhere, fast where native).
        device: ``"cpu"`` or a CUDA device name (the automatic choice differs).

    Returns:
        ``"float32"``, ``"bfloat16"`` or ``"int8"``.

    Raises:
        InvalidInputError: ``requested`` or the environment variable is not a known precision.
    """
    for source, value in (("precision", requested), (ENV_VAR, os.environ.get(ENV_VAR))):
        if value is None or value == "":
            continue
        if not isinstance(value, str) or value.lower() not in PRECISIONS:
            raise InvalidInputError(f"{source} must be one of {list(PRECISIONS)}, got {value!r}")
        if value.lower() != "auto":
            return value.lower()
    return detect().precision(device)
