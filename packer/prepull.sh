#!/bin/sh
# prepull.sh: pre-pull images into a node image's containerd, through CRI and
# with the credentials the kubelet would use (`pullcred prepull`).
#
# Packer's shell provisioner runs it on the build instance, after
# provision.sh, when the template's `prepull_images` list is not empty.
#
# Usage:
#   prepull.sh --flavor eks-al2023|kubeadm [--cri-socket PATH] [--timeout DURATION]
#              [--config PATH] [--bin-dir DIR] [--] [IMAGE]...
#
# - No IMAGE: nothing to do, exit 0 (the step is optional).
# - The kubelet config and bin dir are the ones provision.sh installed for the
#   flavor (--config and --bin-dir override them).
# - containerd must serve CRI on --cri-socket (default
#   /run/containerd/containerd.sock); when the socket is missing and systemd
#   knows containerd.service, the service is started and waited for (60s).
# - The plugin runs as on a node: same config, args and env, with the build
#   instance's identity (on AWS: its instance profile must be allowed to pull),
#   and with pullcred's cache off (PULLCRED_NO_CACHE), so no token is left in
#   the image.
# - Images land in containerd's k8s.io namespace under its root
#   (/var/lib/containerd), where the node's kubelet finds them.
#
# Exit status: 0 every image pulled (or none asked for), 1 failure, 2 usage
# error. `pullcred prepull` prints `pulled IMAGE as IMAGE_REF` per image on
# stdout; every other message goes to stderr.
set -eu

PROG=prepull.sh

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { say "error: $*"; exit 1; }
usage_error() { say "usage error: $*"; say "run '$PROG --help' for usage"; exit 2; }

usage() {
    sed -n '2,/^set -eu/{/^set -eu/d;s/^# \{0,1\}//;p;}' "$0"
}

FLAVOR=
SOCKET=/run/containerd/containerd.sock
TIMEOUT=20m
CONFIG=/etc/pullcred/credential-provider.yaml
BIN_DIR=

while [ $# -gt 0 ]; do
    case $1 in
        --flavor) [ $# -ge 2 ] || usage_error "--flavor needs a value"; FLAVOR=$2; shift 2 ;;
        --flavor=*) FLAVOR=${1#*=}; shift ;;
        --cri-socket) [ $# -ge 2 ] || usage_error "--cri-socket needs a value"; SOCKET=$2; shift 2 ;;
        --cri-socket=*) SOCKET=${1#*=}; shift ;;
        --timeout) [ $# -ge 2 ] || usage_error "--timeout needs a value"; TIMEOUT=$2; shift 2 ;;
        --timeout=*) TIMEOUT=${1#*=}; shift ;;
        --config) [ $# -ge 2 ] || usage_error "--config needs a value"; CONFIG=$2; shift 2 ;;
        --config=*) CONFIG=${1#*=}; shift ;;
        --bin-dir) [ $# -ge 2 ] || usage_error "--bin-dir needs a value"; BIN_DIR=$2; shift 2 ;;
        --bin-dir=*) BIN_DIR=${1#*=}; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        -*) usage_error "unknown argument: $1" ;;
        *) break ;;
    esac
done

case $FLAVOR in
    eks-al2023) : "${BIN_DIR:=/etc/eks/image-credential-provider}" ;;
    kubeadm) : "${BIN_DIR:=/usr/local/libexec/kubelet-credential-providers}" ;;
    '') usage_error "--flavor eks-al2023|kubeadm is required" ;;
    *) usage_error "--flavor must be eks-al2023 or kubeadm, not '$FLAVOR'" ;;
esac

if [ $# -eq 0 ]; then
    say "no images to pre-pull; skipped"
    exit 0
fi

[ "$(id -u)" = 0 ] || die "must run as root (containerd's socket is root's)"
[ -x "$BIN_DIR/pullcred" ] || die "$BIN_DIR/pullcred is missing: run provision.sh first"
[ -f "$CONFIG" ] || die "$CONFIG is missing: run provision.sh first"

if [ ! -S "$SOCKET" ]; then
    if command -v systemctl >/dev/null 2>&1 && systemctl cat containerd.service >/dev/null 2>&1; then
        say "starting containerd.service (no socket at $SOCKET)"
        systemctl start containerd.service || die "systemctl start containerd.service failed"
        waited=0
        while [ ! -S "$SOCKET" ]; do
            [ "$waited" -lt 60 ] || die "containerd.service started but $SOCKET did not appear within 60s"
            sleep 1
            waited=$((waited + 1))
        done
    else
        die "no CRI socket at $SOCKET and no containerd.service to start: install containerd before this step"
    fi
fi

say "pre-pulling $# image(s) through $SOCKET"
PULLCRED_NO_CACHE=true
export PULLCRED_NO_CACHE
exec "$BIN_DIR/pullcred" prepull --cri-socket "$SOCKET" --config "$CONFIG" \
    --bin-dir "$BIN_DIR" --timeout "$TIMEOUT" -- "$@"
