"""Issue #16 item 5: `pullcred prepull`, the image-bake step that pre-pulls
key images through the runtime's CRI socket with the credentials the kubelet
would use.

`pullcred prepull` is run here exactly as packer/provision.sh runs it: the
kubelet's CredentialProviderConfig and bin dir, containerd's socket. It
execs the provider (pullcred itself, against the session's stand-ins and
registries), applies the keyring rules and calls PullImage and ImageStatus
on the session's containerd; the harness's own CRI client (generated from
cri_api.proto) then checks that containerd has each image.
"""

import subprocess
from dataclasses import dataclass

import conftest
from common import ACR_USER, ECR, MIRROR, STATIC, docker_config, env_for, kubelet_config
from conftest import BIN, assert_no_secret, register_secret

# containerd's words for a registry refusing the credentials (see test_sources)
REFUSED = ("401 Unauthorized", "pull access denied, repository does not exist or may require authorization")
ANONYMOUS = f"{MIRROR}/library/cached:1.0"  # an open registry: no provider matches it


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def pulled(self):
        """{image: image_ref} from the `pulled IMAGE as REF` lines."""
        out = {}
        for line in self.stdout.splitlines():
            words = line.split(" ")
            assert len(words) == 4 and words[0] == "pulled" and words[2] == "as", f"stray stdout line {line!r}"
            out[words[1]] = words[3]
        return out

    @property
    def errors(self):
        return [l for l in self.stderr.splitlines() if l.startswith("pullcred:")]


def prepull(plugin, w, tmp_path, images=(), images_file=None, env=None, socket=None):
    cfg = tmp_path / "credential-provider.yaml"
    cfg.write_text(kubelet_config())
    args = [str(BIN), "prepull", "--cri-socket", str(socket or w.cri.socket), "--config", str(cfg),
            "--bin-dir", str(BIN.parent)]
    if images_file:
        args += ["--images-file", str(images_file)]
    args += list(images)
    e = dict(plugin.env)
    e.update(env or {})
    p = subprocess.run(args, capture_output=True, text=True, env=e, timeout=300)
    conftest.CAPTURED.append((f"test_prepull {images}", "stderr", p.stderr))
    conftest.CAPTURED.append((f"test_prepull {images}", "stdout", p.stdout))
    assert_no_secret(p.stderr)
    assert_no_secret(p.stdout)
    assert "panicked" not in p.stderr
    return Run(p.returncode, p.stdout, p.stderr)


def assert_in_runtime(w, image, ref):
    img = w.cri.status(image)
    assert img is not None, f"ImageStatus does not show {image}"
    assert img.id == ref, (image, img.id, ref)
    assert any(i.id == ref for i in w.cri.list())


def test_prepull_pulls_every_source_through_cri_with_the_kubelets_credentials(plugin, world, tmp_path):
    """ECR, ECR Public, Google, ACR (containerd exchanges the refresh
    token), a static docker config for a private registry and for Docker
    Hub (token auth; the image as a pod spec names it), and an open registry
    no provider matches (pulled anonymously): all in one run, some from
    --images-file."""
    w = world
    cfg = docker_config(tmp_path / "config.json", {STATIC: w.static_user,
                                                  "https://index.docker.io/v1/": w.hub_user})
    env = env_for(w, PULLCRED_DOCKER_CONFIG=str(cfg))
    listed = tmp_path / "images.txt"
    listed.write_text(f"# key images\n{w.image['static']}\n\n{w.image['hub']}\n{ANONYMOUS}\n")
    images = [w.image["ecr"], w.image["ecr_public"], w.image["gar"], w.image["acr"]]
    w.mirror.clear()
    w.acr_tokens.calls.clear()

    run = prepull(plugin, w, tmp_path, images, images_file=listed, env=env)

    assert run.code == 0, run.stderr
    assert run.stderr == ""
    pulled = run.pulled
    want = images + [w.image["static"], w.image["hub"], ANONYMOUS]
    assert list(pulled) == want
    for image, ref in pulled.items():
        assert ref.startswith("sha256:"), ref
        assert_in_runtime(w, image, ref)
    # the open registry saw no credentials at all
    assert w.mirror.seen and all(s["scheme"] is None for s in w.mirror.seen), w.mirror.seen
    # containerd got its ACR token on the refresh token pullcred returned
    served = [c for c in w.acr_tokens.calls if c["outcome"] == 200]
    assert served and all(c["user"] in (ACR_USER, None) for c in served), w.acr_tokens.calls


def test_prepull_a_wrong_credential_fails_that_image_with_one_line(plugin, world, tmp_path):
    """The provider answers for the static registry with a wrong password
    (its registry check off, so the wrong answer reaches the kubelet's
    keyring): containerd's 401 for that image, one line naming it, exit 1,
    the password nowhere; the other image is still pulled."""
    w = world
    wrong = (w.static_user[0], "wrong-" + w.static_user[1][::-1])
    register_secret(wrong[1])
    cfg = docker_config(tmp_path / "config.json", {STATIC: wrong})
    env = env_for(w, PULLCRED_DOCKER_CONFIG=str(cfg), PULLCRED_NO_REGISTRY_CHECK="1")

    run = prepull(plugin, w, tmp_path, [w.image["static"], ANONYMOUS], env=env)

    assert run.code == 1
    assert list(run.pulled) == [ANONYMOUS]
    assert len(run.errors) == 1 and len(run.stderr.splitlines()) == 1, run.stderr
    line = run.errors[0]
    assert line.startswith(f"pullcred: prepull: {w.image['static']}: not pulled: with user \"robot\" of key "), line
    assert any(r in line for r in REFUSED), line
    assert wrong[1] not in run.stderr
    assert w.cri.status(w.image["static"]) is None
    assert_in_runtime(w, ANONYMOUS, run.pulled[ANONYMOUS])


def test_prepull_no_credential_pulls_anonymously_and_says_why(plugin, world, tmp_path):
    """The provider fails (ECR unreachable): as the kubelet does, the pull
    goes on without credentials, the registry refuses it, and the one error
    line names the image, the 401 and the provider's failure."""
    w = world
    dead = "http://127.0.0.1:9"
    env = env_for(w, AWS_ENDPOINT_URL_ECR=dead, AWS_ENDPOINT_URL_STS=dead, PULLCRED_NO_CACHE="1")

    run = prepull(plugin, w, tmp_path, [w.image["ecr"]], env=env)

    assert run.code == 1
    assert run.stdout == ""
    assert len(run.errors) == 1 and len(run.stderr.splitlines()) == 1, run.stderr
    line = run.errors[0]
    assert line.startswith(f"pullcred: prepull: {w.image['ecr']}: not pulled: with no credentials (no provider answered): "), line
    assert any(r in line for r in REFUSED), line
    assert 'provider "pullcred" failed: ' in line and ECR in line, line
    assert w.cri.status(w.image["ecr"]) is None


def test_prepull_refuses_usage_errors_and_a_missing_socket(plugin, world, tmp_path):
    w = world
    # no image
    run = prepull(plugin, w, tmp_path, [])
    assert run.code == 2 and run.stdout == "" and len(run.errors) == 1, run.stderr
    assert "no images given" in run.errors[0]
    # no runtime behind the socket
    run = prepull(plugin, w, tmp_path, [ANONYMOUS], socket=tmp_path / "none.sock")
    assert run.code == 1 and run.stdout == "" and len(run.errors) == 1, run.stderr
    assert run.errors[0].startswith(f"pullcred: prepull: CRI socket {tmp_path / 'none.sock'}: connect: "), run.errors[0]


def test_packers_prepull_step_pulls_through_the_runtime(plugin, world, tmp_path):
    """packer/prepull.sh, the templates' optional step, run as on the build
    instance but pointed at this session's containerd, config and bin dir:
    it pulls with the provider's credentials, and leaves no pullcred cache
    (it turns the cache off for the plugin too)."""
    w = world
    cfg = tmp_path / "credential-provider.yaml"
    cfg.write_text(kubelet_config())
    script = conftest.ROOT / "packer" / "prepull.sh"
    env = dict(plugin.env)
    env.update(env_for(w))
    p = subprocess.run([str(script), "--flavor", "eks-al2023", "--cri-socket", str(w.cri.socket), "--config", str(cfg),
                        "--bin-dir", str(BIN.parent), "--timeout", "5m", w.image["ecr"]],
                       capture_output=True, text=True, env=env, timeout=300)
    conftest.CAPTURED.append(("test_packers_prepull_step", "stderr", p.stderr))
    assert_no_secret(p.stderr + p.stdout)
    assert p.returncode == 0, p.stderr
    run = Run(p.returncode, p.stdout, p.stderr)
    assert list(run.pulled) == [w.image["ecr"]]
    assert_in_runtime(w, w.image["ecr"], run.pulled[w.image["ecr"]])
    assert p.stderr == "prepull.sh: pre-pulling 1 image(s) through " + str(w.cri.socket) + "\n"
    assert not plugin.cache_dir.exists() or not any(plugin.cache_dir.iterdir())
