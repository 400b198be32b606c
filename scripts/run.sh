#!/usr/bin/env bash
# Builds photo-api (release) and runs `photo-api serve` on the embedded default:
# SQLite and local objects under ./data, a supervised worker process, http://127.0.0.1:8080.
# Extra arguments go to `serve`, e.g. ./scripts/run.sh --listen 0.0.0.0:8080
# The first build takes several minutes on a 2-core machine; later runs start at once.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-deps.sh
exec cargo run --release -p photo-api -- serve "$@"
