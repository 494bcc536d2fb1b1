#!/usr/bin/env bash
# Install kanlab with its test dependencies into .venv and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test
.venv/bin/python -m pytest tests "$@"
