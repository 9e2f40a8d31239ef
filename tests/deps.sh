# shellcheck shell=bash
# What building roomcast on this machine needs, in one place: sourced by
# ./run (build and start the daemon) and tests/run.sh (the test suite), so
# the two never disagree. Defines functions only; changes nothing by itself.
#
#   build_deps_missing ARRAY   appends to the array named ARRAY the Debian
#                              packages the host build needs and lacks
#   find_cargo                 puts rustup's cargo on PATH when it is
#                              installed but this shell has not read
#                              ~/.cargo/env; fails when there is no cargo
#   apt_install PKG...         apt-get update + install, as root or through
#                              sudo; one clear line when neither can be done

# Whether Debian package $1 is installed.
deb_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'
}

build_deps_missing() {
    local -n _deps_missing=$1
    # nasm: openh264's x86 assembly (build.rs refuses to build without it).
    command -v nasm >/dev/null || _deps_missing+=(nasm)
    # cc and the C++ compiler: openh264's C++, ring's C; the linker.
    command -v cc >/dev/null || _deps_missing+=(build-essential)
    # libclang-dev + clang: bindgen generates the `v4l` crate's V4L2
    # bindings (its libclang parses the headers; clang finds include paths).
    deb_installed libclang-dev || _deps_missing+=(libclang-dev)
    command -v clang >/dev/null || _deps_missing+=(clang)
    # libasound2-dev + pkg-config: the `alsa` crate links libasound.
    deb_installed libasound2-dev || _deps_missing+=(libasound2-dev)
    command -v pkg-config >/dev/null || _deps_missing+=(pkg-config)
    # npm: fetches the pinned hls.js (web/package-lock.json) that the
    # binary embeds.
    command -v npm >/dev/null || _deps_missing+=(npm)
}

find_cargo() {
    command -v cargo >/dev/null && return 0
    if [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
        PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
        export PATH
        return 0
    fi
    return 1
}

apt_install() {
    local sudo=()
    if ! command -v apt-get >/dev/null; then
        echo "roomcast: missing $*, and this is not a Debian-like system (no apt-get): install them with your package manager" >&2
        return 1
    fi
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null; then
            echo "roomcast: missing $*; as root run: apt-get install $*" >&2
            return 1
        fi
        sudo=(sudo)
    fi
    echo "roomcast: installing $* (apt-get${sudo:+ through sudo})" >&2
    if ! "${sudo[@]}" apt-get update -qq ||
        ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
        echo "roomcast: could not install $* (output above); install them by hand: apt-get install $*" >&2
        return 1
    fi
}
