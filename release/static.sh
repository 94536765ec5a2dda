#!/usr/bin/env bash
# Builds the fully static pullcred: no dynamic loader, no shared library, no
# NSS (names are resolved by pullcred's own stub resolver, provider/src/resolve.rs).
#
#   release/static.sh                  # static, non-PIE (the default)
#   PULLCRED_PIE=1 release/static.sh   # static-pie
#
# The binary: target/static/x86_64-unknown-linux-gnu/release/pullcred
#
# glibc, linked statically (`+crt-static`): the machine's toolchain has no musl
# target. A statically linked glibc only dlopens NSS modules when getpwnam,
# getaddrinfo and friends are called, and pullcred calls none of them.
#
# `--target` is given explicitly so that RUSTFLAGS reach only the binary's
# crates, not build scripts and proc macros (which cannot be static). The
# flags change every crate's fingerprint, hence a target directory of its own:
# the ordinary build's cache stays valid.
#
# Non-PIE unless PULLCRED_PIE=1, as in provider/build.rs: `relocation-model=static`
# makes rustc link with `-static -no-pie`; without it rustc links `-static-pie`,
# whose start-up code applies the relocations itself.
set -euo pipefail
cd "$(dirname "$0")/.."
# Remapped source paths (release/reproducible.sh): the flags release/release.sh
# builds with, so the static build of tests/run is the one a release reuses,
# and no build path ends up in the binary.
. release/reproducible.sh
target=x86_64-unknown-linux-gnu
flags="-C target-feature=+crt-static"
case "${PULLCRED_PIE:-}" in
    1|true|TRUE|True) ;;
    *) flags="$flags -C relocation-model=static" ;;
esac
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }$flags"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/static}"
cargo build --release --locked -p pullcred --target "$target" "$@"
bin="$CARGO_TARGET_DIR/$target/release/pullcred"
echo "$bin"
