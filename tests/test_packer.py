"""packer/: the node image templates and their provisioning script, offline.

- Templates: `packer fmt -check`, `packer validate -syntax-only` and a full
  `packer validate` (offline: the amazon-ebs builder checks its arguments
  without calling AWS) on every template, with Debian's packer 1.6.6.
- provision.sh runs for real, as root, against a Debian root file system made
  with `debootstrap --variant=minbase` once per session (copied per test), or
  a minimal fake root when no mirror answers (the reason is printed and
  shown in the summary). PULLCRED_TEST_ROOTFS=DIR uses a ready-made root
  instead (never modified; copied per test).
- Then: modes and owners, `pullcred config validate` on the installed config,
  the kubelet flags point at paths that exist in the root, no secret or cache
  files, exactly the expected files changed, and a second run changes nothing
  (path, mode, owner, sha256, mtime and ctime of every entry in the root).

packer and debootstrap are installed by .ci/run; missing, the tests fail.
"""

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from conftest import BIN, SECRET_KEY

REPO = Path(__file__).resolve().parent.parent
PACKER = REPO / "packer"
SCRIPT = PACKER / "provision.sh"
TEMPLATES = ["eks-al2023.pkr.hcl", "ubuntu.pkr.hcl"]

CONFIG = "/etc/pullcred/credential-provider.yaml"
LAYOUT = {
    "eks-al2023": {
        "bin_dir": "/etc/eks/image-credential-provider",
        "dropin": "/etc/eks/nodeadm.d/50-pullcred.yaml",
    },
    "kubeadm": {
        "bin_dir": "/usr/local/libexec/kubelet-credential-providers",
        "dropin": "/etc/systemd/system/kubelet.service.d/20-pullcred.conf",
    },
}

# awslabs/amazon-eks-ami nodeadm/internal/kubelet/image-credential-provider.template.json:
# the matchImages nodeadm writes into config.json at every boot.
NODEADM_ECR_GLOBS = [
    "*.dkr.ecr.*.amazonaws.com",
    "*.dkr-ecr.*.on.aws",
    "*.dkr.ecr.*.amazonaws.com.cn",
    "*.dkr-ecr.*.on.amazonwebservices.com.cn",
    "*.dkr.ecr-fips.*.amazonaws.com",
    "*.dkr-ecr-fips.*.on.aws",
    "*.dkr.ecr.*.c2s.ic.gov",
    "*.dkr.ecr.*.sc2s.sgov.gov",
    "*.dkr.ecr.*.cloud.adc-e.uk",
    "*.dkr.ecr.*.amazonaws.eu",
]
NODEADM_CONFIG_JSON = (
    '{"apiVersion": "kubelet.config.k8s.io/v1", "kind": "CredentialProviderConfig",\n'
    ' "providers": [{"name": "ecr-credential-provider", "matchImages": '
    + str(NODEADM_ECR_GLOBS).replace("'", '"')
    + ', "defaultCacheDuration": "12h", "apiVersion": "credentialprovider.kubelet.k8s.io/v1"}]}\n'
)
# awslabs/amazon-eks-ami templates/al2023/runtime/rootfs/etc/systemd/system/nodeadm-run.service
NODEADM_RUN_SERVICE = """[Unit]
Description=EKS Nodeadm Run
After=nodeadm-config.service cloud-final.service
Requires=nodeadm-config.service

[Service]
Type=oneshot
ExecStart=/usr/bin/nodeadm --console init --skip config --config-source imds://user-data --config-source file:///etc/eks/nodeadm.d/ --config-cache /run/eks/nodeadm/config.json
"""
# kubeadm's kubelet drop-in, as https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/kubelet-integration/ shows it.
KUBEADM_EXECSTART = (
    "/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS"
)
KUBEADM_CONF = f"""# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart={KUBEADM_EXECSTART}
"""


def need(tool):
    path = shutil.which(tool)
    assert path, f"{tool} is missing: .ci/run installs it (apt-get install packer debootstrap)"
    return path


def inside(root, path):
    return Path(str(root) + path)


# ---------------------------------------------------------------- templates


def packer_env(tmp_path):
    # offline and credential-free: no AWS identity, no HashiCorp checkpoint call
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "CHECKPOINT_DISABLE": "1"}


def test_templates_are_packer_fmt_clean(tmp_path):
    need("packer")
    r = subprocess.run(
        ["packer", "fmt", "-check", "-diff", str(PACKER)], capture_output=True, text=True, env=packer_env(tmp_path)
    )
    assert r.returncode == 0, f"packer fmt -check: run `packer fmt packer/`\n{r.stdout}{r.stderr}"


@pytest.mark.parametrize("template", TEMPLATES)
def test_template_validates(template, tmp_path):
    need("packer")
    env = packer_env(tmp_path)
    path = str(PACKER / template)
    syntax = subprocess.run(["packer", "validate", "-syntax-only", path], capture_output=True, text=True, env=env)
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr
    # The full check: every variable reference, builder and provisioner argument.
    full = subprocess.run(
        ["packer", "validate", "-var", f"pullcred_binary={BIN}", path],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert full.returncode == 0, full.stdout + full.stderr
    # ...and it is not vacuous: a misspelt argument fails it.
    bad = tmp_path / template
    bad.write_text((PACKER / template).read_text().replace("ssh_username", "ssh_usernme"))
    shutil.copy(SCRIPT, tmp_path / "provision.sh")
    r = subprocess.run(
        ["packer", "validate", "-var", f"pullcred_binary={BIN}", str(bad)], capture_output=True, text=True, env=env
    )
    assert r.returncode != 0 and "ssh_usernme" in r.stdout + r.stderr


@pytest.mark.parametrize("template,flavor", [("eks-al2023.pkr.hcl", "eks-al2023"), ("ubuntu.pkr.hcl", "kubeadm")])
def test_template_uploads_the_binary_and_runs_the_script(template, flavor):
    text = (PACKER / template).read_text()
    assert re.search(r'provisioner "file" \{\s*source\s*=\s*var\.pullcred_binary', text)
    assert 'script          = "${path.root}/provision.sh"' in text
    assert f"--flavor {flavor}" in text


# ------------------------------------------------------------- optional pre-pull

PREPULL = PACKER / "prepull.sh"


@pytest.mark.parametrize("template,flavor", [("eks-al2023.pkr.hcl", "eks-al2023"), ("ubuntu.pkr.hcl", "kubeadm")])
def test_template_prepulls_after_provisioning_only_when_asked(template, flavor, tmp_path):
    # Given the template: prepull.sh runs after provision.sh, for the same
    # flavor, with the images of var.prepull_images (default: none)
    text = (PACKER / template).read_text()
    assert re.search(r'variable "prepull_images" \{\s*type\s*=\s*list\(string\)\s*default\s*=\s*\[\]', text)
    provision_at = text.index('script          = "${path.root}/provision.sh"')
    prepull_at = text.index('script          = "${path.root}/prepull.sh"')
    assert provision_at < prepull_at
    assert f"--flavor {flavor} -- ${{local.prepull_args}}" in text
    # and packer refuses an entry that is not an image reference (the list
    # reaches a shell command line, each entry single-quoted)
    need("packer")
    env = packer_env(tmp_path)
    for images, ok in [('["nginx:1", "r.example.com:5000/a/b@sha256:0f"]', True), ('["nginx; rm -rf /"]', False),
                       ('["a\'b"]', False), ('["--help"]', False), ('[""]', False)]:
        r = subprocess.run(["packer", "validate", "-var", f"pullcred_binary={BIN}", "-var", f"prepull_images={images}",
                            str(PACKER / template)], capture_output=True, text=True, env=env, timeout=120)
        assert (r.returncode == 0) == ok, (images, r.stdout + r.stderr)


def test_prepull_script_skips_without_images_and_checks_its_usage(tmp_path):
    def run(*args):
        return subprocess.run([str(PREPULL), *args], capture_output=True, text=True, timeout=60)

    # no image: the optional step does nothing
    r = run("--flavor", "eks-al2023")
    assert r.returncode == 0 and r.stdout == "" and "no images to pre-pull; skipped" in r.stderr, r.stderr
    r = run("--flavor", "kubeadm", "--")
    assert r.returncode == 0, r.stderr
    # usage errors
    for args in ([], ["--flavor", "eks"], ["--flavor", "kubeadm", "--bogus", "nginx"], ["--cri-socket"]):
        r = run(*args)
        assert r.returncode == 2 and r.stdout == "" and r.stderr.startswith("prepull.sh: usage error:"), (args, r.stderr)
    # images asked for before provision.sh installed pullcred: a clear failure
    r = run("--flavor", "kubeadm", "--bin-dir", str(tmp_path), "nginx:1")
    assert r.returncode == 1 and "pullcred is missing: run provision.sh first" in r.stderr, r.stderr
    # no CRI socket and no systemd to start containerd with (a PATH without
    # systemctl: this machine's own containerd.service is never started)
    (tmp_path / "pullcred").symlink_to(BIN)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(generated("--cloud", "aws").decode())
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("id", "sed", "sleep"):
        (tools / tool).symlink_to(shutil.which(tool))
    r = subprocess.run([str(PREPULL), "--flavor", "kubeadm", "--bin-dir", str(tmp_path), "--config", str(cfg),
                        "--cri-socket", str(tmp_path / "none.sock"), "nginx:1"], capture_output=True, text=True,
                       timeout=60, env={"PATH": str(tools)})
    assert r.returncode == 1 and r.stdout == "", r.stderr
    assert f"no CRI socket at {tmp_path / 'none.sock'} and no containerd.service to start" in r.stderr, r.stderr


# ------------------------------------------------------------- root file system


def apt_mirror():
    """The Debian mirror apt on this machine uses, and a suite debootstrap knows."""
    texts = []
    for p in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            texts.append(p.read_text())
        except OSError:
            pass
    mirror = None
    for text in texts:
        for m in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, re.M):
            uri = m.group(1)
            if "debian" in uri and "security" not in uri and "debian-ports" not in uri:
                mirror = uri
                break
        if mirror:
            break
    suite = "bookworm"
    try:
        osr = dict(
            line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line
        )
        if osr.get("ID") == "debian" and osr.get("VERSION_CODENAME"):
            suite = osr["VERSION_CODENAME"].strip('"')
    except OSError:
        pass
    return mirror or "http://deb.debian.org/debian", suite


def fake_root(d):
    """A minimal stand-in for a node's root when debootstrap cannot run."""
    for sub in [
        "etc/default",
        "etc/systemd/system",
        "usr/bin",
        "usr/lib/systemd/system",
        "usr/local/bin",
        "var/cache",
        "var/lib",
        "root",
        "home/builder",
        "run/lock",
        "tmp",
    ]:
        (d / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(d / "tmp", 0o1777)
    (d / "etc/os-release").write_text('ID=fake\nPRETTY_NAME="pullcred test fake root"\n')
    return d


@pytest.fixture(scope="session")
def base_root(tmp_path_factory):
    """(path, kind): a root file system to copy for each test."""
    assert os.geteuid() == 0, "the packer tests run provision.sh as root (it chowns to root)"
    given = os.environ.get("PULLCRED_TEST_ROOTFS")
    if given:
        assert Path(given, "etc").is_dir(), f"PULLCRED_TEST_ROOTFS={given} is not a root file system"
        yield Path(given), f"given ({given})"
        return
    need("debootstrap")
    d = tmp_path_factory.mktemp("debootstrap") / "root"
    mirror, suite = apt_mirror()
    cmd = ["debootstrap", "--variant=minbase", suite, str(d), mirror]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        ok, why = r.returncode == 0, (r.stdout + r.stderr)[-2000:]
    except subprocess.TimeoutExpired:
        ok, why = False, "timed out after 600s"
    if ok:
        yield d, f"debootstrap {suite} from {mirror}"
        shutil.rmtree(d, ignore_errors=True)
        return
    shutil.rmtree(d, ignore_errors=True)
    msg = f"debootstrap failed ({' '.join(cmd)}): {why.strip().splitlines()[-1] if why.strip() else '?'}; using a minimal fake root"
    warnings.warn(msg)
    print(msg, file=sys.stderr)
    d.mkdir(parents=True)
    yield fake_root(d), "fake root (debootstrap could not run)"
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def root(base_root, tmp_path, record_property):
    base, kind = base_root
    record_property("root_kind", kind)
    d = tmp_path / "root"
    d.mkdir()
    for entry in sorted(base.iterdir()):
        # /usr and /var are most of the bytes and provision.sh only ever adds
        # new entries there: hard-link their files (the directories are real
        # copies, so new entries stay in this copy). The rest is copied.
        if entry.name in ("usr", "var") and entry.is_dir() and not entry.is_symlink():
            if subprocess.run(["cp", "-al", str(entry), str(d)], capture_output=True).returncode == 0:
                continue
            shutil.rmtree(d / entry.name, ignore_errors=True)  # another file system: copy
        subprocess.run(["cp", "-a", str(entry), str(d)], check=True)
    shutil.copystat(base, d)
    yield d
    subprocess.run(["rm", "-rf", str(d)])  # pytest keeps tmp dirs around


def manifest(root):
    """Every entry under root: path -> (type, mode, uid, gid, sha256|link, mtime_ns, ctime_ns)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames + ([""] if dirpath == str(root) else []):
            p = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    what = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                what = "-> " + os.readlink(p)
            else:
                what = ""
            rel = "/" + os.path.relpath(p, root) if p != str(root) else "/"
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, what,
                        st.st_mtime_ns, st.st_ctime_ns)
    return out


def provision(root, flavor, binary=BIN, *args, env=None):
    e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")}
    e.update(env or {})
    return subprocess.run(
        [str(SCRIPT), "--root", str(root), "--binary", str(binary), "--flavor", flavor, *args],
        capture_output=True,
        text=True,
        env=e,
        timeout=120,
    )


def like_eks_ami(root):
    """What an EKS AL2023 AMI already has that provision.sh must leave alone."""
    d = inside(root, "/etc/eks/image-credential-provider")
    d.mkdir(parents=True)
    ecr = d / "ecr-credential-provider"
    ecr.write_bytes(b"#!/bin/sh\nexit 1\n")
    ecr.chmod(0o755)
    (d / "config.json").write_text(NODEADM_CONFIG_JSON)
    unit = inside(root, "/usr/lib/systemd/system/nodeadm-run.service")
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(NODEADM_RUN_SERVICE)


def like_kubeadm_node(root, execstart=KUBEADM_EXECSTART):
    conf = inside(root, "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf")
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(KUBEADM_CONF.replace(KUBEADM_EXECSTART, execstart))
    default = inside(root, "/etc/default/kubelet")
    default.parent.mkdir(parents=True, exist_ok=True)
    default.write_text('KUBELET_EXTRA_ARGS="--node-labels=team=blue"\n')


def last_flag(args, name):
    """pflag semantics: for a single-value flag the last occurrence wins."""
    value = None
    for a in args:
        if a.startswith(f"--{name}="):
            value = a.split("=", 1)[1]
    return value


def flags_from_dropin(root, flavor):
    text = inside(root, LAYOUT[flavor]["dropin"]).read_text()
    if flavor == "eks-al2023":
        doc = yaml.safe_load(text)
        assert doc["apiVersion"] == "node.eks.aws/v1alpha1" and doc["kind"] == "NodeConfig"
        return doc["spec"]["kubelet"]["flags"]
    env = re.search(r'^Environment="PULLCRED_KUBELET_ARGS=([^"]*)"$', text, re.M)
    assert env, text
    return env.group(1).split()


def assert_flags_point_at_existing_paths(root, flags):
    config = last_flag(flags, "image-credential-provider-config")
    bin_dir = last_flag(flags, "image-credential-provider-bin-dir")
    assert config and bin_dir, flags
    assert inside(root, config).is_file(), f"{config} is not in the image"
    binary = inside(root, bin_dir) / "pullcred"
    assert binary.is_file() and os.access(binary, os.X_OK), f"{bin_dir}/pullcred is not in the image"
    return config, bin_dir


def validate(root, config, bin_dir):
    return subprocess.run(
        [str(BIN), "config", "validate", str(inside(root, config)), "--bin-dir", str(inside(root, bin_dir)), "--strict"],
        capture_output=True,
        text=True,
    )


def generated(*args):
    return subprocess.run([str(BIN), "config", "generate", *args], capture_output=True, check=True).stdout


def assert_no_secrets_or_cache(root, changed):
    for p in ["/run/pullcred", "/var/run/pullcred", "/root/.cache/pullcred", "/var/cache/pullcred", "/root/.aws"]:
        assert not os.path.lexists(inside(root, p)), f"{p} exists in the image"
    for home in inside(root, "/home").glob("*"):
        assert not (home / ".cache/pullcred").exists() and not (home / ".aws").exists()
    for rel in changed:
        p = inside(root, rel)
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            assert SECRET_KEY.encode() not in data, f"the build environment's secret reached {rel}"
            assert not rel.endswith(".json"), f"{rel}: a cache entry?"


# ------------------------------------------------------------------ provisioning

# Given an image root (EKS AL2023-like or a kubeadm node, with the build
# environment holding AWS credentials and a cache override), when provision.sh
# runs, then exactly the expected files appear, root-owned with the right
# modes, the config validates, the flags point at them and nothing secret is
# written; when it runs again, nothing changes at all.
@pytest.mark.parametrize("flavor", ["eks-al2023", "kubeadm"])
def test_provision_installs_then_changes_nothing(root, flavor):
    check_install_then_nothing(root, flavor)


def test_the_fallback_fake_root_works_too(tmp_path):
    # the root the tests fall back to when debootstrap cannot run
    check_install_then_nothing(fake_root(tmp_path / "fake"), "eks-al2023")


def test_without_cmp_unchanged_files_stay_unchanged(root, tmp_path):
    # a minimal image may lack diffutils' cmp: provision.sh compares sha256sums
    like_eks_ami(root)
    assert provision(root, "eks-al2023").returncode == 0
    before = manifest(root)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for d in ["/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]:
        for exe in Path(d).glob("*"):
            if exe.name != "cmp" and not (bin_dir / exe.name).exists():
                (bin_dir / exe.name).symlink_to(exe)
    r = provision(root, "eks-al2023", env={"PATH": str(bin_dir)})
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("unchanged ") == 3, r.stderr
    assert manifest(root) == before


def check_install_then_nothing(root, flavor):
    if flavor == "eks-al2023":
        like_eks_ami(root)
    else:
        like_kubeadm_node(root)
    before = manifest(root)
    leaky_env = {
        "AWS_ACCESS_KEY_ID": "AKIAPULLCREDTEST0001",
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "PULLCRED_CACHE_DIR": str(inside(root, "/var/cache/pullcred")),
    }

    first = provision(root, flavor, env=leaky_env)
    assert first.returncode == 0, first.stderr
    assert SECRET_KEY not in first.stdout + first.stderr
    after = manifest(root)

    lay = LAYOUT[flavor]
    files = {f"{lay['bin_dir']}/pullcred": 0o755, CONFIG: 0o644, lay["dropin"]: 0o644}
    new = {p for p in after if p not in before}
    changed = {p for p in before if p in after and after[p] != before[p]}
    removed = {p for p in before if p not in after}
    assert not removed, removed
    # exactly our files and the directories that hold them are new...
    assert set(files) <= new
    for p in new - set(files):
        assert any(f.startswith(p + "/") for f in files), f"unexpected new entry {p}"
        assert after[p][0] == stat.S_IFDIR and after[p][1:4] == (0o755, 0, 0), p
    # ...and the only other change is the mtime/ctime of their parent directories
    for p in changed:
        assert before[p][:5] == after[p][:5], f"{p} changed: {before[p]} -> {after[p]}"
        assert any(os.path.dirname(n) == p for n in new), f"{p} changed but holds nothing new"

    for p, mode in files.items():
        st = os.lstat(inside(root, p))
        assert stat.S_ISREG(st.st_mode) and (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, 0, 0), p
    assert inside(root, f"{lay['bin_dir']}/pullcred").read_bytes() == BIN.read_bytes()
    assert inside(root, CONFIG).read_bytes() == generated("--cloud", "aws")

    flags = flags_from_dropin(root, flavor)
    config, bin_dir = assert_flags_point_at_existing_paths(root, flags)
    assert (config, bin_dir) == (CONFIG, lay["bin_dir"])
    v = validate(root, config, bin_dir)
    assert v.returncode == 0, v.stdout + v.stderr
    assert_no_secrets_or_cache(root, new | changed)

    second = provision(root, flavor, env=leaky_env)
    assert second.returncode == 0, second.stderr
    assert manifest(root) == after, "the second run changed the image"
    assert second.stderr.count("unchanged ") == 3, second.stderr


def test_eks_config_survives_nodeadm_and_keeps_ecr(root):
    # Given an EKS AL2023-like root provisioned with pullcred
    like_eks_ami(root)
    r = provision(root, "eks-al2023")
    assert r.returncode == 0, r.stderr
    eks = inside(root, "/etc/eks/image-credential-provider")
    # nodeadm's files are untouched
    assert (eks / "config.json").read_text() == NODEADM_CONFIG_JSON
    assert (eks / "ecr-credential-provider").read_bytes() == b"#!/bin/sh\nexit 1\n"
    assert "warning" not in r.stderr  # this nodeadm-run.service reads /etc/eks/nodeadm.d/

    # When nodeadm boots the node: it rewrites config.json from its template
    (eks / "config.json").write_text(NODEADM_CONFIG_JSON.replace("12h", "12h "))
    # and starts the kubelet with its own flags first, then the NodeConfig's
    # kubelet.flags (user data, then /etc/eks/nodeadm.d/*), appended in order
    # (nodeadm/internal/kubelet/environment.go, nodeadm/internal/api/merge.go).
    nodeadm_flags = [
        "--image-credential-provider-bin-dir=/etc/eks/image-credential-provider",
        "--image-credential-provider-config=/etc/eks/image-credential-provider/config.json",
    ]
    kubelet_args = nodeadm_flags + flags_from_dropin(root, "eks-al2023")

    # Then the kubelet reads our config, from nodeadm's bin dir
    config, bin_dir = assert_flags_point_at_existing_paths(root, kubelet_args)
    assert config == CONFIG and bin_dir == "/etc/eks/image-credential-provider"
    assert (eks / "ecr-credential-provider").exists()  # still there for config.json
    v = validate(root, config, bin_dir)
    assert v.returncode == 0, v.stdout + v.stderr
    # and our config still covers every ECR host form nodeadm's covers
    providers = yaml.safe_load(inside(root, CONFIG).read_text())["providers"]
    globs = {g for p in providers if p["name"] == "pullcred" for g in p["matchImages"]}
    assert set(NODEADM_ECR_GLOBS) <= globs, set(NODEADM_ECR_GLOBS) - globs


def test_eks_warns_when_nodeadm_ignores_dropins(root):
    like_eks_ami(root)
    unit = inside(root, "/usr/lib/systemd/system/nodeadm-run.service")
    unit.write_text(unit.read_text().replace(" --config-source file:///etc/eks/nodeadm.d/", ""))
    r = provision(root, "eks-al2023")
    assert r.returncode == 0, r.stderr
    assert "does not read /etc/eks/nodeadm.d/" in r.stderr and "user data" in r.stderr


@pytest.mark.parametrize("execstart", [None, KUBEADM_EXECSTART, "/usr/local/bin/kubelet $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS --v=2"])
def test_kubeadm_dropin_keeps_kubelet_extra_args(root, execstart):
    # Given a node with kubeadm's 10-kubeadm.conf (or none yet) and a user's
    # KUBELET_EXTRA_ARGS in /etc/default/kubelet
    if execstart:
        like_kubeadm_node(root, execstart)
    default = inside(root, "/etc/default/kubelet")
    default.parent.mkdir(parents=True, exist_ok=True)
    default.write_text('KUBELET_EXTRA_ARGS="--node-labels=team=blue"\n')
    r = provision(root, "kubeadm")
    assert r.returncode == 0, r.stderr
    # Then /etc/default/kubelet is untouched and the drop-in runs kubeadm's
    # command line, KUBELET_EXTRA_ARGS included, with our flags last
    assert default.read_text() == 'KUBELET_EXTRA_ARGS="--node-labels=team=blue"\n'
    text = inside(root, LAYOUT["kubeadm"]["dropin"]).read_text()
    starts = re.findall(r"^ExecStart=(.*)$", text, re.M)
    assert starts == ["", f"{execstart or KUBEADM_EXECSTART} $PULLCRED_KUBELET_ARGS"]
    assert "$KUBELET_EXTRA_ARGS" in starts[1]
    assert "KUBELET_EXTRA_ARGS=" not in text
    flags = flags_from_dropin(root, "kubeadm")
    assert flags == [
        f"--image-credential-provider-config={CONFIG}",
        f"--image-credential-provider-bin-dir={LAYOUT['kubeadm']['bin_dir']}",
    ]
    assert_flags_point_at_existing_paths(root, flags)


def test_new_version_replaces_only_the_binary(root, tmp_path):
    # Given an image provisioned with one build of pullcred
    like_eks_ami(root)
    assert provision(root, "eks-al2023").returncode == 0
    before = manifest(root)
    # When a new build (different bytes, same config output) is provisioned
    newer = tmp_path / "pullcred-new"
    newer.write_bytes(BIN.read_bytes() + b"\0new-build")
    newer.chmod(0o700)
    r = provision(root, "eks-al2023", newer)
    assert r.returncode == 0, r.stderr
    after = manifest(root)
    # Then the binary is replaced (0755 root:root, whatever the source mode),
    # and the config and drop-in are untouched
    binary = "/etc/eks/image-credential-provider/pullcred"
    assert inside(root, binary).read_bytes() == newer.read_bytes()
    assert after[binary][1:4] == (0o755, 0, 0)
    diff = {p for p in after if after.get(p) != before.get(p)}
    assert diff <= {binary, "/etc/eks/image-credential-provider"}, diff


def test_provision_fixes_owner_and_mode_without_rewriting(root):
    like_eks_ami(root)
    assert provision(root, "eks-al2023").returncode == 0
    p = inside(root, CONFIG)
    os.chown(p, 1000, 1000)
    p.chmod(0o600)
    mtime = p.stat().st_mtime_ns
    r = provision(root, "eks-al2023")
    assert r.returncode == 0, r.stderr
    st = p.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o644, 0, 0)
    assert st.st_mtime_ns == mtime


# ------------------------------------------------------------------ refusals


def fails(r, *needles):
    assert r.returncode == 1, (r.returncode, r.stderr)
    for n in needles:
        assert n in r.stderr, r.stderr


def test_refuses_to_bake_a_cache(root):
    for cache in ["/root/.cache/pullcred", "/var/cache/pullcred", "/run/pullcred"]:
        d = inside(root, cache)
        d.mkdir(parents=True)
        fails(provision(root, "kubeadm"), "cache", cache)
        shutil.rmtree(d)
    assert not inside(root, LAYOUT["kubeadm"]["bin_dir"]).exists()


def test_refuses_to_write_under_run_through_a_symlink(root):
    inside(root, "/run/elsewhere").mkdir(parents=True, exist_ok=True)
    inside(root, "/etc/pullcred").symlink_to("../run/elsewhere")
    fails(provision(root, "kubeadm"), "refusing to write")
    assert list(inside(root, "/run/elsewhere").iterdir()) == []


def test_refuses_a_path_outside_the_root(root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    inside(root, "/etc/pullcred").symlink_to(outside)
    fails(provision(root, "kubeadm"), "outside --root")
    assert list(outside.iterdir()) == []


def test_refuses_to_write_onto_a_symlink(root):
    victim = inside(root, "/etc/victim")
    victim.write_text("keep me\n")
    inside(root, "/etc/pullcred").mkdir()
    inside(root, CONFIG).symlink_to("/etc/victim")
    fails(provision(root, "kubeadm"), "is a symlink")
    assert victim.read_text() == "keep me\n"


def test_eks_refuses_a_config_without_ecr(root):
    like_eks_ami(root)
    fails(provision(root, "eks-al2023", BIN, "--cloud", "gcp"), "drops ECR images", "include aws")
    assert not inside(root, CONFIG).exists()


def test_a_config_that_does_not_validate_fails_the_build(root, tmp_path):
    # a stand-in binary whose generated config the validator rejects
    fake = tmp_path / "pullcred"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$1 $2" in\n'
        '"config generate") shift 2; while [ $# -gt 0 ]; do [ "$1" = -o ] && printf "kind: Nope\\n" > "$2"; shift; done ;;\n'
        '"config validate") echo "x.yaml:1: kind: must be CredentialProviderConfig" >&2; exit 1 ;;\n'
        "esac\n"
    )
    fake.chmod(0o755)
    fails(provision(root, "kubeadm", fake), "does not validate", "kind: must be")
    assert not inside(root, CONFIG).exists()
    assert not inside(root, LAYOUT["kubeadm"]["dropin"]).exists()


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--flavor", "eks"],
        ["--flavor", "kubeadm"],
        ["--flavor", "kubeadm", "--binary", "/x", "--cloud", "aws;rm"],
        ["--bogus"],
    ],
)
def test_usage_errors_exit_2(args):
    r = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    assert r.stderr.startswith("provision.sh: usage error:")
