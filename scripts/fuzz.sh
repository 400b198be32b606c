#!/usr/bin/env bash
# Runs every cargo-fuzz target of crates/imaging for a bounded time.
#
#   scripts/fuzz.sh [seconds-per-target]      (default 30; CI uses 20)
#
# Works on stable Rust (no sanitizer, `-s none`). Set FUZZ_ASAN=1 to build
# with AddressSanitizer instead (uses RUSTC_BOOTSTRAP=1 on stable).
# Installs cargo-fuzz when missing. Exits non-zero on the first crash, leak,
# timeout or out-of-memory; the reproducer is kept under
# crates/imaging/fuzz/artifacts/<target>/ (replay it with
# `cargo fuzz run -s none <target> <file>`). FUZZ_TARGETS="a b" limits the
# targets. The build goes to crates/imaging/fuzz/target (cargo-fuzz's own;
# target/asan for FUZZ_ASAN=1).
set -euo pipefail
cd "$(dirname "$0")/../crates/imaging/fuzz"

seconds="${1:-30}"
case "$seconds" in
    ''|*[!0-9]*) echo "usage: $0 [seconds-per-target]" >&2; exit 2 ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

sanitizer=(-s none)
if [ "${FUZZ_ASAN:-0}" = 1 ]; then
    # Separate build dir: switching flags would otherwise rebuild everything.
    sanitizer=(-s address --target-dir target/asan)
    export RUSTC_BOOTSTRAP=1
fi
# cargo-fuzz must not inherit the workspace's target directory (other flags). Its own build
# goes to a cache shared by the checkouts on this machine, like the workspace's (see
# scripts/test.sh); PHOTO_API_TARGET_CACHE=off builds in crates/imaging/fuzz/target.
unset CARGO_TARGET_DIR
if [ "${PHOTO_API_TARGET_CACHE:-on}" != off ] && [ "${FUZZ_ASAN:-0}" != 1 ]; then
    cache="${XDG_CACHE_HOME:-$HOME/.cache}/photo-api/fuzz-target"
    mkdir -p "$cache"
    sanitizer+=(--target-dir "$cache")
fi

targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"

# The working corpus grows during a run; keep the checked-in seeds read-only.
work="corpus"
for t in $targets; do
    mkdir -p "$work/$t"
done

echo "==> building fuzz targets (${sanitizer[*]})"
cargo fuzz build "${sanitizer[@]}"

for t in $targets; do
    echo "==> fuzzing $t for ${seconds}s"
    # -timeout: one input taking > 10 s is a hang (the per-job time limit);
    # -rss_limit_mb / -malloc_limit_mb: the targets use 32 MiB decode budgets,
    # so 1 GiB of RSS or a single 512 MiB allocation is a missing limit.
    cargo fuzz run "${sanitizer[@]}" "$t" "$work/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=512 \
        -max_len=65536 -print_final_stats=1
done
echo "==> fuzzing passed (${seconds}s per target)"
