#!/usr/bin/env bash
# Starts s3s-fs, an S3 server on a local directory that checks SigV4 signatures, presigned-URL
# expiry and POST-policy conditions, for trying the S3 adapter by hand or from CI.
#
#   scripts/s3-test-server.sh                 # install if missing, start in the foreground
#   scripts/s3-test-server.sh --install-only  # just make sure `s3s-fs` is installed
#
# Prints the settings to use (endpoint, keys, buckets) as `export` lines before it starts.
# The integration tests (crates/storage/tests/s3.rs) start their own s3s-fs; they need only the
# binary, found on PATH or through PHOTO_API_TEST_S3FS.
#
# Environment: S3FS_PORT (default: a free port), S3FS_ROOT (default: a new temp dir),
# S3FS_ACCESS_KEY / S3FS_SECRET_KEY (fixed test keys by default).
set -euo pipefail

# 0.14.1 is the newest s3s-fs that builds on our toolchain (later ones need a newer Rust).
S3FS_VERSION=0.14.1

if ! command -v s3s-fs >/dev/null 2>&1; then
  echo "installing s3s-fs $S3FS_VERSION (takes a few minutes the first time)..." >&2
  cargo install "s3s-fs@$S3FS_VERSION" --locked --features binary >&2
fi
[ "${1:-}" = "--install-only" ] && exit 0

ACCESS_KEY=${S3FS_ACCESS_KEY:-photoapitestaccesskey}
SECRET_KEY=${S3FS_SECRET_KEY:-photoapitestsecretkey0123456789abcdef}
ROOT=${S3FS_ROOT:-$(mktemp -d -t photo-api-s3.XXXXXX)}
PORT=${S3FS_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}

# s3s-fs maps each top-level directory of its root to a bucket.
mkdir -p "$ROOT/photo-raw" "$ROOT/photo-processed"

cat <<ENV
export PHOTO_API_S3_ENDPOINT=http://127.0.0.1:$PORT
export PHOTO_API_S3_PATH_STYLE=true
export PHOTO_API_S3_ALLOW_HTTP=true
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export S3_BUCKET_RAW=photo-raw
export S3_BUCKET_PROCESSED=photo-processed
# root directory: $ROOT
ENV

exec env RUST_LOG="${RUST_LOG:-s3s_fs=info}" s3s-fs --host 127.0.0.1 --port "$PORT" \
  --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" "$ROOT"
