#!/usr/bin/env bash
# Install everything dagentic and its tests need into ./.venv. Idempotent: a second run
# only checks that the install matches pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
"$PYTHON" - <<'PY' || { echo "dagentic needs Python 3.11 or newer (set PYTHON=...)" >&2; exit 2; }
import sys
sys.exit(sys.version_info < (3, 11))
PY

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.dagentic-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! .venv/bin/python -c "import runtime" 2>/dev/null; then
  echo "setup: installing dagentic with its test extras"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip setuptools
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
  echo "$want" > "$stamp"
fi
