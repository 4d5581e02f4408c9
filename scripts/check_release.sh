#!/usr/bin/env bash
# Release check for the four distributions (colmax, langchain-colmax,
# llama-index-retrievers-colmax, llama-index-postprocessor-colmax-rerank):
#
# 1. build each one's wheel and sdist with `python -m build` (isolated, as a release would);
# 2. `twine check --strict` (metadata, README rendering) and scripts/check_dists.py (every
#    package file in the wheel and sdist, one version, licences, links, classifiers);
# 3. install the built wheels, not the source tree, in a fresh virtual environment and run the
#    doors' unit tests there, first with the newest langchain-core / llama-index-core the
#    version ranges allow, then with the oldest (langchain-core 1.0.0, llama-index-core 0.14.23).
#
# A file missing from a wheel fails step 2, and an import of it fails step 3. Called by .ci/run;
# needs .venv (scripts/install.sh). Usage: bash scripts/check_release.sh [DIST_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
DIST="${1:-$WORK/dist}"
PIP=(--disable-pip-version-check -q)
PACKAGES=(. integrations/langchain-colmax integrations/llama-index-retrievers-colmax
          integrations/llama-index-postprocessor-colmax-rerank)
# The oldest framework cores the integrations' version ranges admit (keep in step with their
# pyproject.toml files; tests/unit/test_packaging.py checks that they are the lower bounds).
OLDEST=(langchain-core==1.0.0 llama-index-core==0.14.23)
DOOR_TESTS=(integrations/langchain-colmax/tests/unit_tests
            integrations/llama-index-retrievers-colmax/tests
            integrations/llama-index-postprocessor-colmax-rerank/tests)
IGNORE=(--ignore=integrations/llama-index-retrievers-colmax/tests/integration
        --ignore=integrations/llama-index-postprocessor-colmax-rerank/tests/integration)

start=$SECONDS
.venv/bin/python -m pip install "${PIP[@]}" 'build>=1.2' 'twine>=6.1'
rm -rf "$DIST" && mkdir -p "$DIST"
for package in "${PACKAGES[@]}"; do
    .venv/bin/python -m build -q --outdir "$DIST" "$package" >"$WORK/build.log" 2>&1 ||
        { cat "$WORK/build.log"; exit 1; }
done
.venv/bin/python -m twine check --strict "$DIST"/*
.venv/bin/python scripts/check_dists.py "$DIST"
echo "built and checked in $((SECONDS - start)) s"

python3 -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install "${PIP[@]}" torch==2.13.0  # the CPU build first, as scripts/install.sh
"$VPY" -m pip install "${PIP[@]}" "$(ls "$DIST"/colmax-*.whl)[hybrid,pooling]" \
    "$DIST"/langchain_colmax-*.whl "$DIST"/llama_index_retrievers_colmax-*.whl \
    "$DIST"/llama_index_postprocessor_colmax_rerank-*.whl 'pytest>=8' 'pytest-asyncio>=0.23'
echo "fresh environment ready in $((SECONDS - start)) s"

run_door_tests() {
    # Every module must come from the fresh environment's site-packages, never from the tree.
    (cd "$WORK" && "$VPY" - <<'EOF'
import importlib, sys, sysconfig
site = sysconfig.get_paths()["purelib"]
names = ("colmax", "langchain_colmax", "llama_index.retrievers.colmax",
         "llama_index.postprocessor.colmax_rerank")
for name in names:
    path = importlib.import_module(name).__file__
    if not path.startswith(site):
        sys.exit(f"{name} imported from {path}, not from the installed wheel in {site}")
from importlib.metadata import version
print("testing", ", ".join(f"{p} {version(p)}" for p in (
    "colmax", "langchain-colmax", "llama-index-retrievers-colmax",
    "llama-index-postprocessor-colmax-rerank", "langchain-core", "llama-index-core")))
EOF
    )
    "$VPY" -m pytest -q -p no:cacheprovider "${DOOR_TESTS[@]}" "${IGNORE[@]}"
}

echo "== the doors' unit tests against the installed wheels, newest framework cores"
run_door_tests
echo "== again with the oldest allowed framework cores: ${OLDEST[*]}"
"$VPY" -m pip install "${PIP[@]}" "${OLDEST[@]}"
run_door_tests
echo "release check passed in $((SECONDS - start)) s"
