#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test of the workspace.
# Works on a fresh Debian machine with a Rust toolchain; uses cargo-nextest when installed.
# Honours CARGO_TARGET_DIR (cargo reads it from the environment).
set -euo pipefail
cd "$(dirname "$0")/.."

section() { printf '\n==> %s\n' "$*"; }

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
echo "target dir: ${CARGO_TARGET_DIR:-target}"

# ---------------------------------------------------------------------------
# Services the tests need.
# PostgreSQL: the repository suite runs every test on SQLite and on PostgreSQL.
# scripts/ensure-postgres.sh starts a server on 127.0.0.1:5432 if none answers
# (installing Debian's package if needed) and prints the URL the tests use.
# ---------------------------------------------------------------------------
section "Services (PostgreSQL)"
PHOTO_API_TEST_POSTGRES="$(scripts/ensure-postgres.sh)"
export PHOTO_API_TEST_POSTGRES

section "Formatting (cargo fmt --all --check)"
cargo fmt --all --check

section "Lints (cargo clippy --workspace --all-targets --locked -- -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
    section "Tests (cargo nextest run --workspace --locked --no-fail-fast)"
    cargo nextest run --workspace --locked --no-fail-fast
    section "Doc tests (nextest does not run them)"
    cargo test --workspace --locked --doc
else
    section "Tests (cargo test --workspace --locked --no-fail-fast; install cargo-nextest for faster runs)"
    cargo test --workspace --locked --no-fail-fast
fi

section "Fuzzing (scripts/fuzz.sh: every cargo-fuzz target for ${FUZZ_SECONDS:-20}s; FUZZ_SECONDS=0 skips)"
if [ "${FUZZ_SECONDS:-20}" != 0 ]; then
    scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
fi

section "All checks passed"
