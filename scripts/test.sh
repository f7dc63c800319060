#!/usr/bin/env bash
# Install what is needed, then run the whole test suite. Extra arguments go to pytest.
# pytest's own exit code is kept, so "no tests collected" (5) fails too.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
