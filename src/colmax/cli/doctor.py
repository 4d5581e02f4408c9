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


def run(args: argparse.Namespace) -> int:
    """Detect (and probe) the hardware and print it."""
    from colmax.hardware import detect

    hardware = detect()
    if args.json:
        print(json.dumps(hardware.to_dict(), indent=2))
    else:
        print(hardware.summary())
    return 0
