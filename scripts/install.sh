#!/usr/bin/env bash
# Create .venv and install colmax with its test and demo extras.
# torch==2.13.0 is installed first so pip keeps the CPU build instead of pulling a CUDA one.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,demo,eval]"
# The framework doors: each integrations/<name>/ is its own distribution with a `test` extra.
for pkg in integrations/*/; do
    if [ -f "$pkg/pyproject.toml" ]; then
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "${pkg}[test]"
    fi
done
.venv/bin/python -c "import colmax, torch; print(f'colmax {colmax.__version__} installed (torch {torch.__version__})')"
