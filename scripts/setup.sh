#!/usr/bin/env bash
# Creates .venv (if missing) and installs dataio with its test extras. Idempotent and quick when nothing
# changed: the install is skipped while pyproject.toml and setup.py are unchanged since the last install.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.dataio-install-stamp
want=$(cat pyproject.toml setup.py | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    # torch first, pinned: a CPU build of exactly this version lies on these machines; any other
    # version would download several GB of CUDA wheels.
    .venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,bench]"
    echo "$want" > "$stamp"
fi
