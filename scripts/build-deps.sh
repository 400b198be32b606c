#!/usr/bin/env bash
# Installs what building photo-api needs beyond the Rust toolchain, from Debian's packages:
# cmake and nasm (the turbojpeg crate builds libjpeg-turbo 3 from source), a C compiler, and
# libheif's headers with pkg-config (HEIC/AVIF decoding and AVIF encoding link the system
# libheif 1.15, whose Debian 12 build carries libde265, dav1d, aom and x265).
# Does nothing when they are already there. Sourced by scripts/run.sh and scripts/test.sh.
set -euo pipefail
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v nasm >/dev/null || missing+=(nasm)
command -v cc >/dev/null || missing+=(gcc)
command -v pkg-config >/dev/null || missing+=(pkg-config)
pkg-config --exists libheif 2>/dev/null || missing+=(libheif-dev)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing build dependencies: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
