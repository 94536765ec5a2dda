//! `pullcred doctor IMAGE`: explain an ImagePullBackOff from the node.
//!
//! Runs the steps an operator would take by hand and prints one line per
//! step (`ok`, `warn`, `fail` or `skip`), what was seen, and for a failure the
//! likely cause and the fix:
//!
//! 1. parse and normalise IMAGE as the kubelet does (tag, digest or both);
//! 2. which provider entry of the kubelet config would run; with
//!    `--kubeconfig` (the kubelet's), the cluster side of its
//!    `tokenAttributes` ([`crate::kube`]): may the node request tokens for
//!    the audience (a SubjectAccessReview), and does the pod's service
//!    account carry the annotations the kubelet requires and the source reads;
//! 3. which source and identity pullcred would use, and the cached token
//!    (with `--service-account-token`, the pod's identity, as the kubelet
//!    would ask for it with `tokenAttributes`);
//! 4. fetch credentials through the cache (username and a masked password);
//! 5. contact the registry: `/v2/`, the challenge and token service, then
//!    `HEAD` the manifest, classifying 401, 403, 404, 429, timeout, DNS, TLS;
//!    then containerd's `hosts.toml` for the registry: the hosts it tries,
//!    in order, each of which gets the credentials pullcred gave;
//! 6. the digest the tag resolves to, ready to pin;
//! 7. node checks: free space on the image filesystem, the clock offset.
//!
//! Exit 0 when the image would pull. Every network step is bounded by one
//! deadline. Nothing secret is printed: passwords are masked, tokens unused
//! beyond the request that needs them.
//!
//! Credentials go where the pull's would, and no further: a `--mirror`
//! SOURCE's image is checked at its TARGET (SOURCE never gets the TARGET's
//! credentials from the doctor), and a Bearer realm gets the password only
//! under the registry check's rule
//! ([`crate::sources::registry_check::credential_realm`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::deadline::Deadline;
use crate::encode::percent_encode;
use crate::http::{Client, HttpError, HttpErrorKind, Response};
use crate::image::ImageRef;
use crate::protocol::{API_VERSIONS, AuthConfig};
use crate::run::{self, Options};
use crate::secret::Secret;
use crate::sources::Route;
use crate::sources::registry_check::{Asks, api_base, asks, basic_auth, credential_realm};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub status: Status,
    pub seen: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Step {
    fn new(step: &'static str, status: Status, seen: impl Into<String>) -> Step {
        Step {
            step,
            status,
            seen: seen.into(),
            cause: None,
            fix: None,
        }
    }

    fn fail(
        step: &'static str,
        seen: impl Into<String>,
        cause: impl Into<String>,
        fix: impl Into<String>,
    ) -> Step {
        Step::flagged(Status::Fail, step, seen.into(), cause.into(), fix.into())
    }

    fn warn(
        step: &'static str,
        seen: impl Into<String>,
        cause: impl Into<String>,
        fix: impl Into<String>,
    ) -> Step {
        Step::flagged(Status::Warn, step, seen.into(), cause.into(), fix.into())
    }

    fn flagged(
        status: Status,
        step: &'static str,
        seen: String,
        cause: String,
        fix: String,
    ) -> Step {
        Step {
            step,
            status,
            seen,
            cause: Some(cause),
            fix: Some(fix),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub image: String,
    pub would_pull: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
    pub steps: Vec<Step>,
}

/// Settings for a doctor run.
pub struct DoctorOptions {
    pub config: Option<PathBuf>,
    /// Where the container runtime keeps images; found automatically if unset.
    pub image_fs: Option<PathBuf>,
    /// A pod's service-account token (`kubectl create token SA --audience
    /// AUD`), to check the pod's own identity instead of the node's.
    pub service_account_token: Option<Secret>,
    /// That service account's annotations, as the kubelet would pass them.
    pub annotations: BTreeMap<String, String>,
    /// containerd's registry hosts directory (`config_path`).
    pub certs_dir: PathBuf,
}

/// containerd's conventional registry hosts directory.
pub const CERTS_D: &str = "/etc/containerd/certs.d";

const IMAGE_FS_CANDIDATES: [&str; 3] = [
    "/var/lib/containerd",
    "/var/lib/containers/storage",
    "/var/lib/docker",
];

pub fn run(input: &str, opts: &Options, doc: &DoctorOptions) -> Report {
    run_with_cluster(input, opts, doc, None)
}

/// [`run`], and with `kubeconfig` (the kubelet's `kubelet.conf`) the
/// cluster-side checks of the provider entry's `tokenAttributes`.
pub fn run_with_cluster(
    input: &str,
    opts: &Options,
    doc: &DoctorOptions,
    kubeconfig: Option<&Path>,
) -> Report {
    let deadline = Deadline::after(opts.timeout);
    let mut steps = Vec::new();
    let report = |steps: Vec<Step>, pinned: Option<String>| {
        let would_pull = steps.iter().all(|s| s.status != Status::Fail)
            && steps
                .iter()
                .any(|s| s.step == "registry" && s.status == Status::Ok);
        Report {
            image: input.to_string(),
            would_pull,
            pinned,
            steps,
        }
    };

    // 1. parse
    let image = match ImageRef::parse(input) {
        Ok(i) => i,
        Err(e) => {
            steps.push(Step::fail(
                "parse",
                input,
                e.to_string(),
                "write the image as [registry/]repository[:tag][@sha256:digest], lowercase",
            ));
            return report(steps, None);
        }
    };
    let reference = match (&image.tag, &image.digest) {
        (_, Some(d)) => d.clone(),
        (Some(t), None) => t.clone(),
        (None, None) => "latest".to_string(),
    };
    let shown = match (&image.tag, &image.digest) {
        (Some(t), Some(d)) => format!("{}:{t}@{d}", image.name()),
        (None, Some(d)) => format!("{}@{d}", image.name()),
        (Some(t), None) => format!("{}:{t}", image.name()),
        (None, None) => format!("{}:latest (no tag given: latest)", image.name()),
    };
    steps.push(Step::new("parse", Status::Ok, shown));

    // 2. provider entry
    let (step, provider) = provider_entry(doc.config.as_deref(), &image.name());
    steps.push(step);

    // 2b. the cluster: node RBAC for the audience, the service account
    if let Some(path) = kubeconfig {
        steps.extend(cluster_steps(
            path,
            provider.as_ref(),
            doc,
            opts,
            &image,
            &deadline,
        ));
    }

    // 3. source and identity
    let pod = doc
        .service_account_token
        .as_ref()
        .map(|token| run::PodIdentity {
            token,
            annotations: &doc.annotations,
        });
    match run::explain(opts, &image, pod.as_ref()) {
        Ok(ex) => {
            let now = crate::time::now_unix();
            let cached = match &ex.cached {
                Some(e) => {
                    let s = e.schedule();
                    if now >= s.expires_at {
                        "cached token expired".to_string()
                    } else {
                        format!(
                            "cached token valid for {} more (refresh in {})",
                            human(s.expires_at - now),
                            human((s.refresh_at - now).max(0))
                        )
                    }
                }
                None => match &ex.cache_dir {
                    Some(d) => format!("no cached token in {}", d.display()),
                    None => "cache off".to_string(),
                },
            };
            steps.push(Step::new(
                "source",
                Status::Ok,
                format!("{}; {}; {cached}", ex.source, ex.identity),
            ));
        }
        Err(f) => {
            steps.push(Step::fail(
                "source",
                image.registry.clone(),
                f.to_string(),
                "map the registry: a --docker-config file, an --aws-secret, or a supported cloud registry host",
            ));
            return report(steps, None);
        }
    }

    // 4. credentials, through the cache; the registry check is step 5's job.
    let creds = match fetch(opts, &image, doc) {
        Ok(auth) => {
            let seen: Vec<String> = auth
                .iter()
                .map(|(k, a)| {
                    format!(
                        "{k}: user {} password {}",
                        a.username,
                        kubelet_config::exec::mask(a.password.expose())
                    )
                })
                .collect();
            steps.push(Step::new("credentials", Status::Ok, seen.join("; ")));
            for warning in auth
                .keys()
                .filter_map(|k| kubelet_config::matching::path_key_prefix_warning(k))
            {
                steps.push(Step::warn(
                    "auth-key",
                    warning,
                    "the kubelet matches a key's path as a plain string prefix",
                    "end the docker config key with \"/\" where the path ends",
                ));
            }
            // The kubelet tries matching keys in reverse lexical order.
            auth.into_iter().next_back().map(|(_, a)| a)
        }
        Err(f) => {
            steps.push(Step::fail(
                "credentials",
                image.registry.clone(),
                f,
                "fix the source named above (identity, permissions, endpoint); PULLCRED_LOG=debug shows each call",
            ));
            None
        }
    };

    // 5. registry: where the credentials are used (a --mirror TARGET)
    let client = Client::new(&deadline);
    let route = crate::sources::route_by_host(&image, opts);
    let at = route
        .as_deref()
        .and_then(|r| r.target(&image))
        .unwrap_or_else(|| image.clone());
    let contact = match registry_api(route.as_deref(), &image) {
        Ok(base) => contact(
            &client,
            &base,
            route.as_deref(),
            &at,
            &reference,
            creds.as_ref(),
        ),
        Err(e) => Contact {
            step: Step::fail(
                "registry",
                image.registry.clone(),
                e,
                "fix the endpoint setting named above",
            ),
            digest: None,
            date: None,
        },
    };
    let pinned = contact
        .digest
        .as_ref()
        .map(|d| format!("{}@{d}", image.name()));
    steps.push(contact.step);

    // 5b. containerd's hosts.toml: which hosts get these credentials
    steps.push(containerd_hosts(&doc.certs_dir, &image, opts));

    // 6. digest
    match &pinned {
        Some(p) => steps.push(Step::new("digest", Status::Ok, format!("pin it: {p}"))),
        None => steps.push(Step::new(
            "digest",
            Status::Skip,
            "no digest: the manifest was not reached",
        )),
    }

    // 7. node
    steps.push(image_fs(doc.image_fs.as_deref()));
    steps.push(clock(contact.date.as_deref()));
    report(steps, pinned)
}

fn fetch(
    opts: &Options,
    image: &ImageRef,
    doc: &DoctorOptions,
) -> Result<BTreeMap<String, AuthConfig>, String> {
    let request = crate::protocol::Request {
        api_version: API_VERSIONS[0].to_string(),
        image: image.name(),
        service_account_token: doc.service_account_token.clone().filter(|t| !t.is_empty()),
        service_account_annotations: if doc.service_account_token.is_some() {
            doc.annotations.clone()
        } else {
            BTreeMap::new()
        },
    };
    let opts = Options {
        registry_check: false,
        ..opts.clone()
    };
    let deadline = Deadline::after(opts.timeout);
    let resp = run::serve(&opts, &request, &deadline).map_err(|f| f.to_string())?;
    Ok(resp.auth)
}

/// Step 2, and the provider entry the kubelet would run (the first match).
fn provider_entry(
    config: Option<&Path>,
    name: &str,
) -> (Step, Option<kubelet_config::config::CredentialProvider>) {
    let Some(path) = config else {
        return (
            Step::new(
                "provider",
                Status::Skip,
                "no --config given: which kubelet provider entry runs is not checked",
            ),
            None,
        );
    };
    let files = match kubelet_config::load::config_files(path) {
        Ok((_, f)) => f,
        Err(e) => {
            return (
                Step::fail(
                    "provider",
                    path.display().to_string(),
                    e.reason(),
                    "pass the file or directory given to --image-credential-provider-config",
                ),
                None,
            );
        }
    };
    let (configs, problems) = kubelet_config::load::decode_each(&files);
    for (file, cfg) in &configs {
        for p in &cfg.providers {
            if let Some(glob) = p
                .match_images
                .iter()
                .find(|g| kubelet_config::matching::glob_matches(g, name).unwrap_or(false))
            {
                return (
                    Step::new(
                        "provider",
                        Status::Ok,
                        format!(
                            "{:?} in {} runs: matchImages {glob:?} matches",
                            p.name,
                            file.display()
                        ),
                    ),
                    Some(p.clone()),
                );
            }
        }
    }
    let why = if problems.is_empty() {
        format!("no matchImages glob in {} matches {name}", path.display())
    } else {
        problems.join("; ")
    };
    (
        Step::fail(
            "provider",
            path.display().to_string(),
            format!("the kubelet would run no provider: {why}"),
            "add a matchImages glob for this registry (pullcred config generate), then pullcred config validate",
        ),
        None,
    )
}

/// The cluster side of `tokenAttributes`, asked with the node's kubeconfig:
/// `node-rbac` (may the node request tokens for the audience?) and
/// `service-account` (the annotations the kubelet requires and the source
/// reads). See [`crate::kube`].
fn cluster_steps(
    kubeconfig: &Path,
    provider: Option<&kubelet_config::config::CredentialProvider>,
    doc: &DoctorOptions,
    opts: &Options,
    image: &ImageRef,
    deadline: &Deadline,
) -> Vec<Step> {
    use crate::kube::{Kube, Lookup};
    let Some(provider) = provider else {
        return vec![Step::new(
            "node-rbac",
            Status::Skip,
            "no provider entry (pass --config): the token audience is not known",
        )];
    };
    let Some(attrs) = &provider.token_attributes else {
        return vec![Step::new(
            "node-rbac",
            Status::Skip,
            format!(
                "provider {:?} has no tokenAttributes: the kubelet requests no service account token for it",
                provider.name
            ),
        )];
    };
    let audience = attrs.service_account_token_audience.as_str();
    let kube = match Kube::connect(kubeconfig, deadline) {
        Ok(k) => k,
        Err(e) => {
            return vec![Step::fail(
                "node-rbac",
                kubeconfig.display().to_string(),
                e,
                "pass the kubelet's kubeconfig (--kubeconfig /etc/kubernetes/kubelet.conf): an https server, its CA, and a client certificate or token",
            )];
        }
    };
    let mut steps = Vec::new();
    // Whose token the pod's would be: from the token's claims.
    let account = match &doc.service_account_token {
        None => None,
        Some(t) => match crate::workload::read_claims(t.expose()) {
            Ok(sa) => Some(sa),
            Err(e) => {
                steps.push(Step::warn(
                    "svc-account",
                    "--service-account-token",
                    e,
                    "pass a token from kubectl create token SA -n NS",
                ));
                None
            }
        },
    };
    let pair = account
        .as_ref()
        .map(|a| (a.namespace.as_str(), a.name.as_str()));
    let whom = match &account {
        Some(a) => format!("{}/{}", a.namespace, a.name),
        None => "any service account (pass --service-account-token to ask for the pod's)".into(),
    };
    let who = kube.identity.describe();
    match kube.may_request_audience(audience, pair) {
        Ok(r) if r.allowed => {
            let seen = format!(
                "{who} may request tokens for audience {audience:?} for {whom} (SubjectAccessReview at {})",
                kube.server()
            );
            if matches!(kube.identity, crate::kube::Identity::Cert { .. }) && !kube.identity.is_node() {
                steps.push(Step::warn(
                    "node-rbac",
                    seen,
                    "the kubeconfig's user is not a node (system:node:NAME in group system:nodes): the answer is for that user, not the kubelet",
                    "pass the kubelet's kubeconfig (/etc/kubernetes/kubelet.conf)",
                ));
            } else {
                steps.push(Step::new("node-rbac", Status::Ok, seen));
            }
        }
        Ok(r) => {
            let reason = if r.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.reason)
            };
            let rbac = kubelet_config::generate::rbac_yaml(
                audience,
                &[],
                &format!("pullcred doctor (the node RBAC for audience {audience:?})"),
            )
            .unwrap_or_default();
            let yaml: Vec<String> = rbac.lines().map(|l| format!("        {l}")).collect();
            steps.push(Step::fail(
                "node-rbac",
                format!("{who} may NOT request tokens for audience {audience:?} for {whom}{reason}"),
                "the API server refuses the kubelet tokens for this audience (ServiceAccountNodeAudienceRestriction): the kubelet gets no token and does not run the plugin",
                format!(
                    "grant the nodes the audience: pullcred config generate ... --token-audience {audience} --rbac-out rbac.yaml, or kubectl apply -f this:\n{}",
                    yaml.join("\n")
                ),
            ));
        }
        Err(e) => steps.push(Step::fail(
            "node-rbac",
            kube.server(),
            e,
            "check the kubeconfig's server, CA and credentials; the node needs create on subjectaccessreviews (the Node authorizer grants it)",
        )),
    }
    let Some(account) = account else {
        return steps;
    };
    let (ns, name) = (account.namespace.as_str(), account.name.as_str());
    match kube.service_account(ns, name) {
        Ok(Lookup::Found(annotations)) => {
            steps.push(annotation_step(attrs, &annotations, doc, opts, image, ns, name));
        }
        Ok(Lookup::NotFound) => steps.push(Step::fail(
            "svc-account",
            format!("{ns}/{name}"),
            "the token's service account does not exist (deleted, or the token is from another cluster)",
            "create the service account, or pass a current token (kubectl create token)",
        )),
        Ok(Lookup::Forbidden(why)) => steps.push(Step::warn(
            "svc-account",
            format!("{ns}/{name}: {why}"),
            "the node may read only the service accounts of pods bound to it (the Node authorizer)",
            "run the doctor on a node where a pod of this service account runs, or with a kubeconfig that may get serviceaccounts",
        )),
        Err(e) => steps.push(Step::fail(
            "svc-account",
            format!("{ns}/{name}"),
            e,
            "check that the API server is reachable from the node",
        )),
    }
    steps
}

/// The service account's annotations against what the kubelet requires
/// (`requiredServiceAccountAnnotationKeys`: missing, the plugin is not run),
/// passes (listed keys only), and what the image's source reads.
fn annotation_step(
    attrs: &kubelet_config::config::TokenAttributes,
    annotations: &BTreeMap<String, String>,
    doc: &DoctorOptions,
    opts: &Options,
    image: &ImageRef,
    ns: &str,
    name: &str,
) -> Step {
    let required = &attrs.required_service_account_annotation_keys;
    let optional = &attrs.optional_service_account_annotation_keys;
    let missing: Vec<&String> = required
        .iter()
        .filter(|k| !annotations.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|k| format!("{k:?}")).collect();
        let sets: Vec<String> = missing.iter().map(|k| format!("{k}=VALUE")).collect();
        return Step::fail(
            "svc-account",
            format!(
                "{ns}/{name} lacks required annotation(s) {}",
                list.join(", ")
            ),
            "requiredServiceAccountAnnotationKeys lists them: the kubelet does not run the plugin for this service account",
            format!(
                "kubectl annotate serviceaccount -n {ns} {name} {}",
                sets.join(" ")
            ),
        );
    }
    // The annotations the image's source reads.
    let mut wanted: Vec<&str> = kubelet_config::sources::served_clouds(&image.registry)
        .into_iter()
        .flat_map(|c| c.source().annotation_keys.iter().copied())
        .collect();
    let vault_serves = opts.config.vault.iter().any(|v| {
        v.registries
            .iter()
            .any(|k| kubelet_config::matching::auth_key_matches(k, &image.name()))
    });
    if vault_serves {
        wanted.push(kubelet_config::pullcred::vault::VAULT_ROLE_ANNOTATION);
    }
    let listed = |k: &str| required.iter().chain(optional).any(|x| x == k);
    let dropped: Vec<String> = wanted
        .iter()
        .filter(|k| annotations.contains_key(**k) && !listed(k))
        .map(|k| format!("{k:?}"))
        .collect();
    let passed: Vec<String> = annotations
        .keys()
        .filter(|k| listed(k))
        .map(|k| format!("{k:?}"))
        .collect();
    let mut seen = format!(
        "{ns}/{name}: passed to the plugin: {}",
        if passed.is_empty() {
            "no annotations".to_string()
        } else {
            passed.join(", ")
        }
    );
    if !dropped.is_empty() {
        return Step::warn(
            "svc-account",
            seen,
            format!(
                "{} set but not listed in tokenAttributes: the kubelet does not pass it to the plugin",
                dropped.join(", ")
            ),
            "add it to optionalServiceAccountAnnotationKeys (pullcred config generate --optional-annotation KEY)",
        );
    }
    let differs: Vec<String> = doc
        .annotations
        .iter()
        .filter(|(k, v)| {
            annotations.get(*k).is_some_and(|have| have != *v) || !annotations.contains_key(*k)
        })
        .map(|(k, _)| format!("{k:?}"))
        .collect();
    if doc.service_account_token.is_some() && !differs.is_empty() {
        return Step::warn(
            "svc-account",
            seen,
            format!(
                "--annotation {} differs from the service account's: the source check above used the --annotation values",
                differs.join(", ")
            ),
            "pass the service account's own annotations (kubectl get serviceaccount -o yaml)",
        );
    }
    let unset: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|k| !annotations.contains_key(*k))
        .collect();
    if !wanted.is_empty() && unset.len() == wanted.len() {
        seen.push_str(&format!(
            "; no identity annotation ({}): the source uses its default identity for this service account",
            unset.join(", ")
        ));
    }
    Step::new("svc-account", Status::Ok, seen)
}

/// The API base (`https://host/v2/`) that answers for `image` with the
/// credentials pullcred gives, as the image's cloud source reaches it (a
/// `--mirror` SOURCE's TARGET, never SOURCE itself); else the image's
/// registry.
fn registry_api(route: Option<&dyn Route>, image: &ImageRef) -> Result<String, String> {
    match route {
        Some(r) => r.registry_api(image),
        None => Ok(api_base(&image.registry)),
    }
}

/// Where a Bearer realm's token service is asked with the credentials: under
/// the source's rule (the ACR exchange's), else the registry check's.
fn realm_url(route: Option<&dyn Route>, base: &str, realm: &str) -> Result<String, String> {
    match route {
        Some(r) => r.realm_url(base, realm),
        None => credential_realm(base, realm).map(|r| r.url()),
    }
}

struct Contact {
    step: Step,
    digest: Option<String>,
    date: Option<String>,
}

const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

fn contact(
    client: &Client,
    base: &str,
    route: Option<&dyn Route>,
    image: &ImageRef,
    reference: &str,
    creds: Option<&AuthConfig>,
) -> Contact {
    let base = base.to_string();
    let manifest = format!("{base}{}/manifests/{reference}", image.repository);
    let done = |step, digest, date| Contact { step, digest, date };
    let first = match client.get(&base, &[]) {
        Ok(r) => r,
        Err(e) => return done(network_failure(&base, &e), None, None),
    };
    let date = first.header("date").map(str::to_string);
    let basic = creds.map(|c| basic_auth(&c.username, &c.password));
    // Work out the Authorization header the manifest request needs.
    let auth: Option<Secret> = match asks(&first) {
        Asks::Nothing => None,
        Asks::Bearer { realm, service } => {
            let Some(raw_realm) = realm.as_deref() else {
                return done(
                    Step::fail(
                        "registry",
                        base,
                        "Bearer challenge without a realm",
                        "report this to the registry's operator",
                    ),
                    None,
                    date,
                );
            };
            let realm = match realm_url(route, &base, raw_realm) {
                Ok(r) => r,
                Err(e) => {
                    return done(
                        Step::fail(
                            "registry",
                            base,
                            e,
                            "the registry's token service must be https; fix the registry's auth configuration",
                        ),
                        None,
                        date,
                    );
                }
            };
            let realm = realm.as_str();
            let mut url = format!(
                "{realm}{}scope=repository:{}:pull",
                if realm.contains('?') { "&" } else { "?" },
                image.repository
            );
            if let Some(s) = &service {
                url.push_str("&service=");
                url.push_str(&percent_encode(s));
            }
            let headers: Vec<(&str, &str)> = basic
                .iter()
                .map(|b| ("Authorization", b.as_str()))
                .collect();
            let r = match client.get(&url, &headers) {
                Ok(r) => r,
                Err(e) => return done(network_failure(realm, &e), None, date),
            };
            if !r.is_success() {
                return done(
                    classify(&r, realm, image, route, creds.is_some()),
                    None,
                    date,
                );
            }
            match bearer_token(&r.body) {
                Some(t) => Some(Secret::new(format!("Bearer {}", t.expose()))),
                None => {
                    return done(
                        Step::fail(
                            "registry",
                            realm.to_string(),
                            "the token service answered without a token",
                            "check the registry's token service",
                        ),
                        None,
                        date,
                    );
                }
            }
        }
        Asks::Basic => basic.map(Secret::new),
        Asks::Status(_) => {
            return done(
                classify(&first, &base, image, route, creds.is_some()),
                None,
                date,
            );
        }
    };
    let mut headers = vec![("Accept", MANIFEST_TYPES)];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.expose()));
    }
    let r = match client.head(&manifest, &headers) {
        Ok(r) => r,
        Err(e) => return done(network_failure(&manifest, &e), None, date),
    };
    if r.is_success() {
        let digest = r.header("docker-content-digest").map(str::to_string);
        let seen = format!(
            "HEAD {manifest}: HTTP {}{}",
            r.status,
            rate_limit(&r).map(|l| format!("; {l}")).unwrap_or_default()
        );
        return done(Step::new("registry", Status::Ok, seen), digest, date);
    }
    let mut step = classify(&r, &manifest, image, route, creds.is_some());
    if r.status == 404 {
        let tags_url = format!("{base}{}/tags/list", image.repository);
        let mut headers = Vec::new();
        if let Some(a) = &auth {
            headers.push(("Authorization", a.expose()));
        }
        if let Some(near) = client
            .get(&tags_url, &headers)
            .ok()
            .filter(Response::is_success)
            .and_then(|t| nearby_tags(&t.body, reference))
        {
            step.fix = Some(format!(
                "{}; tags nearby: {near}",
                step.fix.unwrap_or_default()
            ));
        }
    }
    done(step, None, date)
}

fn bearer_token(body: &[u8]) -> Option<Secret> {
    #[derive(serde::Deserialize)]
    struct T {
        token: Option<Secret>,
        access_token: Option<Secret>,
    }
    let t: T = serde_json::from_slice(body).ok()?;
    t.token.or(t.access_token).filter(|s| !s.is_empty())
}

fn classify(
    r: &Response,
    endpoint: &str,
    image: &ImageRef,
    route: Option<&dyn Route>,
    had_creds: bool,
) -> Step {
    let seen = format!("{endpoint}: HTTP {}", r.status);
    let hint = route.and_then(|r| r.forbidden_hint());
    match r.status {
        401 if had_creds => Step::fail(
            "registry",
            seen,
            "401 Unauthorized: the credentials are wrong or expired",
            "renew or correct the credentials at their source (the file, secret or identity named above)",
        ),
        401 => Step::fail(
            "registry",
            seen,
            "401 Unauthorized: the registry wants credentials and pullcred has none",
            "configure a source for this registry",
        ),
        403 => Step::fail(
            "registry",
            seen,
            "403 Forbidden: authenticated, but not allowed to pull this repository",
            hint.unwrap_or("give the account pull (read) permission on this repository or project"),
        ),
        404 => Step::fail(
            "registry",
            seen,
            "404 Not Found: the repository or the tag does not exist",
            format!("check the name and tag of {}", image.name()),
        ),
        429 => Step::fail(
            "registry",
            format!(
                "{seen}{}",
                rate_limit(r).map(|l| format!("; {l}")).unwrap_or_default()
            ),
            "429 Too Many Requests: the registry's pull rate limit is exhausted",
            "wait for the window to reset, authenticate (higher limits), or pull through a cache (ECR pull-through cache, Harbor proxy)",
        ),
        s if s >= 500 => Step::fail(
            "registry",
            seen,
            format!("the registry is failing (HTTP {s})"),
            "retry later; check the registry's status",
        ),
        s => Step::fail(
            "registry",
            seen,
            format!("unexpected HTTP {s}"),
            "check the registry's address",
        ),
    }
}

/// `ratelimit-remaining: 76;w=21600` → "76 pulls remaining of 100 per 6h0m0s window".
fn rate_limit(r: &Response) -> Option<String> {
    let rem = r.header("ratelimit-remaining")?;
    let (count, window) = rem
        .split_once(";w=")
        .map_or((rem, None), |(c, w)| (c, w.trim().parse::<i64>().ok()));
    let limit = r
        .header("ratelimit-limit")
        .map(|l| l.split(';').next().unwrap_or(l).trim().to_string());
    let mut s = format!("{} pulls remaining", count.trim());
    if let Some(l) = limit {
        s.push_str(&format!(" of {l}"));
    }
    if let Some(w) = window {
        s.push_str(&format!(" per {} window", human(w)));
    }
    Some(s)
}

fn network_failure(endpoint: &str, e: &HttpError) -> Step {
    let (cause, fix) = match e.kind {
        HttpErrorKind::Dns => (
            "DNS: the registry's name does not resolve",
            "check the name, the node's resolv.conf and DNS reachability",
        ),
        HttpErrorKind::Connect => (
            "the connection was refused or failed: the registry is down or unreachable",
            "check the registry is up, and the node's routes, proxies and security groups",
        ),
        HttpErrorKind::Tls => (
            "TLS: the certificate is not trusted or does not match",
            "install the registry's CA on the node, or fix the registry's certificate",
        ),
        HttpErrorKind::Timeout => (
            "timeout: no answer within the deadline",
            "check network reachability (firewall, proxy, NAT); raise --timeout if the link is slow",
        ),
        _ => (
            "the HTTP exchange failed",
            "check the registry's address and health",
        ),
    };
    Step::fail("registry", format!("{endpoint}: {e}"), cause, fix)
}

fn nearby_tags(body: &[u8], wanted: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Tags {
        tags: Option<Vec<String>>,
    }
    let mut tags = serde_json::from_slice::<Tags>(body).ok()?.tags?;
    if tags.is_empty() {
        return None;
    }
    tags.sort_by_key(|t| (edit_distance(t, wanted), t.clone()));
    Some(tags.into_iter().take(5).collect::<Vec<_>>().join(", "))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn image_fs(given: Option<&Path>) -> Step {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => match IMAGE_FS_CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
        {
            Some(p) => p,
            None => {
                return Step::new(
                    "image-fs",
                    Status::Skip,
                    format!(
                        "no container runtime image store found ({})",
                        IMAGE_FS_CANDIDATES.join(", ")
                    ),
                );
            }
        },
    };
    let st = match rustix::fs::statvfs(&path) {
        Ok(s) => s,
        Err(e) => return Step::new("image-fs", Status::Skip, format!("{}: {e}", path.display())),
    };
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let total = st.f_blocks.saturating_mul(st.f_frsize).max(1);
    let pct = free as f64 * 100.0 / total as f64;
    let seen = format!(
        "{}: {} free of {} ({pct:.0}%)",
        path.display(),
        bytes(free),
        bytes(total)
    );
    const GIB: u64 = 1 << 30;
    if free < GIB / 2 {
        Step::fail(
            "image-fs",
            seen,
            "the image filesystem is (nearly) full: pulls fail with \"no space left on device\"",
            "free space: crictl rmi --prune, raise the kubelet's image GC thresholds, or grow the disk",
        )
    } else if pct < 10.0 || free < 5 * GIB {
        Step::warn(
            "image-fs",
            seen,
            "little space left for images",
            "crictl rmi --prune, or check the kubelet's imageGCHighThresholdPercent",
        )
    } else {
        Step::new("image-fs", Status::Ok, seen)
    }
}

/// Compares the node's clock with the registry's `Date` header.
fn clock(date: Option<&str>) -> Step {
    let Some(remote) = date.and_then(crate::time::parse_http_date) else {
        return Step::new(
            "clock",
            Status::Skip,
            "no Date header from the registry to compare with",
        );
    };
    let offset = crate::time::now_unix() - remote;
    let seen = format!(
        "node clock is {}s {} the registry's",
        offset.abs(),
        if offset >= 0 { "ahead of" } else { "behind" }
    );
    if offset.abs() > 300 {
        Step::warn(
            "clock",
            seen,
            "the node's clock is off: tokens look expired or not yet valid",
            "fix time sync (chrony/systemd-timesyncd)",
        )
    } else {
        Step::new("clock", Status::Ok, seen)
    }
}

/// The `containerd` step: what `<certs_dir>/<registry>/hosts.toml` makes of
/// the credentials pullcred gives for the registry. The kubelet passes only
/// username and password (no `server_address`), so containerd offers them to
/// EVERY host it tries for the registry: the mirrors in order, then `server`
/// (or the registry itself) as the fallback.
fn containerd_hosts(certs_dir: &Path, image: &ImageRef, opts: &Options) -> Step {
    let reg = &image.registry;
    let dir = [reg.as_str(), "_default"]
        .iter()
        .map(|d| certs_dir.join(d).join("hosts.toml"))
        .find(|p| p.exists());
    let default_upstream = if reg == "docker.io" {
        "https://registry-1.docker.io".to_string()
    } else {
        format!("https://{reg}")
    };
    let Some(path) = dir else {
        return Step::new(
            "containerd",
            Status::Skip,
            format!(
                "no {}: containerd pulls from {default_upstream} directly",
                certs_dir.join(reg).join("hosts.toml").display()
            ),
        );
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            return Step::new(
                "containerd",
                Status::Skip,
                format!("{}: {e}", path.display()),
            );
        }
    };
    let hosts = match hosts_toml::parse(&text) {
        Ok(h) => h,
        Err(e) => {
            return Step::warn(
                "containerd",
                format!("{}: {e}", path.display()),
                "containerd refuses a hosts.toml it cannot parse, and the pull fails",
                "fix the file (containerd's docs/hosts.md)",
            );
        }
    };
    let server = hosts.server.clone().unwrap_or(default_upstream);
    let mirrors: Vec<&hosts_toml::Host> = hosts
        .hosts
        .iter()
        .filter(|h| {
            h.capabilities
                .as_ref()
                .is_none_or(|c| c.iter().any(|c| c == "pull"))
        })
        .collect();
    let mut tried: Vec<String> = mirrors
        .iter()
        .map(|h| {
            let mut flags = Vec::new();
            if h.override_path {
                flags.push("override_path");
            }
            if h.skip_verify {
                flags.push("skip_verify");
            }
            if flags.is_empty() {
                h.url.clone()
            } else {
                format!("{} ({})", h.url, flags.join(", "))
            }
        })
        .collect();
    let server_pulls = hosts
        .capabilities
        .as_ref()
        .is_none_or(|c| c.iter().any(|c| c == "pull"));
    if server_pulls {
        tried.push(format!("{server} (server)"));
    }
    let mut seen = format!(
        "{} tries, in order: {}; the credentials pullcred gives for {reg} go to each of them (the kubelet sets no server_address)",
        path.display(),
        tried.join(", ")
    );
    let first = mirrors.first().map(|h| authority(&h.url));
    let map = crate::sources::mirror::mirror_for(image, &opts.mirrors);
    match (map, &first) {
        (Some(m), Some(f)) if &m.target == f => seen.push_str(&format!(
            "; --mirror {reg}={}{} points at the first mirror host",
            m.target,
            if m.prefix.is_empty() {
                String::new()
            } else {
                format!("/{}", m.prefix)
            }
        )),
        (Some(m), Some(f)) => {
            return Step::warn(
                "containerd",
                seen,
                format!(
                    "--mirror maps {reg} to {}, but containerd asks {f} first: {f} gets {}'s credentials",
                    m.target, m.target
                ),
                format!(
                    "point --mirror {reg}= at {f}, or list {} first in hosts.toml",
                    m.target
                ),
            );
        }
        (Some(m), None) => seen.push_str(&format!(
            "; --mirror maps {reg} to {}, which containerd does not list: the credentials are {}'s",
            m.target, m.target
        )),
        (None, Some(_)) => seen.push_str(&format!(
            "; no --mirror for {reg}: the mirror gets {reg}'s own credentials"
        )),
        (None, None) => {}
    }
    let server_host = authority(&server);
    if let Some(other) = mirrors
        .iter()
        .map(|h| authority(&h.url))
        .find(|a| server_pulls && *a != server_host)
    {
        return Step::warn(
            "containerd",
            seen,
            format!(
                "a mirror ({other}) is listed and containerd falls back to {server_host}: the mirror's credentials, or the upstream's, then reach the other host"
            ),
            format!(
                "set server to the mirror too (server = \"https://{other}\"), or rewrite the image to the mirror's host instead of a hosts.toml mirror"
            ),
        );
    }
    Step::new("containerd", Status::Ok, seen)
}

/// `host[:port]` of a URL (`https://h:443/v2/x` → `h`); the default port is dropped.
fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    host.strip_suffix(":443").unwrap_or(host).to_string()
}

/// A reader for the keys of containerd's `hosts.toml` that decide where
/// credentials go: `server`, `capabilities`, and the `[host."URL"]` tables
/// with `capabilities`, `override_path`, `ca`, `skip_verify`. Other keys
/// and tables (`header`, `client`...) are skipped.
mod hosts_toml {
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct HostsToml {
        pub server: Option<String>,
        /// The server's own capabilities (top-level `capabilities`).
        pub capabilities: Option<Vec<String>>,
        pub ca: Vec<String>,
        pub skip_verify: bool,
        /// In file order: the order containerd tries them.
        pub hosts: Vec<Host>,
    }

    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Host {
        pub url: String,
        pub capabilities: Option<Vec<String>>,
        pub override_path: bool,
        pub ca: Vec<String>,
        pub skip_verify: bool,
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Value {
        Str(String),
        Bool(bool),
        List(Vec<String>),
        Other,
    }

    enum Table {
        Root,
        Host(usize),
        Skipped,
    }

    pub fn parse(text: &str) -> Result<HostsToml, String> {
        let mut out = HostsToml::default();
        let mut table = Table::Root;
        let mut lines = text.lines().enumerate();
        while let Some((n, raw)) = lines.next() {
            let mut line = strip_comment(raw).trim().to_string();
            if line.is_empty() {
                continue;
            }
            let at = |e: String| format!("line {}: {e}", n + 1);
            if line.starts_with('[') {
                table = header(&line, &mut out).map_err(at)?;
                continue;
            }
            // a multi-line array: read on until its brackets balance
            while line.matches('[').count() > line.matches(']').count() {
                match lines.next() {
                    Some((_, more)) => {
                        line.push(' ');
                        line.push_str(strip_comment(more).trim());
                    }
                    None => return Err(at("unterminated array".into())),
                }
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| at(format!("{line:?} is not KEY = VALUE")))?;
            let key = unquote_key(key.trim());
            let value = value_of(value.trim()).map_err(at)?;
            match &table {
                Table::Root => match (key.as_str(), value) {
                    ("server", Value::Str(s)) => out.server = Some(s),
                    ("capabilities", Value::List(l)) => out.capabilities = Some(l),
                    ("ca", Value::Str(s)) => out.ca = vec![s],
                    ("ca", Value::List(l)) => out.ca = l,
                    ("skip_verify", Value::Bool(b)) => out.skip_verify = b,
                    ("server" | "capabilities" | "skip_verify", _) => {
                        return Err(at(format!("{key} has the wrong type")));
                    }
                    _ => {}
                },
                Table::Host(i) => {
                    let h = &mut out.hosts[*i];
                    match (key.as_str(), value) {
                        ("capabilities", Value::List(l)) => h.capabilities = Some(l),
                        ("override_path", Value::Bool(b)) => h.override_path = b,
                        ("skip_verify", Value::Bool(b)) => h.skip_verify = b,
                        ("ca", Value::Str(s)) => h.ca = vec![s],
                        ("ca", Value::List(l)) => h.ca = l,
                        ("capabilities" | "override_path" | "skip_verify", _) => {
                            return Err(at(format!("{key} has the wrong type")));
                        }
                        _ => {}
                    }
                }
                Table::Skipped => {}
            }
        }
        Ok(out)
    }

    fn header(line: &str, out: &mut HostsToml) -> Result<Table, String> {
        let inner = line
            .strip_prefix('[')
            .and_then(|l| l.strip_suffix(']'))
            .ok_or_else(|| format!("{line:?} is not a [table] header"))?
            .trim();
        let Some(rest) = inner.strip_prefix("host.") else {
            return Ok(Table::Skipped);
        };
        let rest = rest.trim();
        let (url, tail) = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let end = rest[1..]
                    .find(q)
                    .ok_or_else(|| format!("{line:?}: unterminated host URL"))?;
                (rest[1..1 + end].to_string(), rest[end + 2..].trim())
            }
            _ => return Err(format!("{line:?}: the host URL must be quoted")),
        };
        if !tail.is_empty() {
            // [host."URL".header] and the like: not ours
            return Ok(Table::Skipped);
        }
        out.hosts.push(Host {
            url,
            ..Host::default()
        });
        Ok(Table::Host(out.hosts.len() - 1))
    }

    fn unquote_key(k: &str) -> String {
        k.trim_matches(|c| c == '"' || c == '\'').to_string()
    }

    /// Drops a `#` comment that is not inside a string.
    fn strip_comment(line: &str) -> &str {
        let mut quote: Option<char> = None;
        let mut escaped = false;
        for (i, c) in line.char_indices() {
            match quote {
                Some('"') if escaped => escaped = false,
                Some('"') if c == '\\' => escaped = true,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' => quote = Some(c),
                None if c == '#' => return &line[..i],
                None => {}
            }
        }
        line
    }

    fn value_of(v: &str) -> Result<Value, String> {
        match v {
            "true" => return Ok(Value::Bool(true)),
            "false" => return Ok(Value::Bool(false)),
            _ => {}
        }
        if v.starts_with('"') || v.starts_with('\'') {
            let (s, rest) = string(v)?;
            if !rest.trim().is_empty() {
                return Err(format!("unexpected {rest:?} after a string"));
            }
            return Ok(Value::Str(s));
        }
        if let Some(body) = v.strip_prefix('[') {
            let mut items = Vec::new();
            let mut rest = body.trim_start();
            loop {
                if let Some(after) = rest.strip_prefix(']') {
                    if !after.trim().is_empty() {
                        return Err(format!("unexpected {after:?} after an array"));
                    }
                    return Ok(Value::List(items));
                }
                let (s, after) = string(rest)?;
                items.push(s);
                rest = after.trim_start();
                rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
            }
        }
        Ok(Value::Other)
    }

    /// A basic ("...", with escapes) or literal ('...') string at the start
    /// of `v`, and what follows it.
    fn string(v: &str) -> Result<(String, &str), String> {
        let mut chars = v.char_indices();
        let q = match chars.next() {
            Some((_, q @ ('"' | '\''))) => q,
            _ => return Err(format!("{v:?}: expected a quoted string")),
        };
        let mut out = String::new();
        let mut escaped = false;
        for (i, c) in chars {
            if escaped {
                out.push(match c {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                });
                escaped = false;
            } else if q == '"' && c == '\\' {
                escaped = true;
            } else if c == q {
                return Ok((out, &v[i + 1..]));
            } else {
                out.push(c);
            }
        }
        Err(format!("{v:?}: unterminated string"))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_keys_that_matter() {
            let h = parse(
                r#"
# docker.io through a pull-through cache
server = "https://registry-1.docker.io"   # the fallback
ca = "/etc/ca.pem"

[host."https://123456789012.dkr.ecr.us-east-1.amazonaws.com/v2/docker-hub"]
  capabilities = ["pull", "resolve"]
  override_path = true
  ca = ["/a.pem", '/b#c.pem']
  skip_verify = false

[host."https://mirror.example:5000".header]
  x-custom = ["1"]

[host.'https://second.example']
  capabilities = [
    "pull",
  ]
  skip_verify = true
"#,
            )
            .unwrap();
            assert_eq!(h.server.as_deref(), Some("https://registry-1.docker.io"));
            assert_eq!(h.ca, ["/etc/ca.pem"]);
            assert_eq!(h.hosts.len(), 2);
            let e = &h.hosts[0];
            assert_eq!(
                e.url,
                "https://123456789012.dkr.ecr.us-east-1.amazonaws.com/v2/docker-hub"
            );
            assert!(e.override_path && !e.skip_verify);
            assert_eq!(
                e.capabilities.as_deref(),
                Some(&["pull".to_string(), "resolve".to_string()][..])
            );
            assert_eq!(e.ca, ["/a.pem", "/b#c.pem"]);
            let s = &h.hosts[1];
            assert_eq!(s.url, "https://second.example");
            assert!(s.skip_verify && !s.override_path);
            assert_eq!(s.capabilities.as_deref(), Some(&["pull".to_string()][..]));
        }

        #[test]
        fn broken_files_are_errors() {
            for bad in [
                "server = https://x",
                "server = \"https://x",
                "[host.https://x]",
                "[host.\"https://x\"]\noverride_path = \"yes\"",
                "capabilities = [\"pull\"",
                "just words",
            ] {
                assert!(parse(bad).is_err(), "{bad}");
            }
            assert_eq!(parse("").unwrap(), HostsToml::default());
        }
    }
}

fn bytes(n: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    if n as f64 >= GIB {
        format!("{:.1} GiB", n as f64 / GIB)
    } else {
        format!("{:.0} MiB", n as f64 / MIB)
    }
}

fn human(secs: i64) -> String {
    crate::protocol::go_duration(std::time::Duration::from_secs(secs.max(0) as u64))
}

pub fn render_text(r: &Report) -> String {
    let mut out = format!("pullcred doctor {}\n", r.image);
    for s in &r.steps {
        let tag = match s.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        };
        out.push_str(&format!("{tag}  {:<12} {}\n", s.step, s.seen));
        if let Some(c) = &s.cause {
            out.push_str(&format!("      {:<12} cause: {c}\n", ""));
        }
        if let Some(f) = &s.fix {
            out.push_str(&format!("      {:<12} fix:   {f}\n", ""));
        }
    }
    out.push_str(if r.would_pull {
        "=> the image would pull\n"
    } else {
        "=> the image would NOT pull\n"
    });
    out
}

pub fn render_json(r: &Report) -> String {
    serde_json::to_string_pretty(r).expect("report serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearby_tags_by_edit_distance() {
        let body = br#"{"name":"x","tags":["1.0","1.1","2.0","latest","1.0.1"]}"#;
        assert_eq!(
            nearby_tags(body, "1.2").unwrap(),
            "1.0, 1.1, 2.0, 1.0.1, latest"
        );
        assert_eq!(nearby_tags(br#"{"tags":null}"#, "x"), None);
    }

    #[test]
    fn authority_of_a_host_url() {
        assert_eq!(authority("https://m.example:443/v2/x"), "m.example");
        assert_eq!(authority("https://m.example:5000"), "m.example:5000");
        assert_eq!(authority("http://u@m.example/"), "m.example");
    }

    #[test]
    fn rate_limit_headers() {
        let r = Response {
            status: 429,
            headers: vec![
                ("ratelimit-limit".into(), "100;w=21600".into()),
                ("ratelimit-remaining".into(), "0;w=21600".into()),
            ],
            body: vec![],
        };
        assert_eq!(
            rate_limit(&r).unwrap(),
            "0 pulls remaining of 100 per 6h0m0s window"
        );
    }
}
