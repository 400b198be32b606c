#!/usr/bin/env bash
# bench/run.sh - thumbnail throughput of photo-api's engine against libvips (vipsthumbnail
# and pyvips), ImageMagick and Pillow, on the same files in the same run.
#
# Usage:  bash bench/run.sh                 (about 10 minutes on 2 cores)
# Env:    BENCH_CORPUS=DIR   corpus location (default bench/corpus; built if missing by
#                            ../shared/bench/make-corpus.sh, or $MAKE_CORPUS)
#         BENCH_REPS=3       repetitions per tool, size and core count
#         BENCH_SIZES=256,1024   BENCH_CORES=1,2
#         BENCH_TOOLS=vipsthumbnail,pyvips,pillow,imagemagick
#         BENCH_NO_IM_1024=1 skip ImageMagick at 1024 px (the slowest part)
#         CARGO_TARGET_DIR   honoured for the engine build
#
# Installs what is missing (Debian): cmake nasm (to build libjpeg-turbo for the engine),
# libvips-tools imagemagick time, and with pip: pyvips Pillow numpy.
# Prints one table per size and core count (markdown), see bench/bench.py.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
CORPUS="${BENCH_CORPUS:-$HERE/corpus}"
MAKE_CORPUS="${MAKE_CORPUS:-$ROOT/../shared/bench/make-corpus.sh}"
export DEBIAN_FRONTEND=noninteractive

# ---------------------------------------------------------------- tools
apt_pkgs=()
for p in cmake nasm libvips-tools imagemagick time; do
    dpkg -s "$p" >/dev/null 2>&1 || apt_pkgs+=("$p")
done
if [ "${#apt_pkgs[@]}" -gt 0 ]; then
    echo ">> apt-get install ${apt_pkgs[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
fi
if ! python3 -c 'import pyvips, PIL, numpy' 2>/dev/null; then
    echo ">> pip install pyvips Pillow numpy"
    python3 -m pip install -q pyvips Pillow numpy
fi
# /usr/local/bin/convert may be a stand-in: bench.py calls /usr/bin/convert.
[ -x /usr/bin/convert ] || { echo "ImageMagick's /usr/bin/convert is missing" >&2; exit 1; }

# ---------------------------------------------------------------- corpus
if [ ! -s "$CORPUS/MANIFEST.tsv" ]; then
    [ -f "$MAKE_CORPUS" ] || { echo "no corpus in $CORPUS and no $MAKE_CORPUS to build it" >&2; exit 1; }
    echo ">> building the corpus in $CORPUS"
    bash "$MAKE_CORPUS" "$CORPUS"
fi

# ---------------------------------------------------------------- engine
echo ">> cargo build --release (bench/engine)"
( cd "$HERE/engine" && cargo build --release --quiet )
ENGINE="${CARGO_TARGET_DIR:-$HERE/engine/target}/release/bench-engine"
[ -x "$ENGINE" ] || { echo "bench-engine not built at $ENGINE" >&2; exit 1; }

# ---------------------------------------------------------------- run
args=(--corpus "$CORPUS" --engine "$ENGINE" --reps "${BENCH_REPS:-3}"
      --sizes "${BENCH_SIZES:-256,1024}" --cores "${BENCH_CORES:-1,2}"
      --tools "${BENCH_TOOLS:-vipsthumbnail,pyvips,pillow,imagemagick}")
[ "${BENCH_NO_IM_1024:-0}" = 1 ] && args+=(--no-im-1024)
echo ">> $(nproc) CPUs; vips $(vipsthumbnail --vips-version | head -1); $(/usr/bin/convert -version | head -1)"
python3 -c 'import PIL, pyvips; print(">> Pillow", PIL.__version__, "pyvips", pyvips.__version__)'
exec python3 "$HERE/bench.py" "${args[@]}"
