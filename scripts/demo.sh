#!/usr/bin/env bash
# Install kanlab into .venv and run the main job: train the toy KAN and print test RMSE and time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/kanlab demo "$@"
