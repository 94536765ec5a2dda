"""installer/: `pullcred install` against fake node roots, the chart and
manifests, the profile documents, and the image build.

Each test builds a small fake host root (as tests/test_packer.py's fallback
root) holding what the distribution's kubelet setup has (kubeadm's
10-kubeadm.conf, AL2023's kubelet.service and nodeadm files, k3s/RKE2 unit
files and config), plus a shell and a fake `/usr/bin/nsenter` that records
its arguments in /var/log/pullcred-test-restarts: the installer's restart
path (a child that chroots into the host root and execs the host's
`nsenter -t 1 ... systemctl ...`) runs for real up to that fake. The
kubelet's /healthz is a loopback stand-in whose answer each test picks.

Then: files, modes and owners, `pullcred config validate --strict
--bin-dir` on the installed config, the restart commands, a second run
changing nothing (every entry's path, mode, owner, sha256, mtime, ctime)
and restarting nothing; refusal to clobber another credential provider
config unless --merge, then the merge; rollback when the kubelet does not
come back; --uninstall putting the node back. The tests run as root
(chown to root, chroot), as CI does.
"""

import hashlib
import os
import re
import shutil
import stat
import subprocess
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

import helm_lite
from conftest import BIN, SECRET_KEY

REPO = Path(__file__).resolve().parent.parent
INSTALLER = REPO / "installer"
CONFIG = "/etc/pullcred/credential-provider.yaml"
STATE = "/etc/pullcred/install-state.json"
RESTARTS = "/var/log/pullcred-test-restarts"
NSENTER = "--target 1 --mount --uts --ipc --net --pid --"

LAYOUT = {
    "kubeadm": {"bin_dir": "/usr/local/libexec/kubelet-credential-providers", "config": CONFIG,
                "flags": ["/etc/systemd/system/kubelet.service.d/20-pullcred.conf"], "unit": "kubelet"},
    "eks-al2023": {"bin_dir": "/etc/eks/image-credential-provider", "config": CONFIG,
                   "flags": ["/etc/systemd/system/kubelet.service.d/20-pullcred.conf",
                             "/etc/eks/nodeadm.d/50-pullcred.yaml"], "unit": "kubelet"},
    "k3s": {"bin_dir": "/var/lib/rancher/credentialprovider/bin",
            "config": "/var/lib/rancher/credentialprovider/config.yaml", "flags": [], "unit": "k3s-agent"},
    "rke2": {"bin_dir": "/var/lib/rancher/credentialprovider/bin",
             "config": "/var/lib/rancher/credentialprovider/config.yaml", "flags": [], "unit": "rke2-server"},
}

KUBEADM_EXECSTART = (
    "/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS"
)
# awslabs/amazon-eks-ami templates/al2023/runtime/rootfs/etc/systemd/system/kubelet.service
AL2023_KUBELET_SERVICE = """[Unit]
Description=Kubernetes Kubelet
After=containerd.service
Requires=containerd.service

[Service]
Slice=runtime.slice
EnvironmentFile=/etc/eks/kubelet/environment
ExecStartPre=/sbin/iptables -P FORWARD ACCEPT -w 5
ExecStart=/usr/bin/kubelet \\
    --config /etc/kubernetes/kubelet/config.json \\
    --kubeconfig /var/lib/kubelet/kubeconfig \\
    --container-runtime-endpoint unix:///run/containerd/containerd.sock \\
    $NODEADM_KUBELET_ARGS\\
    $KUBELET_EXTRA_ARGS

Restart=on-failure
"""
AL2023_EXECSTART = ("/usr/bin/kubelet --config /etc/kubernetes/kubelet/config.json --kubeconfig "
                    "/var/lib/kubelet/kubeconfig --container-runtime-endpoint unix:///run/containerd/containerd.sock "
                    "$NODEADM_KUBELET_ARGS $KUBELET_EXTRA_ARGS")
NODEADM_ENVIRONMENT = ('NODEADM_KUBELET_ARGS="--node-ip=10.0.0.1 --image-credential-provider-bin-dir='
                       '/etc/eks/image-credential-provider --image-credential-provider-config='
                       '/etc/eks/image-credential-provider/config.json"\n')


def inside(root, path):
    return Path(str(root) + path)


def write(root, path, text, mode=0o644):
    p = inside(root, path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    p.chmod(mode)
    return p


# ------------------------------------------------------------------ fixtures


class Healthz:
    """The kubelet's /healthz, a loopback stand-in: answers `ok` (200) or a
    failure (500), as the test sets `self.ok`."""

    def __init__(self):
        self.ok = True
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"ok" if outer.ok else b"[-]syncloop failed"
                self.send_response(200 if outer.ok else 500)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/healthz"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def healthz():
    h = Healthz()
    yield h
    h.close()


def shell_into(root):
    """/bin/sh and its shared libraries, so the fake nsenter runs in a chroot."""
    sh = os.path.realpath("/bin/sh")
    inside(root, "/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(sh, inside(root, "/bin/sh"))
    out = subprocess.run(["ldd", sh], capture_output=True, text=True).stdout
    for lib in re.findall(r"(/\S+)", out):
        dest = inside(root, lib)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(lib), dest)


@pytest.fixture
def root(tmp_path):
    assert os.geteuid() == 0, "the installer tests run as root (chown, chroot)"
    r = tmp_path / "host"
    for d in ["etc/systemd/system", "usr/bin", "usr/lib/systemd/system", "var/lib", "var/log", "run", "tmp", "root"]:
        (r / d).mkdir(parents=True, exist_ok=True)
    shell_into(r)
    write(r, "/usr/bin/nsenter",
          f'#!/bin/sh\necho "$*" >> {RESTARTS}\ncase "$*" in *" restart "*) [ ! -e /etc/fail-restart ] || exit 3 ;; esac\n', 0o755)
    yield r
    subprocess.run(["rm", "-rf", str(r)])


def like(root, profile):
    """What a node of the profile already has."""
    if profile == "kubeadm":
        write(root, "/usr/lib/systemd/system/kubelet.service", "[Service]\nExecStart=/usr/bin/kubelet\n")
        write(root, "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf",
              '[Service]\nEnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env\nExecStart=\n'
              f"ExecStart={KUBEADM_EXECSTART}\n")
        write(root, "/var/lib/kubelet/kubeadm-flags.env", 'KUBELET_KUBEADM_ARGS="--pod-infra-container-image=x"\n')
        write(root, "/etc/default/kubelet", 'KUBELET_EXTRA_ARGS="--node-labels=team=blue"\n')
    elif profile == "eks-al2023":
        write(root, "/etc/systemd/system/kubelet.service", AL2023_KUBELET_SERVICE)
        write(root, "/etc/eks/kubelet/environment", NODEADM_ENVIRONMENT)
        write(root, "/etc/eks/image-credential-provider/ecr-credential-provider", "#!/bin/sh\nexit 1\n", 0o755)
        write(root, "/etc/eks/image-credential-provider/config.json",
              '{"apiVersion":"kubelet.config.k8s.io/v1","kind":"CredentialProviderConfig","providers":[{"name":'
              '"ecr-credential-provider","matchImages":["*.dkr.ecr.*.amazonaws.com"],"defaultCacheDuration":"12h",'
              '"apiVersion":"credentialprovider.kubelet.k8s.io/v1"}]}\n')
    elif profile == "k3s":
        write(root, "/etc/systemd/system/k3s-agent.service",
              "[Service]\nExecStart=/usr/local/bin/k3s agent\n")
        write(root, "/etc/rancher/k3s/config.yaml", "node-label:\n  - team=blue\n")
    elif profile == "rke2":
        write(root, "/usr/local/lib/systemd/system/rke2-server.service",
              "[Service]\nExecStart=/usr/local/bin/rke2 server\n")
        write(root, "/etc/rancher/rke2/config.yaml", "write-kubeconfig-mode: \"0644\"\n")


def install(root, profile, *args, healthz=None, cloud="aws", env=None):
    e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/root",
         "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    e.update(env or {})
    argv = [str(BIN), "install", "--host-root", str(root), "--profile", profile]
    if cloud:
        argv += ["--cloud", cloud]
    argv += ["--kubelet-healthz", healthz.url if healthz else "none", "--health-timeout", "3s", *args]
    r = subprocess.run(argv, capture_output=True, text=True, env=e, timeout=120)
    assert SECRET_KEY not in r.stdout + r.stderr
    assert "panicked" not in r.stderr, r.stderr
    return r


def restarts(root):
    p = inside(root, RESTARTS)
    return p.read_text().splitlines() if p.exists() else []


def manifest(root):
    """Every entry under root: path -> (type, mode, uid, gid, sha256|link, mtime_ns, ctime_ns)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    what = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                what = "-> " + os.readlink(p)
            else:
                what = ""
            out["/" + os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                                                   st.st_gid, what, st.st_mtime_ns, st.st_ctime_ns)
    return out


def files_only(m):
    return {p: v[:5] for p, v in m.items() if v[0] != stat.S_IFDIR}


def validate(root, config, bin_dir):
    return subprocess.run([str(BIN), "config", "validate", str(inside(root, config)), "--bin-dir",
                           str(inside(root, bin_dir)), "--strict"], capture_output=True, text=True)


def generated(*args):
    return subprocess.run([str(BIN), "config", "generate", *args], capture_output=True, check=True, text=True).stdout


def fails(r, *needles, code=1):
    assert r.returncode == code, (r.returncode, r.stderr)
    assert r.stdout == ""
    for n in needles:
        assert n in r.stderr, r.stderr


# -------------------------------------------------------------- install


# Given a node of each profile, when the installer runs, then exactly the
# expected files appear (root-owned, right modes), the config validates
# with the installed binary, the kubelet is restarted once through
# nsenter and answers /healthz; when it runs again nothing changes at all
# and nothing is restarted.
@pytest.mark.parametrize("profile", ["kubeadm", "eks-al2023", "k3s", "rke2"])
def test_install_then_nothing(root, profile, healthz):
    like(root, profile)
    lay = LAYOUT[profile]
    before = manifest(root)
    first = install(root, profile, healthz=healthz)
    assert first.returncode == 0, first.stderr
    assert first.stdout == ""
    after = manifest(root)
    files = {f"{lay['bin_dir']}/pullcred": 0o755, lay["config"]: 0o644, STATE: 0o600,
             **{f: 0o644 for f in lay["flags"]}}
    new_files = {p for p in files_only(after) if p not in before}
    assert new_files == set(files) | {RESTARTS}, new_files
    changed = {p for p in files_only(before) if files_only(after).get(p) != files_only(before)[p]}
    assert not changed, changed  # nothing of the node's own was edited
    for p, mode in files.items():
        st = os.lstat(inside(root, p))
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, 0, 0), p
    assert inside(root, f"{lay['bin_dir']}/pullcred").read_bytes() == BIN.read_bytes()
    assert inside(root, lay["config"]).read_text() == generated("--cloud", "aws")
    v = validate(root, lay["config"], lay["bin_dir"])
    assert v.returncode == 0, v.stdout + v.stderr
    expect = ([f"{NSENTER} systemctl daemon-reload"] if lay["flags"] else []) + [
        f"{NSENTER} systemctl restart {lay['unit']}"]
    assert restarts(root) == expect
    assert "the kubelet answers /healthz ok" in first.stderr

    second = install(root, profile, healthz=healthz)
    assert second.returncode == 0, second.stderr
    assert manifest(root) == manifest(root) and manifest(root) == {
        **after, RESTARTS: manifest(root)[RESTARTS]}
    assert files_only(manifest(root)) == files_only(after), "the second run changed the node"
    assert restarts(root) == expect, "the second run restarted the kubelet"
    assert "no restart" in second.stderr


def test_kubeadm_dropin_keeps_the_node_flags(root):
    like(root, "kubeadm")
    assert install(root, "kubeadm").returncode == 0
    text = inside(root, LAYOUT["kubeadm"]["flags"][0]).read_text()
    starts = re.findall(r"^ExecStart=(.*)$", text, re.M)
    assert starts == ["", f"{KUBEADM_EXECSTART} $PULLCRED_KUBELET_ARGS"]
    env = re.search(r'^Environment="PULLCRED_KUBELET_ARGS=([^"]*)"$', text, re.M).group(1).split()
    assert env == [f"--image-credential-provider-config={CONFIG}",
                   f"--image-credential-provider-bin-dir={LAYOUT['kubeadm']['bin_dir']}"]
    assert inside(root, "/etc/default/kubelet").read_text() == 'KUBELET_EXTRA_ARGS="--node-labels=team=blue"\n'


def test_eks_keeps_nodeadm_and_appends_to_its_exec_start(root):
    like(root, "eks-al2023")
    r = install(root, "eks-al2023")
    assert r.returncode == 0, r.stderr
    dropin = inside(root, LAYOUT["eks-al2023"]["flags"][0]).read_text()
    assert re.findall(r"^ExecStart=(.*)$", dropin, re.M) == ["", f"{AL2023_EXECSTART} $PULLCRED_KUBELET_ARGS"]
    doc = yaml.safe_load(inside(root, "/etc/eks/nodeadm.d/50-pullcred.yaml").read_text())
    assert doc["apiVersion"] == "node.eks.aws/v1alpha1" and doc["kind"] == "NodeConfig"
    assert doc["spec"]["kubelet"]["flags"] == [f"--image-credential-provider-config={CONFIG}",
                                               "--image-credential-provider-bin-dir=/etc/eks/image-credential-provider"]
    # nodeadm's files are untouched
    assert inside(root, "/etc/eks/kubelet/environment").read_text() == NODEADM_ENVIRONMENT
    assert "ecr-credential-provider" in inside(root, "/etc/eks/image-credential-provider/config.json").read_text()
    # a config that drops ECR is refused: nodeadm's config covered it
    fails(install(root, "eks-al2023", cloud="gcp"), "drops ECR images nodeadm's config covers", "include aws")


def test_eks_merge_keeps_ecr_credential_provider_first(root):
    like(root, "eks-al2023")
    r = install(root, "eks-al2023", "--merge", cloud="aws,gcp")
    assert r.returncode == 0, r.stderr
    providers = yaml.safe_load(inside(root, CONFIG).read_text())["providers"]
    assert [p["name"] for p in providers] == ["ecr-credential-provider", "pullcred"]
    assert "matchImages overlap" in r.stderr and '"*.dkr.ecr.*.amazonaws.com"' in r.stderr


def test_binary_update_alone_restarts_nothing(root, tmp_path):
    like(root, "kubeadm")
    assert install(root, "kubeadm").returncode == 0
    newer = tmp_path / "pullcred-new"
    newer.write_bytes(BIN.read_bytes() + b"\0new-build")
    newer.chmod(0o700)
    r = install(root, "kubeadm", "--binary", str(newer))
    assert r.returncode == 0, r.stderr
    assert inside(root, f"{LAYOUT['kubeadm']['bin_dir']}/pullcred").read_bytes() == newer.read_bytes()
    assert len(restarts(root)) == 2  # the first install's reload and restart only
    assert "no restart" in r.stderr


# ------------------------------------------------------------- clobbering


def foreign_kubeadm(root, globs=("registry.example.com",)):
    like(root, "kubeadm")
    write(root, "/var/lib/kubelet/kubeadm-flags.env",
          'KUBELET_KUBEADM_ARGS="--image-credential-provider-config=/etc/kubernetes/cp.yaml '
          '--image-credential-provider-bin-dir=/usr/local/bin/cp"\n')
    write(root, "/usr/local/bin/cp/other-provider", "#!/bin/sh\nexit 1\n", 0o755)
    text = ("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n"
            "  - name: other-provider\n    matchImages:\n"
            + "".join(f'      - "{g}"\n' for g in globs)
            + '    defaultCacheDuration: "10m"\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n')
    write(root, "/etc/kubernetes/cp.yaml", text)
    return text


def test_refuses_to_clobber_then_merges(root):
    # Given a kubeadm node whose kubelet already has a credential provider config
    original = foreign_kubeadm(root, globs=("registry.example.com", "*.dkr.ecr.*.amazonaws.com"))
    before = manifest(root)
    # When the installer runs without --merge: refused, nothing written
    fails(install(root, "kubeadm"), "already has --image-credential-provider-config=/etc/kubernetes/cp.yaml",
          "/var/lib/kubelet/kubeadm-flags.env", "--merge")
    assert manifest(root) == before and restarts(root) == []
    # When it runs with --merge
    r = install(root, "kubeadm", "--merge")
    assert r.returncode == 0, r.stderr
    # Then its providers come first, pullcred's after, in pullcred's file,
    # with the node's bin dir; the other file is untouched
    providers = yaml.safe_load(inside(root, CONFIG).read_text())["providers"]
    assert [p["name"] for p in providers] == ["other-provider", "pullcred"]
    assert inside(root, "/etc/kubernetes/cp.yaml").read_text() == original
    assert inside(root, "/usr/local/bin/cp/pullcred").read_bytes() == BIN.read_bytes()
    dropin = inside(root, LAYOUT["kubeadm"]["flags"][0]).read_text()
    assert "--image-credential-provider-bin-dir=/usr/local/bin/cp\"" in dropin
    assert "matchImages overlap" in r.stderr and "other-provider" in r.stderr
    v = validate(root, CONFIG, "/usr/local/bin/cp")
    assert v.returncode == 0, v.stdout + v.stderr
    # and a second run changes nothing
    after = files_only(manifest(root))
    assert install(root, "kubeadm", "--merge").returncode == 0
    assert files_only(manifest(root)) == after


def test_merge_refuses_a_provider_without_its_binary(root):
    foreign_kubeadm(root)
    os.remove(inside(root, "/usr/local/bin/cp/other-provider"))
    fails(install(root, "kubeadm", "--merge"), 'provider "other-provider"', "/usr/local/bin/cp/other-provider")
    assert not inside(root, CONFIG).exists()


def test_k3s_merge_keeps_the_original_and_uninstall_puts_it_back(root, healthz):
    like(root, "k3s")
    lay = LAYOUT["k3s"]
    original = ("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n"
                "  - name: ecr-credential-provider\n    matchImages: [\"*.dkr.ecr.*.amazonaws.com\"]\n"
                "    defaultCacheDuration: \"12h\"\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n")
    write(root, lay["config"], original)
    write(root, f"{lay['bin_dir']}/ecr-credential-provider", "#!/bin/sh\nexit 1\n", 0o755)
    before = files_only(manifest(root))
    fails(install(root, "k3s"), f"{lay['config']} already exists", "--merge")
    r = install(root, "k3s", "--merge", healthz=healthz, cloud="aws,gcp")
    assert r.returncode == 0, r.stderr
    assert inside(root, lay["config"] + ".pullcred-prev").read_text() == original
    providers = yaml.safe_load(inside(root, lay["config"]).read_text())["providers"]
    assert [p["name"] for p in providers] == ["ecr-credential-provider", "pullcred"]
    # again: merged with the original (not with itself), nothing changes
    after = files_only(manifest(root))
    assert install(root, "k3s", "--merge", healthz=healthz, cloud="aws,gcp").returncode == 0
    assert files_only(manifest(root)) == after
    # without --merge now: refused, the original would be lost
    fails(install(root, "k3s", cloud="aws,gcp"), "was merged with the node's own config")
    # --uninstall: the node as it was (plus the restart log), restarted
    u = install(root, "k3s", "--uninstall", cloud=None, healthz=healthz)
    assert u.returncode == 0, u.stderr
    now = files_only(manifest(root))
    now.pop(RESTARTS)
    assert now == before
    assert restarts(root)[-1] == f"{NSENTER} systemctl restart k3s-agent"
    assert install(root, "k3s", "--uninstall", cloud=None).stderr.count("nothing to uninstall") == 1


def test_k3s_custom_paths_from_its_config(root):
    like(root, "k3s")
    write(root, "/etc/rancher/k3s/config.yaml.d/10-cp.yaml",
          'kubelet-arg:\n  - "image-credential-provider-config=/etc/k3s-cp/config.yaml"\n'
          "image-credential-provider-bin-dir: /opt/k3s-cp/bin\n")
    r = install(root, "k3s")
    assert r.returncode == 0, r.stderr
    assert inside(root, "/etc/k3s-cp/config.yaml").is_file()
    assert inside(root, "/opt/k3s-cp/bin/pullcred").is_file()
    assert not inside(root, LAYOUT["k3s"]["config"]).exists()


def test_k3s_server_and_agent_need_a_choice(root):
    like(root, "k3s")
    write(root, "/etc/systemd/system/k3s.service", "[Service]\nExecStart=/usr/local/bin/k3s server\n")
    fails(install(root, "k3s"), "both k3s and k3s-agent are installed", "--service")
    r = install(root, "k3s", "--service", "k3s")
    assert r.returncode == 0, r.stderr
    assert restarts(root) == [f"{NSENTER} systemctl restart k3s"]


# --------------------------------------------------------------- rollback


@pytest.mark.parametrize("how", ["healthz", "restart"])
def test_a_kubelet_that_does_not_come_back_is_rolled_back(root, healthz, how):
    # Given a kubeadm node, when the kubelet does not come back after the
    # restart (its /healthz fails, or systemctl fails)
    like(root, "kubeadm")
    before = files_only(manifest(root))
    if how == "healthz":
        healthz.ok = False
    else:
        write(root, "/etc/fail-restart", "")
        before = files_only(manifest(root))
    r = install(root, "kubeadm", healthz=healthz)
    # Then it exits 1, every file is as before, and the kubelet is restarted
    # again with the former files
    fails(r, "the former files are back")
    now = files_only(manifest(root))
    now.pop(RESTARTS, None)
    assert now == before
    log = restarts(root)
    assert log[:2] == [f"{NSENTER} systemctl daemon-reload", f"{NSENTER} systemctl restart kubelet"]
    assert log[-2:] == log[:2] and len(log) == 4


def test_uninstall_of_a_fresh_install_removes_everything(root):
    like(root, "kubeadm")
    before = files_only(manifest(root))
    assert install(root, "kubeadm").returncode == 0
    u = install(root, "kubeadm", "--uninstall", cloud=None)
    assert u.returncode == 0, u.stderr
    now = files_only(manifest(root))
    now.pop(RESTARTS)
    assert now == before
    assert restarts(root)[-2:] == [f"{NSENTER} systemctl daemon-reload", f"{NSENTER} systemctl restart kubelet"]


def test_replaced_foreign_files_are_kept(root):
    # a node provisioned by packer/provision.sh (or by hand) already has the drop-in
    like(root, "kubeadm")
    write(root, "/etc/systemd/system/kubelet.service.d/20-pullcred.conf", "[Service]\n# hand-made\n")
    assert install(root, "kubeadm").returncode == 0
    assert inside(root, "/etc/systemd/system/kubelet.service.d/20-pullcred.conf.pullcred-prev").read_text() == \
        "[Service]\n# hand-made\n"
    assert install(root, "kubeadm", "--uninstall", cloud=None).returncode == 0
    assert inside(root, "/etc/systemd/system/kubelet.service.d/20-pullcred.conf").read_text() == \
        "[Service]\n# hand-made\n"


# --------------------------------------------------------------- refusals


def test_refuses_to_write_under_run_through_a_symlink(root):
    like(root, "kubeadm")
    inside(root, "/run/elsewhere").mkdir(parents=True)
    inside(root, "/etc/pullcred").symlink_to("/run/elsewhere")
    fails(install(root, "kubeadm"), "refusing to write")
    assert list(inside(root, "/run/elsewhere").iterdir()) == []
    assert not inside(root, LAYOUT["kubeadm"]["bin_dir"] + "/pullcred").exists()  # rolled back


def test_an_absolute_symlink_stays_inside_the_root(root, tmp_path):
    # /etc/pullcred -> /opt/pullcred on the host: written at <root>/opt/pullcred, not the test's /opt
    like(root, "kubeadm")
    inside(root, "/opt/pullcred").mkdir(parents=True)
    inside(root, "/etc/pullcred").symlink_to("/opt/pullcred")
    assert install(root, "kubeadm", "--no-restart").returncode == 0
    assert inside(root, "/opt/pullcred/credential-provider.yaml").is_file()


def test_refuses_to_write_onto_a_symlink(root):
    like(root, "kubeadm")
    write(root, "/etc/victim", "keep me\n")
    inside(root, "/etc/pullcred").mkdir()
    inside(root, CONFIG).symlink_to("/etc/victim")
    fails(install(root, "kubeadm"), "is a symlink")
    assert inside(root, "/etc/victim").read_text() == "keep me\n"


def test_a_drop_in_after_ours_that_sets_exec_start_is_refused(root):
    like(root, "kubeadm")
    write(root, "/etc/systemd/system/kubelet.service.d/90-custom.conf", "[Service]\nExecStart=\nExecStart=/x\n")
    fails(install(root, "kubeadm"), "90-custom.conf sets ExecStart after")


def test_dry_run_changes_nothing(root):
    like(root, "k3s")
    before = manifest(root)
    r = install(root, "k3s", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert manifest(root) == before
    assert f"create {LAYOUT['k3s']['config']}" in r.stdout and "restart k3s-agent" in r.stdout


@pytest.mark.parametrize("args", [
    ["--profile", "kubeadm", "--cloud", "aws"],  # no --host-root
    ["--host-root", "/nonexistent-root", "--profile", "kubeadm", "--cloud", "aws"],
    ["--host-root", "/", "--profile", "gentoo", "--cloud", "aws"],
    ["--host-root", "/", "--profile", "kubeadm"],  # no --cloud
    ["--host-root", "/", "--profile", "kubeadm", "--cloud", "aws", "--kubelet-healthz", "http://10.0.0.1:10248/healthz"],
    ["--profile", "talos", "--cloud", "aws"],  # no --output
    ["--profile", "bottlerocket", "--cloud", "aws"],
])
def test_usage_errors_exit_2(args):
    r = subprocess.run([str(BIN), "install", *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert r.stdout == "" and r.stderr.startswith("pullcred: install: "), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_bottlerocket_says_what_is_possible(tmp_path):
    r = subprocess.run([str(BIN), "install", "--profile", "bottlerocket", "--cloud", "aws"],
                       capture_output=True, text=True)
    assert "a binary cannot be added to the host" in r.stderr and "ecr-credential-provider" in r.stderr
    r = subprocess.run([str(BIN), "install", "--profile", "bottlerocket", "--cloud", "aws", "--output",
                        str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "bottlerocket-settings.toml").read_text()
    assert "[settings.kubernetes.credential-providers.ecr-credential-provider]" in text
    assert '"*.dkr.ecr.*.amazonaws.com"' in text and "custom Bottlerocket variant" in text


def test_talos_extension_layout_and_patch(tmp_path):
    r = subprocess.run([str(BIN), "install", "--profile", "talos", "--cloud", "aws,gcp", "--output",
                        str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ext = tmp_path / "pullcred-extension"
    binary = ext / "rootfs/usr/local/lib/kubelet/credentialproviders/pullcred"
    assert binary.read_bytes() == BIN.read_bytes() and os.access(binary, os.X_OK)
    man = yaml.safe_load((ext / "manifest.yaml").read_text())
    assert man["version"] == "v1alpha1" and man["metadata"]["name"] == "pullcred"
    assert "talos" in man["metadata"]["compatibility"]
    want = yaml.safe_load(generated("--cloud", "aws,gcp"))
    patch = yaml.safe_load((tmp_path / "talos-machine-patch.yaml").read_text())
    assert patch["machine"]["kubelet"]["credentialProviderConfig"] == want
    doc = yaml.safe_load((tmp_path / "talos-kube-credential-provider-config.yaml").read_text())
    assert doc["kind"] == "KubeCredentialProviderConfig" and doc["configuration"] == want
    # the extension directory packs into an image
    out = tmp_path / "image"
    b = subprocess.run([str(INSTALLER / "build-image.sh"), "--talos-extension", str(ext), "--out", str(out),
                        "--tag", "t1"], capture_output=True, text=True)
    assert b.returncode == 0, b.stderr
    assert sorted(layer_names(out, "t1")) == sorted([
        "manifest.yaml", "rootfs", "rootfs/usr", "rootfs/usr/local", "rootfs/usr/local/lib",
        "rootfs/usr/local/lib/kubelet", "rootfs/usr/local/lib/kubelet/credentialproviders",
        "rootfs/usr/local/lib/kubelet/credentialproviders/pullcred"])


# ------------------------------------------------------- documents, chart, image


@pytest.mark.parametrize("profile", ["kubeadm", "eks-al2023", "k3s", "rke2"])
def test_profile_document_states_the_paths_the_installer_writes(root, profile):
    like(root, profile)
    r = install(root, profile, "--dry-run")
    assert r.returncode == 0, r.stderr
    doc = (INSTALLER / "profiles" / f"{profile}.md").read_text()
    for line in r.stdout.splitlines()[:-1]:
        path = line.split()[1]
        assert f"`{path}`" in doc, f"{profile}.md does not name {path}"
    assert LAYOUT[profile]["unit"] in doc


def test_every_profile_has_a_document():
    names = {p.stem for p in (INSTALLER / "profiles").glob("*.md")}
    assert names == {"kubeadm", "eks-al2023", "k3s", "rke2", "talos", "bottlerocket"}


def docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


def test_chart_defaults_render_the_plain_manifests():
    rendered, _ = helm_lite.render_chart(INSTALLER / "chart")
    for name, text in rendered.items():
        plain = (INSTALLER / "manifests" / name).read_text()
        assert docs(text) == docs(plain), f"installer/manifests/{name} differs from the chart's defaults"


def test_chart_values_reach_the_installer_args():
    import jsonschema

    rendered, values = helm_lite.render_chart(INSTALLER / "chart", {
        "profile": "k3s", "clouds": ["aws", "vault"], "tokenAudience": "vault", "registries": ["vault.example.com"],
        "merge": True, "service": "k3s-agent", "extraArgs": ["--generate-arg=--docker-hub"],
        "image": {"repository": "r.example.com/pullcred/installer", "tag": "v9", "pullPolicy": "Always"}})
    schema = yaml.safe_load((INSTALLER / "chart" / "values.schema.json").read_text())
    jsonschema.validate(values, schema)
    ds = docs(rendered["daemonset.yaml"])[0]
    pod = ds["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == "r.example.com/pullcred/installer:v9"
    assert c["args"] == ["--host-root=/host", "--profile=k3s", "--cloud=aws,vault", "--token-audience=vault",
                         "--registry=vault.example.com", "--merge", "--service=k3s-agent",
                         "--kubelet-healthz=http://127.0.0.1:10248/healthz", "--generate-arg=--docker-hub",
                         "--keep-running"]
    # privileged, PID 1's namespaces, the host root, no API token
    assert pod["hostPID"] is True and c["securityContext"]["privileged"] is True
    assert pod["automountServiceAccountToken"] is False
    assert pod["volumes"] == [{"name": "host", "hostPath": {"path": "/", "type": "Directory"}}]
    assert c["volumeMounts"] == [{"name": "host", "mountPath": "/host"}]
    # the args parse: the same flags, against a fake root, in dry-run
    for bad in ({"profile": "talos"}, {"profile": "bottlerocket"}, {"clouds": []}, {"clouds": ["ibm"]}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**values, **bad}, schema)


def test_chart_args_are_accepted_by_the_installer(root):
    like(root, "kubeadm")
    rendered, _ = helm_lite.render_chart(INSTALLER / "chart")
    args = docs(rendered["daemonset.yaml"])[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    args = [a.replace("/host", str(root)) if a.startswith("--host-root") else a for a in args]
    args = [a for a in args if a != "--keep-running" and not a.startswith("--kubelet-healthz")]
    r = subprocess.run([str(BIN), "install", *args, "--kubelet-healthz", "none", "--dry-run"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "restart kubelet" in r.stdout


def layer_names(layout, tag):
    import json

    index = json.loads((layout / "index.json").read_text())
    m = [x for x in index["manifests"] if x["annotations"]["org.opencontainers.image.ref.name"] == tag][0]
    manifest_ = json.loads((layout / "blobs/sha256" / m["digest"][7:]).read_text())
    assert len(manifest_["layers"]) == 1
    with tarfile.open(layout / "blobs/sha256" / manifest_["layers"][0]["digest"][7:]) as t:
        members = t.getmembers()
        for mem in members:
            assert (mem.uid, mem.gid, mem.mtime) == (0, 0, 0), mem.name
        return [mem.name.removeprefix("./") for mem in members if mem.name not in (".", "./")]


def test_image_holds_only_the_binary(tmp_path):
    import json

    out = tmp_path / "image"
    r = subprocess.run([str(INSTALLER / "build-image.sh"), "--binary", str(BIN), "--out", str(out), "--tag", "t1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert layer_names(out, "t1") == ["pullcred"]
    cfg = json.loads(subprocess.run(["skopeo", "inspect", "--config", f"oci:{out}:t1"], capture_output=True,
                                    text=True, check=True).stdout)
    assert cfg["config"]["Entrypoint"] == ["/pullcred", "install"] and cfg["os"] == "linux"
    # reproducible: the same input gives the same manifest digest
    out2 = tmp_path / "image2"
    subprocess.run([str(INSTALLER / "build-image.sh"), "--binary", str(BIN), "--out", str(out2), "--tag", "t1"],
                   capture_output=True, check=True)
    assert (out / "index.json").read_text() == (out2 / "index.json").read_text()
    bad = subprocess.run([str(INSTALLER / "build-image.sh"), "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage error" in bad.stderr
