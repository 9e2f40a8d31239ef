#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine or a developer's box:
# installs the peers the tests run against (when missing), then runs lints,
# unit tests, end-to-end tests against the real binary, and the browser test.
#
#   ./tests/run.sh            everything
#   SKIP_INSTALL=1 ./tests/run.sh   do not touch apt
#   SKIP_CROSS=1 ./tests/run.sh     leave out the aarch64/armv7 cross builds
#   CROSS_ALLOW_BROKEN_INDEX=1 ./tests/run.sh   skip (not fail) a cross build
#                                   whose Debian arch index will not download
#   IMAGE_TEST=1 ./tests/run.sh     also build the SD image (~14 min) and check it from outside
#   IMAGE_TEST=1 BOOT_TEST=1 ./tests/run.sh   ... and boot it under qemu-system-aarch64 (~1 min more)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

# --- peers and build tools (Debian packages) ------------------------------
# What the build needs (nasm, build-essential, libclang-dev, clang,
# libasound2-dev, pkg-config, npm) is listed once, in tests/deps.sh, which
# ./run shares. The tests also need rustup's cargo with clippy and rustfmt.
# shellcheck source=tests/deps.sh
. tests/deps.sh
find_cargo || {
    echo "tests/run.sh: no cargo; install Rust with rustup (https://rustup.rs): the tests need its clippy and rustfmt" >&2
    exit 1
}
need_pkgs=()
build_deps_missing need_pkgs
# ffmpeg: ffprobe checks what we serve; chromium: plays our HLS with hls.js;
# nodejs: runs the browser test (playwright-core).
command -v ffprobe >/dev/null || need_pkgs+=(ffmpeg)
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || need_pkgs+=(chromium)
command -v node >/dev/null || need_pkgs+=(nodejs)
# nginx + libnginx-mod-rtmp: the RTMP ingest; stunnel4 + openssl: RTMPS in
# front of it with a CA the test makes.
[ -e /usr/lib/nginx/modules/ngx_rtmp_module.so ] || need_pkgs+=(nginx libnginx-mod-rtmp)
command -v stunnel4 >/dev/null || need_pkgs+=(stunnel4)
command -v openssl >/dev/null || need_pkgs+=(openssl)
# srt-tools: libsrt's srt-live-transmit, the reference SRT peer.
command -v srt-live-transmit >/dev/null || need_pkgs+=(srt-tools)
# fdisk (sfdisk) and mtools, dosfstools, e2fsprogs (debugfs): roomcast-host
# flash/image tests; losetup, partx and mount come with util-linux/mount.
command -v sfdisk >/dev/null || need_pkgs+=(fdisk)
# mtools + dosfstools: flash reads the setup code from an image's FAT boot
# partition (host-tools unit test builds a small one).
command -v mcopy >/dev/null || need_pkgs+=(mtools)
command -v mkfs.vfat >/dev/null || need_pkgs+=(dosfstools)
# The SD image (IMAGE_TEST=1): mmdebstrap runs arm64 maintainer scripts
# through qemu-user-static's binfmt handler; BOOT_TEST=1 boots it.
if [ -n "${IMAGE_TEST:-}" ]; then
    command -v mmdebstrap >/dev/null || need_pkgs+=(mmdebstrap)
    command -v debugfs >/dev/null || need_pkgs+=(e2fsprogs)
    [ -e /usr/bin/qemu-aarch64-static ] || need_pkgs+=(qemu-user-static)
    command -v update-binfmts >/dev/null || need_pkgs+=(binfmt-support)
    if [ -n "${BOOT_TEST:-}" ]; then
        command -v qemu-system-aarch64 >/dev/null || need_pkgs+=(qemu-system-arm)
    fi
fi
if [ ${#need_pkgs[@]} -gt 0 ] && [ -z "${SKIP_INSTALL:-}" ]; then
    step "installing ${need_pkgs[*]}"
    apt_install "${need_pkgs[@]}"
fi

step "npm packages (pinned by package-lock.json)"
(cd firmware/roomcast/web && npm ci --no-audit --no-fund --loglevel=error)
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "media core builds without std"
cargo build --locked -p roomcast-media --no-default-features

step "release build (what the tests drive)"
cargo build --release --locked --workspace --bins

step "tests: unit, end-to-end, browser"
cargo test --release --locked --workspace

step "fuzz smoke: every sans-IO parser target for a few seconds"
FUZZ_SECONDS="${FUZZ_SECONDS:-10}" firmware/media/fuzz/smoke.sh

# The box's binaries, built with Debian's Rust and cross gcc into
# target/cross and run under qemu (web page, HLS, ffprobe on a segment).
# A failure of either fails the suite. SKIP_CROSS=1 leaves both out;
# CROSS_ALLOW_BROKEN_INDEX=1 lets one be skipped (loudly) only when Debian's
# package index for its architecture will not download (see tests/cross.sh).
if [ -z "${SKIP_CROSS:-}" ]; then
    step "cross: aarch64 release build, run under qemu"
    tests/cross.sh aarch64
    step "cross: armv7 release build, run under qemu"
    tests/cross.sh armv7
fi

# The SD image from Debian packages, with the aarch64 binary built above:
# partition table, boot files, unit and binary checked from outside
# (sfdisk, mtools, debugfs); BOOT_TEST=1 boots it under qemu-system-aarch64
# until the web page answers. Opt-in: about 14 minutes on a 2-core machine
# with the .deb cache warm (/var/cache/roomcast-image). Needs root.
if [ -n "${IMAGE_TEST:-}" ]; then
    step "SD image: build, outside checks${BOOT_TEST:+, qemu boot}"
    # binfmt_misc may not be mounted in a container; qemu-user-static's
    # handlers are registered once it is.
    [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 || true
    ROOMCAST_IMAGE_TEST=1 ROOMCAST_BOOT_TEST="${BOOT_TEST:-}" \
        cargo test --release --locked -p roomcast-e2e --test host_image -- --nocapture --test-threads=1
fi

echo
echo "all tests passed"
