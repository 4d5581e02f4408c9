#!/usr/bin/env bash
# Install colpali-engine into .venv for tests/peers/test_parity_colpali_engine.py (colmax's
# vision encoder against colpali-engine's own processor and model on the same tiny weights).
#
# colpali-engine declares torchvision, but PyPI's torchvision wheels are CUDA builds whose
# operators fail to load with the CPU torch installed here; so colpali-engine and peft are
# installed without dependencies, and their other needs (accelerate, psutil) normally. The
# test supplies the one torchvision-only transformers import colpali-engine makes (a pure
# function) from transformers' Pillow twin. About 1 MB; seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -c <(echo "torch==2.13.0") "accelerate>=1.1,<2" psutil
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
    "colpali-engine==0.3.18" "peft>=0.18,<0.21"
.venv/bin/python -c "import colpali_engine, peft; print('colpali-engine', colpali_engine.__version__ if hasattr(colpali_engine, '__version__') else '0.3.18', 'installed')" 2>/dev/null \
    || echo "colpali-engine installed (its import needs the test's torchvision shim)"
