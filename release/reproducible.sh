# Sourced (bash) by release/release.sh, and meant to be sourced by
# release/static.sh, before it adds its own flags: the build settings that
# make the static binary the same bytes on every machine and every run.
#
# - SOURCE_DATE_EPOCH, unless already set: the time of the checked-out
#   commit (reproducible-builds.org/specs/source-date-epoch); left unset
#   outside a git checkout. Nothing in the binary depends on it today; the
#   release's file times, archive and SBOM timestamp do.
# - RUSTFLAGS gains `--remap-path-prefix FROM=TO` for the directories whose
#   absolute names rustc would otherwise write into the binary (file!() in
#   panic locations and error messages of every crate):
#     the repository            -> /pullcred
#     the target directory      -> /pullcred/target  (when outside the repository)
#     $CARGO_HOME (~/.cargo)    -> /cargo            (crates.io sources)
#     the toolchain's sysroot   -> /rustc/sysroot    (rust-src, if used)
#   (rustc: "Remap source path prefixes in all output, including compiler
#   diagnostics, debug information, macro expansions"; the last matching
#   option wins.)
#
# Idempotent: a flag already in RUSTFLAGS is not added again, so sourcing it
# twice (release.sh, then static.sh) gives the same RUSTFLAGS as sourcing it
# once, hence the same cargo fingerprints: the static build that tests/run
# makes is the one a release reuses.
#
# RUSTFLAGS is split on whitespace, so a directory whose name has a space
# cannot be remapped: that is an error. CARGO_ENCODED_RUSTFLAGS would take
# precedence over RUSTFLAGS (and drop static.sh's flags): also an error.

_pullcred_repro() {
    local repo cargo_home sysroot target_dir from to flag
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
    if [ -n "${CARGO_ENCODED_RUSTFLAGS:-}" ]; then
        echo "reproducible.sh: error: CARGO_ENCODED_RUSTFLAGS is set; it would override RUSTFLAGS" >&2
        return 1
    fi
    if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
        # Left unset outside a git checkout: release.sh then refuses.
        SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct 2>/dev/null) || SOURCE_DATE_EPOCH=
    fi
    if [ -n "$SOURCE_DATE_EPOCH" ]; then
        case $SOURCE_DATE_EPOCH in
            *[!0-9]*) echo "reproducible.sh: error: SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH: not a number of seconds" >&2; return 1 ;;
        esac
        export SOURCE_DATE_EPOCH
    else
        unset SOURCE_DATE_EPOCH
    fi

    # As cargo spells it (not resolved: cargo does not resolve it either).
    cargo_home=${CARGO_HOME:-$HOME/.cargo}
    cargo_home=${cargo_home%/}
    sysroot=$(rustc --print sysroot 2>/dev/null) || sysroot=
    target_dir=
    if [ -n "${CARGO_TARGET_DIR:-}" ]; then
        mkdir -p "$CARGO_TARGET_DIR"
        target_dir=$(cd "$CARGO_TARGET_DIR" && pwd -P)
        case $target_dir/ in "$repo"/*) target_dir= ;; esac
    fi
    # Most general first: rustc applies the last matching remap.
    for pair in "$sysroot=/rustc/sysroot" "$cargo_home=/cargo" "$repo=/pullcred" \
        "$target_dir=/pullcred/target"; do
        from=${pair%=*} to=${pair##*=}
        [ -n "$from" ] || continue
        case $from in
            *[[:space:]]*)
                echo "reproducible.sh: error: cannot remap a path with white space: $from" >&2
                return 1 ;;
        esac
        flag="--remap-path-prefix=$from=$to"
        case " ${RUSTFLAGS:-} " in
            *" $flag "*) ;;
            *) RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }$flag" ;;
        esac
    done
    export RUSTFLAGS
}
_pullcred_repro
