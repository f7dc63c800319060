#!/usr/bin/env bash
# Install what is needed, then run the main plan on embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/dagentic run plans/revenue.yaml "$@"
