#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: lint, format check, then pytest.
#   bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${GEOLAYERS_VENV:-.venv}"
"$VENV/bin/ruff" check geolayers tests examples benchmarks setup.py conftest.py
"$VENV/bin/ruff" format --check geolayers tests examples benchmarks setup.py conftest.py
"$VENV/bin/python" -m pytest "$@"
