"""A kubelet-faithful driver: what the kubelet does for one container's
image, in the kubelet's order, ending in a real CRI PullImage on containerd.

From the kubelet source (Kubernetes 1.37 development line):

1. pkg/kubelet/images/image_manager.go EnsureImageExists: the image gets its
   default tag (`applyDefaultImageTag`), and `parsers.ParseImageName` gives
   the repository the keyring is asked about (`nginx` ->
   `docker.io/library/nginx`): kubelet.normalize_image.
2. pkg/credentialprovider/plugin/plugin.go (perPodPluginProvider.Provide,
   pluginProvider.provide): a provider runs only when one of its
   `matchImages` globs matches (kubelet.provider_matches); its in-memory
   cache is looked up by image, then registry, then global
   (getCachedCredentials) BEFORE any exec; concurrent requests for the same
   image (in service-account mode: and the same token) share one exec
   (singleflight); the plugin is exec'd with the config's args, the
   kubelet's environment plus the config's `env`, a one-minute timeout, one
   JSON request on stdin; the answer is decoded strictly
   (kubelet.decode_response) and cached per `cacheKeyType` and
   `cacheDuration`. A failed exec or a bad answer gives no credentials from
   that provider, and the pull goes on.
3. pkg/credentialprovider/keyring.go (BasicDockerKeyring.Add, Lookup): the
   answers of every matching provider go into one keyring; `Add` builds an
   AuthConfig with Username, Password (and Email) only: ServerAddress,
   Auth, IdentityToken and RegistryToken stay empty. Lookup returns every
   matching key's credentials, most specific key first (kubelet.Keyring).
4. pkg/kubelet/kuberuntime/kuberuntime_image.go PullImage: no credentials:
   one PullImage with no AuthConfig; else each credential in turn, as
   runtimeapi.AuthConfig{Username, Password, Auth, ServerAddress,
   IdentityToken, RegistryToken} copied from the keyring entry (so only
   username and password are set), the first success wins, and the errors
   of all are aggregated.

Service-account mode (KEP-4412, `tokenAttributes`): the request carries the
pod's token and the annotations listed in tokenAttributes; the cache is
kept per service account (cacheType ServiceAccount: namespace, name, UID
and the annotations passed). The token is the one the kubelet requests for
the pod's service account with the provider's `serviceAccountTokenAudience`
(pkg/credentialprovider/plugin/plugin.go, serviceAccountProvider
getServiceAccountToken: a TokenRequest through the kubelet's token manager,
which keeps one token per service account and audience): a Pod given
without a token gets one minted here (tests/satoken.py) for that audience,
once per driver.
"""

import json
import threading
import time
from dataclasses import dataclass, field

import grpc

import kubelet
import satoken


@dataclass
class Pod:
    """The pod's service account as the kubelet sees it."""

    namespace: str
    name: str
    uid: str
    token: str = None  # None: the driver requests one per provider audience
    annotations: dict = field(default_factory=dict)


@dataclass
class Pull:
    image: str
    ref: str = None
    error: str = None
    user: str = None  # the username of the credential that worked
    offered: list = field(default_factory=list)  # usernames offered, in order
    execs: int = 0
    exec_started: float = None
    done: float = None

    @property
    def ok(self):
        return self.ref is not None


class PullFailed(Exception):
    pass


class KubeletDriver:
    """One kubelet: providers from a CredentialProviderConfig, their
    in-memory caches, and a CRI runtime. A new instance is a restarted
    kubelet (cold in-memory cache)."""

    def __init__(self, plugin, config, cri, env=None):
        self.plugin = plugin
        self.providers = kubelet.load_providers(config)
        self.cri = cri
        self.env = dict(env or {})  # the kubelet's own environment
        self.caches = {}
        self.lock = threading.Lock()
        self.flights = {}
        self.execs = 0
        self.exec_log = []
        self.tokens = {}  # (namespace, name, uid, audience) -> token: the kubelet's token manager

    def _token(self, provider, pod):
        """The pod's service-account token for `provider`: the Pod's own when
        it was given one, else one requested (minted) for the provider's
        serviceAccountTokenAudience and kept, as the token manager does."""
        if pod.token is not None:
            return pod.token
        audience = (provider.get("tokenAttributes") or {}).get("serviceAccountTokenAudience")
        key = (pod.namespace, pod.name, pod.uid, audience)
        with self.lock:
            token = self.tokens.get(key)
            if token is None:
                token = self.tokens[key] = satoken.mint(pod.namespace, pod.name, uid=pod.uid, audience=audience)
            return token

    # ------------------------------------------------------------ credentials
    def _cache(self, provider, pod):
        key = (provider["name"],)
        if pod is not None and provider.get("tokenAttributes"):
            ta = provider["tokenAttributes"]
            if ta.get("cacheType") == "Token":
                key += (pod.namespace, pod.name, pod.uid, self._token(provider, pod))
            else:
                key += (pod.namespace, pod.name, pod.uid, json.dumps(self._annotations(provider, pod), sort_keys=True))
        with self.lock:
            c = self.caches.get(key)
            if c is None:
                c = self.caches[key] = kubelet.KubeletCache(provider["defaultCacheDuration"])
            c.now = time.monotonic()
            return c

    @staticmethod
    def _annotations(provider, pod):
        ta = provider.get("tokenAttributes") or {}
        keys = list(ta.get("requiredServiceAccountAnnotationKeys") or []) + list(
            ta.get("optionalServiceAccountAnnotationKeys") or [])
        return {k: pod.annotations[k] for k in keys if k in pod.annotations}

    def _request(self, provider, repo, pod):
        req = {"apiVersion": provider["apiVersion"], "kind": "CredentialProviderRequest", "image": repo}
        ta = provider.get("tokenAttributes")
        if ta:
            if pod is None:
                if ta.get("requireServiceAccount"):
                    return None  # the kubelet does not run the plugin
            else:
                missing = [k for k in ta.get("requiredServiceAccountAnnotationKeys") or [] if k not in pod.annotations]
                if missing:
                    return None
                req["serviceAccountToken"] = self._token(provider, pod)
                ann = self._annotations(provider, pod)
                if ann:
                    req["serviceAccountAnnotations"] = ann
        return req

    def _provide(self, provider, repo, pod, pull):
        cache = self._cache(provider, pod)
        auth, hit = cache.lookup(repo)
        if hit is not None:
            return auth
        req = self._request(provider, repo, pod)
        if req is None:
            return {}
        token = self._token(provider, pod) if pod and provider.get("tokenAttributes") else None
        flight_key = (provider["name"], repo, token)
        with self.lock:
            flight = self.flights.get(flight_key)
            leader = flight is None
            if leader:
                flight = self.flights[flight_key] = {"done": threading.Event(), "auth": {}}
        if not leader:
            flight["done"].wait(65)
            return flight["auth"]
        try:
            env = dict(self.env)
            env.update(provider["env"])
            with self.lock:
                self.execs += 1
            pull.execs += 1
            if pull.exec_started is None:
                pull.exec_started = time.monotonic()
            res = self.plugin.run(req, env=env, args=provider["args"], timeout=60)
            self.exec_log.append((repo, res.code, res.stderr.strip()))
            auth = {}
            if res.code == 0:
                try:
                    body = kubelet.decode_response(res.stdout, provider["apiVersion"])
                except ValueError:
                    body = None
                if body is not None:
                    cache.now = time.monotonic()
                    cache.store(repo, body)
                    auth = body.get("auth") or {}
            flight["auth"] = auth
            return auth
        finally:
            flight["done"].set()
            with self.lock:
                self.flights.pop(flight_key, None)

    def credentials(self, repo, pod=None, pull=None):
        pull = pull or Pull(repo)
        ring = kubelet.Keyring()
        for provider in self.providers:
            if kubelet.provider_matches(provider, repo):
                ring.add(self._provide(provider, repo, pod, pull))
        return ring.lookup(repo)

    # ------------------------------------------------------------ the pull
    def pull(self, image, pod=None):
        """The kubelet's pull of `image` for a pod: returns a Pull (ref set
        on success, error holding the runtime's aggregated errors)."""
        repo, with_tag = kubelet.normalize_image(image)
        pull = Pull(with_tag)
        started = time.monotonic()
        creds = self.credentials(repo, pod, pull)
        if pull.exec_started is None:
            pull.exec_started = started
        pb2 = self.cri.pb2
        errors = []
        if not creds:
            try:
                pull.ref = self.cri.pull(with_tag)
            except grpc.RpcError as e:
                errors.append(e.details())
        for user, password, _key in creds:
            pull.offered.append(user)
            auth = pb2.AuthConfig(username=user, password=password)
            try:
                pull.ref = self.cri.pull(with_tag, auth)
                pull.user = user
                break
            except grpc.RpcError as e:
                errors.append(e.details())
        pull.done = time.monotonic()
        if pull.ref is None:
            pull.error = "[" + ", ".join(errors) + "]"
        return pull

    def must_pull(self, image, pod=None):
        p = self.pull(image, pod)
        if not p.ok:
            raise PullFailed(f"{image}: {p.error}")
        return p
