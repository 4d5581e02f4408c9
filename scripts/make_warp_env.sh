#!/usr/bin/env bash
# Build .venv-warp: the 2026 compressed-index engines that benchmarks/bench_plaid.py compares
# colmax plaid against, xtr-warp-rs 2.1 (import xtr_warp, the WARP engine) and fast-plaid 1.7
# (import fast_plaid, LightOn's Rust PLAID). Both pin torch 2.11.0; PyPI's torch 2.11.0 is a
# CUDA build (~5 GB with its nvidia-* wheels) that also runs on the CPU. Kept apart from .venv
# and .venv-peers (other torch); not part of CI. Idempotent.
#
# Usage: bash scripts/make_warp_env.sh           (builds <repo>/.venv-warp)
#        COLMAX_WARP_VENV=/tmp/warp bash scripts/make_warp_env.sh
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${COLMAX_WARP_VENV:-.venv-warp}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install --disable-pip-version-check -q \
    torch==2.11.0 xtr-warp-rs==2.1.0.2110 fast-plaid==1.7.0.2110 numpy psutil

"$VENV/bin/python" - <<'PY'
from importlib.metadata import version
import fast_plaid, torch, xtr_warp  # noqa: F401  (the imports are the check)
print(" ".join(f"{p} {version(p)}" for p in ("xtr-warp-rs", "fast-plaid", "torch")))
PY
