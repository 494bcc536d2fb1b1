#!/usr/bin/env bash
# Create .venv (if missing) and install kanlab with the CPU build of PyTorch.
# Usage: scripts/setup_env.sh [extras]   e.g. scripts/setup_env.sh test
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "creating the virtual environment .venv"
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch is pinned here (the CPU wheel); the package itself accepts torch>=2.2
spec="."
if [ -n "${1:-}" ]; then spec=".[$1]"; fi
echo "installing kanlab${1:+ with its $1 dependencies} and PyTorch (CPU) into .venv;" \
     "the first time takes about a minute (it builds the native kernels when a C++ compiler is there)"
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0" -e "$spec" 2>&1 \
    | grep -v -E "^WARNING: Location|is ignored: it is neither" || true
.venv/bin/python -c "import kanlab, torch; print('installed kanlab', kanlab.__version__, '| torch', torch.__version__, '| command: .venv/bin/kanlab')"
