"""``colmax doctor``: what this machine runs fast, and the precision colmax will use."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``doctor`` parser."""
    parser = subparsers.add_parser(
        "doctor",
        help="show the CPU/GPU features colmax uses and the precision it picks",
        description="Print the CPU model and flags (avx512_bf16, amx_bf16, avx512_vnni, ...), "
        "oneDNN's bfloat16 check, CUDA, a short timed GEMM probe per dtype, and the precision "
        "colmax picks for encoding and scoring. Set COLMAX_PRECISION=float32|bfloat16|int8 to "
        "force one.",
    )
    parser.add_argument("--json", action="store_true", help="print the information as JSON")
    parser.set_defaults(func=run)


_INT8_RANGE = {127: "8-bit query integers", 63: "7-bit query integers (no VNNI: 16-bit pair sums)"}


def _search_lines() -> tuple[dict[str, Any], str]:
    """Exact search's first pass here and how an int8 pass would run (a probe of a few ms)."""
    from colmax.scoring.lowp import first_pass_precision, packed_int8_levels

    first = first_pass_precision()
    levels = packed_int8_levels(128)
    int8 = _INT8_RANGE.get(levels or 0, "not packed (plain int8 GEMM)")
    info = {"search_first_pass": first, "int8_packed_query_levels": levels}
    return info, f"exact search first pass: {first}; int8 pass (if forced): {int8}"


def _query_lines() -> tuple[dict[str, Any], str]:
    """What encodes queries ($COLMAX_QUERY_RUNTIME) and whether ONNX Runtime is installed."""
    import importlib.metadata

    from colmax.encoders.onnx_runtime import ENV_VAR, resolve_query_runtime
    from colmax.errors import InvalidInputError

    try:
        runtime = resolve_query_runtime(None)
    except InvalidInputError as exc:
        runtime = f"invalid ({exc})"
    try:
        version: str | None = importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        version = None
    available = f"onnxruntime {version}" if version else "onnxruntime not installed"
    info = {"query_runtime": runtime, "onnxruntime_version": version}
    return info, f"query encoding: {runtime} (${ENV_VAR}; {available})"


def run(args: argparse.Namespace) -> int:
    """Detect (and probe) the hardware and print it."""
    from colmax.hardware import detect

    hardware = detect()
    info, line = _search_lines()
    query_info, query_line = _query_lines()
    if args.json:
        print(json.dumps({**hardware.to_dict(), **info, **query_info}, indent=2))
    else:
        print(hardware.summary())
        print(line)
        print(query_line)
    return 0
