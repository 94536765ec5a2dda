#!/bin/sh
# build-image.sh: the installer's container image, as an OCI image layout.
#
# Usage:
#   build-image.sh --binary PATH --out DIR [--tag TAG] [--arch amd64|arm64]
#   build-image.sh --talos-extension DIR --out DIR [--tag TAG] [--arch ...]
#
# --binary: one layer holding only /pullcred (0755 root:root), the static
#   binary (release/static.sh), and nothing else: no base image, no shell,
#   no libc. Entrypoint ["/pullcred", "install"]; the DaemonSet gives the
#   flags. `pullcred install` copies that same binary onto the node.
# --talos-extension: one layer holding DIR as it is (the manifest.yaml and
#   rootfs/ that `pullcred install --profile talos --output D` writes to
#   D/pullcred-extension), a Talos system extension image.
#
# The layer is reproducible: sorted names, owner 0:0, mtime 0, gzip -n.
# Push it with skopeo: skopeo copy oci:DIR:TAG docker://REGISTRY/NAME:TAG
#
# Exit status: 0 built, 1 failure, 2 usage error; messages on stderr.
set -eu
PROG=build-image.sh
say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { say "error: $*"; exit 1; }
usage_error() { say "usage error: $*"; exit 2; }

BINARY= EXT= OUT= TAG=latest ARCH=
while [ $# -gt 0 ]; do
    case $1 in
        --binary) [ $# -ge 2 ] || usage_error "--binary needs a value"; BINARY=$2; shift 2 ;;
        --talos-extension) [ $# -ge 2 ] || usage_error "--talos-extension needs a value"; EXT=$2; shift 2 ;;
        --out) [ $# -ge 2 ] || usage_error "--out needs a value"; OUT=$2; shift 2 ;;
        --tag) [ $# -ge 2 ] || usage_error "--tag needs a value"; TAG=$2; shift 2 ;;
        --arch) [ $# -ge 2 ] || usage_error "--arch needs a value"; ARCH=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -eu/{/^set -eu/d;s/^# \{0,1\}//;p;}' "$0"; exit 0 ;;
        *) usage_error "unknown argument: $1" ;;
    esac
done
[ -n "$OUT" ] || usage_error "--out DIR is required"
[ -n "$BINARY" ] || [ -n "$EXT" ] || usage_error "--binary PATH or --talos-extension DIR is required"
[ -z "$BINARY" ] || [ -z "$EXT" ] || usage_error "--binary and --talos-extension are exclusive"
case $TAG in *[!A-Za-z0-9_.-]*|'') usage_error "--tag: letters, digits, _ . - only" ;; esac
if [ -z "$ARCH" ]; then
    case $(uname -m) in x86_64) ARCH=amd64 ;; aarch64|arm64) ARCH=arm64 ;; *) ARCH=$(uname -m) ;; esac
fi
[ ! -e "$OUT" ] || [ -d "$OUT" ] || die "--out $OUT exists and is not a directory"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pullcred-image.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/root"
if [ -n "$BINARY" ]; then
    [ -f "$BINARY" ] || die "--binary $BINARY: no such file"
    cp "$BINARY" "$WORK/root/pullcred"
    chmod 0755 "$WORK/root/pullcred"
    if command -v file >/dev/null 2>&1 && file -L "$BINARY" | grep -q 'dynamically linked'; then
        say "warning: $BINARY is dynamically linked: the image has no libc (build it with release/static.sh)"
    fi
    ENTRY='"Entrypoint":["/pullcred","install"],'
else
    [ -f "$EXT/manifest.yaml" ] && [ -d "$EXT/rootfs" ] || die "--talos-extension $EXT: needs manifest.yaml and rootfs/"
    cp -a "$EXT/." "$WORK/root/"
    ENTRY=
fi

tar --create --file "$WORK/layer.tar" --directory "$WORK/root" --sort=name \
    --owner=0 --group=0 --numeric-owner --mtime=@0 --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime .
gzip -n -9 <"$WORK/layer.tar" >"$WORK/layer.tar.gz"

mkdir -p "$OUT/blobs/sha256"
blob() { # FILE -> prints digest hex, copies into the layout
    h=$(sha256sum <"$1" | cut -d' ' -f1)
    cp "$1" "$OUT/blobs/sha256/$h"
    echo "$h"
}
size() { wc -c <"$1" | tr -d ' '; }
diff_id=$(sha256sum <"$WORK/layer.tar" | cut -d' ' -f1)
layer=$(blob "$WORK/layer.tar.gz")
printf '{"architecture":"%s","os":"linux","config":{%s"User":"0:0","WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$ARCH" "$ENTRY" "$diff_id" >"$WORK/config.json"
config=$(blob "$WORK/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$config" "$(size "$WORK/config.json")" "$layer" "$(size "$WORK/layer.tar.gz")" >"$WORK/manifest.json"
manifest=$(blob "$WORK/manifest.json")
printf '{"imageLayoutVersion":"1.0.0"}' >"$OUT/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest" "$(size "$WORK/manifest.json")" "$TAG" >"$OUT/index.json"
say "built oci:$OUT:$TAG (manifest sha256:$manifest, $ARCH)"
