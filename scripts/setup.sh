#!/usr/bin/env bash
# Creates .venv (if missing) and installs dataio with its test extras, building the C extension dataio._native.
# Idempotent and quick when nothing changed: the install is skipped while pyproject.toml, setup.py and native/
# are unchanged since the last install.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}

# dataio._native links libjpeg-turbo through its libjpeg API: make sure the header is there.
if ! printf '#include <stdio.h>\n#include <jpeglib.h>\n' | cc -E -x c - >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "setup: installing libjpeg-turbo's headers (apt-get install libjpeg62-turbo-dev)"
        apt-get install -y -q libjpeg62-turbo-dev >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libjpeg62-turbo-dev >/dev/null 2>&1; } \
            || apt-get install -y -q libjpeg-turbo8-dev >/dev/null 2>&1 \
            || echo "setup: could not install libjpeg headers; dataio will use its slower Python decode path"
    else
        echo "setup: jpeglib.h not found. For the native image kernel install libjpeg-turbo's headers" \
             "(Debian: apt-get install libjpeg62-turbo-dev; Ubuntu: libjpeg-turbo8-dev; Fedora: libjpeg-turbo-devel)" \
             "and a C compiler, then rerun. Continuing: dataio falls back to its Python decode path."
    fi
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.dataio-install-stamp
want=$(cat pyproject.toml setup.py native/* 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    # torch first, pinned: a CPU build of exactly this version lies on these machines; any other
    # version would download several GB of CUDA wheels.
    .venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,bench]"
    echo "$want" > "$stamp"
fi
