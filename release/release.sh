#!/usr/bin/env bash
# release.sh: the release artifacts of pullcred, reproducibly.
#
# Usage:
#   release/release.sh VERSION [--out DIR]
#
# VERSION is the workspace version (Cargo.toml), with or without a leading
# "v": the binary reports it in `pullcred --version`, so a release named
# otherwise is refused. DIR (default target/dist/VERSION) must be new or
# empty. Writes:
#
#   pullcred-VERSION-linux-amd64         the static binary (release/static.sh:
#                                        glibc linked in, no INTERP, non-PIE)
#   pullcred-installer-VERSION.oci.tar   the installer image (installer/build-image.sh)
#                                        as an OCI image layout in a tar archive,
#                                        tag VERSION; one layer: /pullcred
#   pullcred-VERSION.cdx.json            CycloneDX SBOM (cargo-cyclonedx) of the
#                                        pullcred crate, default features (those of
#                                        the release build), x86_64-unknown-linux-gnu
#   SHA256SUMS                           `sha256sum -c` format, over the three above
#
# and prints their paths, one a line, on stdout; progress goes to stderr.
#
# Reproducible: two runs on the same commit give the same SHA256SUMS, on any
# machine with the same toolchain (release/reproducible.sh: SOURCE_DATE_EPOCH
# from the commit, --remap-path-prefix for every build directory; the
# archive's entries sorted, owner 0:0, mtime SOURCE_DATE_EPOCH; the SBOM's
# timestamp SOURCE_DATE_EPOCH and its serial number derived from its content).
# The binary is checked to hold no absolute build path.
#
# Needs: cargo, rustc, tar (GNU), gzip, sha256sum, readelf, python3, and
# cargo-cyclonedx CYCLONEDX_VERSION (below), installed with
# `cargo install --locked` from crates.io when missing.
# CARGO_TARGET_DIR as for release/static.sh (default target/static).
#
# Exit status: 0 released, 1 failure, 2 usage error; messages on stderr.
set -euo pipefail
PROG=release.sh
CYCLONEDX_VERSION=0.5.9
say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { say "error: $*"; exit 1; }
usage_error() { say "usage error: $*"; exit 2; }

cd "$(dirname "$0")/.."
REPO=$(pwd -P)

VERSION= OUT=
while [ $# -gt 0 ]; do
    case $1 in
        --out) [ $# -ge 2 ] || usage_error "--out needs a value"; OUT=$2; shift 2 ;;
        --out=*) OUT=${1#--out=}; shift ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p;}' "$0"; exit 0 ;;
        -*) usage_error "unknown option: $1" ;;
        *) [ -z "$VERSION" ] || usage_error "one VERSION only"; VERSION=$1; shift ;;
    esac
done
[ -n "$VERSION" ] || usage_error "VERSION is required (release/release.sh VERSION [--out DIR])"
case $VERSION in *[!A-Za-z0-9_.-]*) usage_error "VERSION: letters, digits, _ . - only" ;; esac
VERSION=${VERSION#v}
[ -n "$OUT" ] || OUT=target/dist/$VERSION
[ -z "${OUT##/*}" ] || OUT=$REPO/$OUT
if [ -e "$OUT" ]; then
    [ -d "$OUT" ] || die "--out $OUT exists and is not a directory"
    [ -z "$(ls -A "$OUT")" ] || die "--out $OUT is not empty"
fi

crate_version=$(cargo metadata --no-deps --locked --format-version 1 |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="pullcred"))')
[ "$VERSION" = "$crate_version" ] || die "VERSION $VERSION is not the crate's version $crate_version (Cargo.toml)"

# shellcheck source=release/reproducible.sh
. release/reproducible.sh
[ -n "${SOURCE_DATE_EPOCH:-}" ] || die "not a git checkout: set SOURCE_DATE_EPOCH (seconds since 1970)"
say "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pullcred-release.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd -P)

# --- the static binary ------------------------------------------------------
say "building the static binary (release/static.sh)"
built=$(release/static.sh | tail -n 1)
[ -f "$built" ] || die "release/static.sh did not print the binary's path"
if readelf -lW "$built" | grep -q 'INTERP'; then
    die "$built has a program interpreter: not static"
fi
readelf -hW "$built" | grep -q 'Machine:.*X86-64' || die "$built is not an x86-64 binary"
# No absolute build path: the remaps in release/reproducible.sh cover them.
cargo_home=${CARGO_HOME:-$HOME/.cargo}
leaks=()
for dir in "$REPO" "${cargo_home%/}" "$(rustc --print sysroot)" "$HOME" "${CARGO_TARGET_DIR:-}"; do
    [ -n "$dir" ] && [ "$dir" != / ] || continue
    if LC_ALL=C grep -aqF "$dir/" "$built"; then leaks+=("$dir"); fi
done
[ ${#leaks[@]} -eq 0 ] || die "$built holds absolute build paths under: ${leaks[*]}"

BIN=pullcred-$VERSION-linux-amd64
cp "$built" "$OUT/$BIN"
chmod 0755 "$OUT/$BIN"
touch -h -d "@$SOURCE_DATE_EPOCH" "$OUT/$BIN"

# --- the installer image ----------------------------------------------------
# build-image.sh writes sorted, 0:0, mtime-0, gzip -n layers and fixed JSON;
# the layout directory is archived the same way.
IMAGE=pullcred-installer-$VERSION.oci.tar
say "building the installer image (installer/build-image.sh)"
sh installer/build-image.sh --binary "$OUT/$BIN" --out "$WORK/oci" --tag "$VERSION" --arch amd64
find "$WORK/oci" -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +
tar --create --file "$OUT/$IMAGE" --directory "$WORK/oci" --sort=name \
    --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime .
touch -d "@$SOURCE_DATE_EPOCH" "$OUT/$IMAGE"

# --- the SBOM ----------------------------------------------------------------
# cargo-cyclonedx (the CycloneDX project's cargo plugin): default features,
# as the release build; build dependencies included (they made the binary),
# dev-dependencies not. It takes its timestamp from SOURCE_DATE_EPOCH and
# writes no serial number, but names the checkout's absolute path in the
# bom-refs of the workspace's crates (CycloneDX/cyclonedx-rust-cargo#514:
# no reproducible mode): normalised below.
SBOM=pullcred-$VERSION.cdx.json
have=$(cargo cyclonedx --version 2>/dev/null || true)
# It prints "cargo-cyclonedx-cyclonedx 0.5.9".
case $have in *" $CYCLONEDX_VERSION") have_it=1 ;; *) have_it= ;; esac
if [ -z "$have_it" ]; then
    say "installing cargo-cyclonedx $CYCLONEDX_VERSION (found: ${have:-none})"
    cargo install --quiet --locked cargo-cyclonedx --version "$CYCLONEDX_VERSION" >&2
fi
say "writing the SBOM (cargo cyclonedx)"
# It writes next to the package's Cargo.toml; a name of this run's own.
sbom_name=pullcred-release-$$-sbom
cargo cyclonedx --manifest-path provider/Cargo.toml --format json --spec-version 1.5 \
    --target x86_64-unknown-linux-gnu --override-filename "$sbom_name" >&2
mv "provider/$sbom_name.json" "$WORK/sbom.json"
# It writes one per workspace member (kubelet-config too): only pullcred's is kept.
rm -f -- ./*/"$sbom_name.json"
python3 - "$WORK/sbom.json" "$OUT/$SBOM" "$SOURCE_DATE_EPOCH" "$REPO" <<'EOF'
import hashlib, json, sys, time, uuid

src, dst, epoch, repo = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
with open(src, encoding="utf-8") as f:
    bom = json.load(f)

def scrub(value):
    """The checkout's absolute path (in the bom-refs of the workspace's own
    crates, path+file:///...) becomes /pullcred, as in the binary."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return value.replace(repo + "/", "/pullcred/")
    return value

bom = scrub(bom)
bom.pop("serialNumber", None)
meta = bom.setdefault("metadata", {})
meta["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
props = [p for p in meta.get("properties", []) if p.get("name") != "cdx:reproducible"]
props.append({"name": "cdx:reproducible", "value": "true"})
meta["properties"] = props
# The serial number names this document: derived from its content, so the
# same release gets the same one (a name-based UUID, version 5, RFC 9562
# section 5.5, named by the SHA-256 of the document without it).
body = json.dumps(bom, sort_keys=True, separators=(",", ":")).encode()
name = "sha256:" + hashlib.sha256(body).hexdigest()
bom = {"bomFormat": bom.pop("bomFormat"), "specVersion": bom.pop("specVersion"),
       "serialNumber": uuid.uuid5(uuid.NAMESPACE_URL, name).urn, **bom}
with open(dst, "w", encoding="utf-8") as f:
    json.dump(bom, f, indent=2, ensure_ascii=False)
    f.write("\n")
EOF
touch -d "@$SOURCE_DATE_EPOCH" "$OUT/$SBOM"

# --- checksums ---------------------------------------------------------------
(cd "$OUT" && LC_ALL=C sha256sum "$BIN" "$IMAGE" "$SBOM" >SHA256SUMS)
touch -d "@$SOURCE_DATE_EPOCH" "$OUT/SHA256SUMS"

say "released $VERSION into $OUT"
for f in "$BIN" "$IMAGE" "$SBOM" SHA256SUMS; do
    echo "$OUT/$f"
done
