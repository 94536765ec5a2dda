#!/bin/sh
# provision.sh: install pullcred into a node image.
#
# Packer's shell provisioner runs it on the build instance (--root /); the
# tests run it against a scratch root file system (--root DIR).
#
# Usage:
#   provision.sh --binary PATH --flavor eks-al2023|kubeadm [--root DIR]
#                [--cloud LIST] [--token-audience AUDIENCE]
#
# What it installs (paths inside --root):
#   eks-al2023  /etc/eks/image-credential-provider/pullcred        0755 root:root
#               /etc/pullcred/credential-provider.yaml             0644 root:root
#               /etc/eks/nodeadm.d/50-pullcred.yaml                0644 root:root
#   kubeadm     /usr/local/libexec/kubelet-credential-providers/pullcred   0755 root:root
#               /etc/pullcred/credential-provider.yaml             0644 root:root
#               /etc/systemd/system/kubelet.service.d/20-pullcred.conf     0644 root:root
#
# The config is what the installed binary's `pullcred config generate` writes;
# `pullcred config validate --strict` must pass on it or the build fails.
#
# Promises:
# - idempotent: a file is rewritten only when its content differs, so a second
#   run changes nothing (not even an mtime); directories it did not create are
#   never touched;
# - nothing is written under /run, /var/run or /tmp of the image (also not
#   through a symlinked directory), outside --root, or onto a symlink;
# - no credential, token or cache: pullcred runs here only to generate and
#   validate the config, with its cache off and a throwaway HOME; a pullcred
#   cache found in the image's persistent paths fails the build;
# - nodeadm's own /etc/eks/image-credential-provider/config.json and
#   ecr-credential-provider are left as they are.
#
# Exit status: 0 done (changed or not), 1 failure, 2 usage error. Every
# message goes to stderr, prefixed with "provision.sh:".
set -eu

PROG=provision.sh
CONFIG=/etc/pullcred/credential-provider.yaml

# The matchImages of nodeadm's own ECR-only config, restated from
# awslabs/amazon-eks-ami nodeadm/internal/kubelet/image-credential-provider.template.json.
# On eks-al2023 the generated config must cover every one, so ECR pulls keep
# working when the kubelet reads our config instead of nodeadm's.
NODEADM_ECR_GLOBS='*.dkr.ecr.*.amazonaws.com
*.dkr-ecr.*.on.aws
*.dkr.ecr.*.amazonaws.com.cn
*.dkr-ecr.*.on.amazonwebservices.com.cn
*.dkr.ecr-fips.*.amazonaws.com
*.dkr-ecr-fips.*.on.aws
*.dkr.ecr.*.c2s.ic.gov
*.dkr.ecr.*.sc2s.sgov.gov
*.dkr.ecr.*.cloud.adc-e.uk
*.dkr.ecr.*.amazonaws.eu'

# kubeadm's kubelet drop-in (10-kubeadm.conf) ExecStart, as the kubeadm
# packages and https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/kubelet-integration/
# have it. Used when the image has no 10-kubeadm.conf yet.
# shellcheck disable=SC2016 # the $VARs are for systemd, not for us
KUBEADM_EXECSTART='/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS'

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { say "error: $*"; exit 1; }
usage_error() { say "usage error: $*"; say "run '$PROG --help' for usage"; exit 2; }

usage() {
    sed -n '2,/^set -eu/{/^set -eu/d;s/^# \{0,1\}//;p;}' "$0"
}

ROOT=/
BINARY=
FLAVOR=
CLOUD=aws
AUDIENCE=

while [ $# -gt 0 ]; do
    case $1 in
        --root) [ $# -ge 2 ] || usage_error "--root needs a value"; ROOT=$2; shift 2 ;;
        --root=*) ROOT=${1#*=}; shift ;;
        --binary) [ $# -ge 2 ] || usage_error "--binary needs a value"; BINARY=$2; shift 2 ;;
        --binary=*) BINARY=${1#*=}; shift ;;
        --flavor) [ $# -ge 2 ] || usage_error "--flavor needs a value"; FLAVOR=$2; shift 2 ;;
        --flavor=*) FLAVOR=${1#*=}; shift ;;
        --cloud) [ $# -ge 2 ] || usage_error "--cloud needs a value"; CLOUD=$2; shift 2 ;;
        --cloud=*) CLOUD=${1#*=}; shift ;;
        --token-audience) [ $# -ge 2 ] || usage_error "--token-audience needs a value"; AUDIENCE=$2; shift 2 ;;
        --token-audience=*) AUDIENCE=${1#*=}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage_error "unknown argument: $1" ;;
    esac
done

[ -n "$BINARY" ] || usage_error "--binary PATH is required"
case $FLAVOR in
    eks-al2023)
        BIN_DIR=/etc/eks/image-credential-provider
        DROPIN=/etc/eks/nodeadm.d/50-pullcred.yaml ;;
    kubeadm)
        BIN_DIR=/usr/local/libexec/kubelet-credential-providers
        DROPIN=/etc/systemd/system/kubelet.service.d/20-pullcred.conf ;;
    '') usage_error "--flavor eks-al2023|kubeadm is required" ;;
    *) usage_error "--flavor must be eks-al2023 or kubeadm, not '$FLAVOR'" ;;
esac
case $CLOUD in
    *[!a-z0-9,]*|'') usage_error "--cloud must be a comma-separated list such as aws or aws,gcp, not '$CLOUD'" ;;
esac

[ "$(id -u)" = 0 ] || die "must run as root (the installed files are owned by root)"
[ -f "$BINARY" ] || die "--binary $BINARY: no such file"
[ -d "$ROOT" ] || die "--root $ROOT: no such directory"
ROOT=$(cd "$ROOT" && pwd -P)
# Paths inside the image are written as "$R$path"; R is empty for /.
if [ "$ROOT" = / ]; then R=; else R=$ROOT; fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pullcred-provision.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 1' HUP INT TERM

# Refuse paths the image must never carry: volatile or temporary places (a
# cache there would be baked into the image when --root is not a live system).
guard() {
    case $1 in
        /run|/run/*|/var/run|/var/run/*|/tmp|/tmp/*|/var/tmp|/var/tmp/*)
            die "refusing to write $1: nothing of pullcred's goes under /run, /var/run or /tmp in an image" ;;
    esac
}

# Create the directory $1 (a path inside the image) and any missing parents,
# 0755 root:root. Existing directories are left exactly as they are. The
# result must resolve inside the root, and not into a refused place.
ensure_dir() {
    guard "$1"
    path=
    rest=${1#/}
    while [ -n "$rest" ]; do
        part=${rest%%/*}
        case $rest in */*) rest=${rest#*/} ;; *) rest= ;; esac
        path=$path/$part
        if [ ! -d "$R$path" ]; then
            if [ -e "$R$path" ] || [ -L "$R$path" ]; then
                die "$path exists and is not a directory"
            fi
            mkdir "$R$path"
            chown 0:0 "$R$path"
            chmod 0755 "$R$path"
            say "created directory $path"
        fi
    done
    real=$(cd "$R$1" && pwd -P)
    case $real in
        "$ROOT"|"$ROOT"/*) ;;
        *) [ "$ROOT" = / ] || die "$1 resolves to $real, outside --root $ROOT" ;;
    esac
    if [ "$ROOT" = / ]; then guard "$real"; else guard "${real#"$ROOT"}"; fi
}

# same A B: true when the two files have the same bytes (cmp is in diffutils,
# which a minimal image may lack; sha256sum is in coreutils).
same() {
    if command -v cmp >/dev/null 2>&1; then
        cmp -s "$1" "$2"
    else
        [ "$(sha256sum <"$1")" = "$(sha256sum <"$2")" ]
    fi
}

# meta FILE: "mode uid gid", mode in octal without leading zeros.
meta() { stat -c '%a %u %g' "$1"; }

# put SRC DEST MODE: install SRC as DEST (inside the image), root-owned, mode
# MODE, only when content, mode or owner differ. A changed file is written to
# a temporary name in the same directory and renamed over DEST.
put() {
    src=$1 dest=$2 mode=$3
    ensure_dir "$(dirname "$dest")"
    target=$R$dest
    want="${mode#0} 0 0"
    if [ -L "$target" ]; then
        die "$dest is a symlink; refusing to write through it"
    fi
    if [ -f "$target" ] && same "$src" "$target"; then
        if [ "$(meta "$target")" = "$want" ]; then
            say "unchanged $dest"
        else
            chown 0:0 "$target"
            chmod "$mode" "$target"
            say "fixed owner/mode of $dest"
        fi
        return 0
    fi
    [ ! -e "$target" ] || [ -f "$target" ] || die "$dest exists and is not a regular file"
    tmp=$(mktemp "$target.pullcred-new.XXXXXX")
    if ! { cat "$src" >"$tmp" && chown 0:0 "$tmp" && chmod "$mode" "$tmp" && mv -f "$tmp" "$target"; }; then
        rm -f "$tmp"
        die "could not write $dest"
    fi
    say "installed $dest (mode $mode, root:root)"
}

# A pullcred cache in a persistent path of the image could hold registry
# tokens: fail rather than bake it in. (/run is tmpfs on a live system; in a
# scratch root it is a plain directory, so it is checked too.)
check_no_cache() {
    for c in "$R/root/.cache/pullcred" "$R"/home/*/.cache/pullcred "$R/var/cache/pullcred"; do
        if [ -e "$c" ] || [ -L "$c" ]; then
            die "found a pullcred cache at ${c#"$R"} in the image: it may hold registry tokens; remove it and rebuild"
        fi
    done
    if [ -n "$R" ] && { [ -e "$R/run/pullcred" ] || [ -L "$R/run/pullcred" ]; }; then
        die "found /run/pullcred inside --root $ROOT: a cache must never be part of an image"
    fi
}

# Run the installed binary for the config tools only: no cache, no cloud
# identity, a throwaway HOME, nothing from the caller's environment.
pullcred() {
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$WORK/home" \
        PULLCRED_NO_CACHE=true PULLCRED_CACHE_DIR="$WORK/no-cache" \
        AWS_EC2_METADATA_DISABLED=true \
        "$R$BIN_DIR/pullcred" "$@"
}

check_no_cache
mkdir "$WORK/home"

# 1. The binary.
put "$BINARY" "$BIN_DIR/pullcred" 0755

# 2. The kubelet config: generated by the installed binary, validated by it.
set -- --cloud "$CLOUD"
[ -z "$AUDIENCE" ] || set -- "$@" --token-audience "$AUDIENCE"
pullcred config generate "$@" -o "$WORK/credential-provider.yaml" \
    || die "pullcred config generate $* failed"
if ! pullcred config validate "$WORK/credential-provider.yaml" --bin-dir "$R$BIN_DIR" --strict >"$WORK/validate.out" 2>&1; then
    cat "$WORK/validate.out" >&2
    die "the generated kubelet config does not validate (pullcred config validate --strict)"
fi
if [ "$FLAVOR" = eks-al2023 ]; then
    missing=
    set -f # the globs are data here
    for glob in $NODEADM_ECR_GLOBS; do
        grep -qF "\"$glob\"" "$WORK/credential-provider.yaml" || missing="$missing $glob"
    done
    set +f
    [ -z "$missing" ] || die "the config for --cloud $CLOUD drops ECR images nodeadm's config covers:$missing (include aws in --cloud)"
fi
put "$WORK/credential-provider.yaml" "$CONFIG" 0644

# 3. The kubelet flags.
FLAGS="--image-credential-provider-config=$CONFIG --image-credential-provider-bin-dir=$BIN_DIR"
case $FLAVOR in
eks-al2023)
    cat >"$WORK/dropin" <<EOF
# Installed by pullcred's packer/provision.sh; regenerate instead of editing.
# nodeadm-run.service merges every NodeConfig in /etc/eks/nodeadm.d/ with the
# user data's and appends kubelet.flags after the flags nodeadm sets itself, so
# these win over its --image-credential-provider-config (config.json, which
# nodeadm rewrites at every boot and which stays untouched as the fallback).
apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  kubelet:
    flags:
      - --image-credential-provider-config=$CONFIG
      - --image-credential-provider-bin-dir=$BIN_DIR
EOF
    for unit in "$R/etc/systemd/system/nodeadm-run.service" "$R/usr/lib/systemd/system/nodeadm-run.service"; do
        if [ -f "$unit" ] && ! grep -q 'file:///etc/eks/nodeadm.d' "$unit"; then
            say "warning: ${unit#"$R"} does not read /etc/eks/nodeadm.d/: this AMI's nodeadm ignores the drop-in; put the NodeConfig from packer/README.md into the user data instead"
        fi
    done
    ;;
kubeadm)
    # kubeadm's 10-kubeadm.conf ExecStart, from the image when it has one.
    execstart=
    for d in "$R/usr/lib/systemd/system/kubelet.service.d" "$R/lib/systemd/system/kubelet.service.d" "$R/etc/systemd/system/kubelet.service.d"; do
        if [ -f "$d/10-kubeadm.conf" ]; then
            line=$(sed -n 's/^ExecStart=\(..*\)$/\1/p' "$d/10-kubeadm.conf" | tail -n 1)
            [ -z "$line" ] || execstart=$line
        fi
    done
    [ -n "$execstart" ] || execstart=$KUBEADM_EXECSTART
    case $execstart in
        *PULLCRED_KUBELET_ARGS*) die "10-kubeadm.conf already mentions PULLCRED_KUBELET_ARGS; refusing to guess" ;;
    esac
    cat >"$WORK/dropin" <<EOF
# Installed by pullcred's packer/provision.sh; regenerate instead of editing.
# Adds the image credential provider flags to the kubelet without touching
# KUBELET_EXTRA_ARGS (/etc/default/kubelet) or kubeadm's KUBELET_KUBEADM_ARGS:
# kubeadm's ExecStart again, with our own variable appended (last flag wins).
[Service]
Environment="PULLCRED_KUBELET_ARGS=$FLAGS"
ExecStart=
ExecStart=$execstart \$PULLCRED_KUBELET_ARGS
EOF
    ;;
esac
put "$WORK/dropin" "$DROPIN" 0644

check_no_cache
say "done: pullcred for $FLAVOR in ${ROOT}"
