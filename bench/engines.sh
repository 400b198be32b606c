#!/usr/bin/env bash
# Job engines side by side: submit-to-complete latency (p50/p95, one job at a time) and
# throughput (200 jobs submitted by 8 clients at once) of the same small thumbnail job (a
# 320x240 JPEG to 64x64), on the built-in SQL queue and on Temporal. Both servers use the
# embedded default (SQLite + local disk) with a supervised worker process and default settings;
# the Temporal one runs against a dev server this script starts (scripts/temporal-dev-server.sh).
#
#   bash bench/engines.sh                 BENCH_PROFILE=release (default) or dev
#   BENCH_LATENCY_JOBS=40 BENCH_THROUGHPUT_JOBS=200 BENCH_CONCURRENCY=<cpus>
# Needs python3 (stdlib only) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE="${BENCH_PROFILE:-release}"
TARGET="${CARGO_TARGET_DIR:-target}"
if [ "$PROFILE" = release ]; then
    cargo build --release -p photo-api >&2; BIN="$TARGET/release/photo-api"
else
    cargo build -p photo-api >&2; BIN="$TARGET/debug/photo-api"
fi
scripts/temporal-dev-server.sh --install-only >/dev/null
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TPORT="$(free_port)"
scripts/temporal-dev-server.sh "$TPORT" >"$WORK/temporal.log" 2>&1 &
PIDS+=($!)
until temporal operator namespace describe --namespace default --address "127.0.0.1:$TPORT" >/dev/null 2>&1; do sleep 0.2; done

python3 -c "from PIL import Image" 2>/dev/null || pip install --quiet Pillow >&2
python3 - "$WORK/photo.jpg" <<'PY'
import sys
from PIL import Image
img = Image.new("RGB", (320, 240))
img.putdata([((x * 255) // 320, (y * 255) // 240, ((x + y) * 7) % 256) for y in range(240) for x in range(320)])
img.save(sys.argv[1], quality=90)
PY

run() { # label, extra env...
    local label="$1"; shift
    local dir="$WORK/$label" port; port="$(free_port)"; mkdir -p "$dir"
    env "$@" API_KEY=bench-key-0123456789 PHOTO_API_DATA_DIR="$dir" LOG_LEVEL=warn \
        ${BENCH_CONCURRENCY:+PHOTO_API_WORKER_CONCURRENCY=$BENCH_CONCURRENCY} \
        "$BIN" serve --listen "127.0.0.1:$port" >"$dir/out.log" 2>"$dir/err.log" &
    PIDS+=($!)
    until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do sleep 0.1; done
    local api="http://127.0.0.1:$port" auth="Authorization: Bearer bench-key-0123456789"
    local init; init="$(curl -sf -X POST "$api/uploads/init" -H "$auth" -H 'Content-Type: application/json' \
        -d '{"content_type":"image/jpeg","max_bytes":5000000}')"
    local id url key
    id="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["upload_id"])' <<<"$init")"
    url="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])' <<<"$init")"
    key="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["fields"]["key"])' <<<"$init")"
    curl -sf -F "Content-Type=image/jpeg" -F "key=$key" -F "file=@$WORK/photo.jpg" "$url" >/dev/null
    curl -sf -X POST "$api/uploads/$id/complete" -H "$auth" >/dev/null
    python3 bench/engines.py "$api" bench-key-0123456789 "$id" "$label" \
        "${BENCH_LATENCY_JOBS:-40}" "${BENCH_THROUGHPUT_JOBS:-200}"
}

# The SQL queue on SQLite has no wake-up signal (PostgreSQL has LISTEN/NOTIFY): an idle worker
# polls every PHOTO_API_POLL_INTERVAL (default 250ms), which bounds its latency. The third
# column shows it with a 20ms poll.
SQL="$(run sql)"
SQL_FAST="$(run sql-poll-20ms PHOTO_API_POLL_INTERVAL=20ms)"
TEMPORAL="$(run temporal TEMPORAL_TARGET="127.0.0.1:$TPORT" TEMPORAL_TASK_QUEUE=bench)"
python3 - "$PROFILE" "$SQL" "$TEMPORAL" "$SQL_FAST" <<'PY'
import json, sys
cols = [json.loads(a) for a in sys.argv[2:]]
names = ["SQL queue", "Temporal", "SQL, 20ms poll"]
a = cols[0]
print(f"\nphoto-api job engines, {sys.argv[1]} build, thumbnail 320x240 -> 64x64, "
      f"{a['latency_jobs']} sequential jobs, {a['throughput_jobs']} concurrent jobs")
rows = [("submit-to-complete p50 (ms)", "p50_ms"), ("submit-to-complete p95 (ms)", "p95_ms"),
        ("submit-to-complete max (ms)", "max_ms"), ("throughput (jobs/s)", "jobs_per_s"),
        ("submit rate (POST /jobs per s)", "submit_per_s")]
print("| " + " " * 32 + " | " + " | ".join(f"{n:>14}" for n in names) + " |")
print("|" + "-" * 34 + "|" + "|".join("-" * 15 + ":" for _ in names) + "|")
for name, k in rows:
    print(f"| {name:32} | " + " | ".join(f"{c[k]:>14}" for c in cols) + " |")
PY
