#!/usr/bin/env bash
# Runs the whole test suite; sets up .venv first when needed.
# Usage: bash run_tests.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_venv.sh requirements-dev.txt  # sets PY

echo "==> ruff"
"$PY" -m ruff check .

echo "==> pytest"
# pytest exits 5 when it collects no test: that is a failure here too.
"$PY" -m pytest "$@"
