#!/usr/bin/env bash
# Install what is needed, then run the whole test suite. Extra arguments go to pytest.
# pytest's own exit code is kept, so "no tests collected" (5) fails too.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Two processes (pytest-xdist): most of the suite waits on subprocesses, servers and
# sleeps, so two at once take about half the time on two cores. DAGENTIC_TEST_WORKERS=0
# runs it in this process alone.
exec .venv/bin/python -m pytest -n "${DAGENTIC_TEST_WORKERS:-2}" --dist loadgroup "$@"
