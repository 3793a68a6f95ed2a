#!/usr/bin/env bash
# Install everything the tests need (PostgreSQL included) and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[test]"
CONVEX_TEST_PG_URL="$(bash scripts/ensure_postgres.sh)"
export CONVEX_TEST_PG_URL
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
