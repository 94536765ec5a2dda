//! OAuth 2.0 token exchange (RFC 8693) and JFrog Artifactory's OIDC token
//! exchange: the config file's `exchanges:` entries.
//!
//! Each entry serves registry keys (`registries:`, docker config key rules,
//! matched as the kubelet matches them; the longest matching key across all
//! entries wins, the first entry on a tie). On a cache miss it posts a
//! subject token to its token endpoint and answers with the token it gets:
//!
//! - `subjectToken: pod`: the pod's service-account token from the kubelet's
//!   request (KEP-4412; the kubelet config needs `tokenAttributes`). Every
//!   service account that comes with a token is its own identity ("this
//!   exchange, for this service account"): which of them get a registry
//!   token is the issuer's trust rule, not pullcred's. A request without a
//!   token is an error that names `tokenAttributes`.
//! - `subjectToken: file`: the node's token, read from `subjectTokenFile`
//!   on every miss (a projected token is rotated behind a symlink).
//!
//! The wire formats are in [`wire`] (pure); the call in `client` (feature
//! `http`; `disabled.rs` without it). The answer's expiry decides
//! `cacheDuration` (see [`wire::read_answer`]: `expires_in`, an absolute
//! `expiresAtField`, the access token's own `exp`, else ten minutes).
//! One token serves every registry key of its entry.

#[cfg_attr(not(feature = "http"), path = "disabled.rs")]
mod client;
pub mod wire;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kubelet_config::pullcred::exchange::Exchange as Config;

use super::{Credential, FetchContext, Fetched, Route, Source, SourceError, token_key};
use crate::image::ImageRef;
use crate::private_file::{self, Limits};
use crate::secret::Secret;
use crate::settings::{Options, WorkloadSettings};
use crate::workload::{Identity, PodRules, ServiceAccount, Workload};

/// Largest node token file read.
const MAX_TOKEN_FILE: u64 = 64 * 1024;

/// The config file's `exchanges:` entries, as a source.
pub struct Exchange;

impl Source for Exchange {
    fn route(&self, image: &ImageRef, opts: &Options) -> Option<Box<dyn Route>> {
        let name = image.name();
        let mut best: Option<(usize, &Config, String)> = None;
        for x in &opts.config.exchanges {
            for raw in &x.registries {
                let Some(key) = super::dockerconfig::normalize_key(raw) else {
                    continue;
                };
                if kubelet_config::matching::auth_key_matches(&key, &name)
                    && best.as_ref().is_none_or(|(len, _, _)| key.len() > *len)
                {
                    best = Some((key.len(), x, key));
                }
            }
        }
        best.map(|(_, x, key)| {
            Box::new(ExchangeRoute {
                rules: ExchangeRules {
                    exchange: x.name.clone(),
                },
                x: x.clone(),
                key,
            }) as Box<dyn Route>
        })
    }

    fn path_scoped(&self, image: &ImageRef, opts: &Options) -> bool {
        opts.config
            .exchanges
            .iter()
            .flat_map(|x| &x.registries)
            .filter_map(|k| super::dockerconfig::normalize_key(k))
            .any(|k| super::dockerconfig::path_key_for_host(&k, image))
    }
}

/// Which token an entry exchanges.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject<'a> {
    Pod,
    File(&'a str),
}

fn subject(x: &Config) -> Subject<'_> {
    match (x.subject_token.as_str(), x.subject_token_file.as_deref()) {
        ("file", Some(path)) => Subject::File(path),
        _ => Subject::Pod,
    }
}

#[derive(Debug)]
struct ExchangeRoute {
    x: Config,
    /// The registry key that matched, normalized.
    key: String,
    rules: ExchangeRules,
}

impl Route for ExchangeRoute {
    fn id(&self) -> &'static str {
        "exchange"
    }

    fn describe(&self, _: &ImageRef) -> String {
        let x = &self.x;
        format!(
            "token exchange {} ({}) at {}, registry key {}",
            x.name,
            wire::Flavor::of(x).name(),
            wire::token_url(x),
            self.key
        )
    }

    fn node_identity(&self, _: &Options) -> String {
        match subject(&self.x) {
            Subject::Pod => "the pod's service-account token (the kubelet config's tokenAttributes); a request without one fails".to_string(),
            Subject::File(p) => format!("the node's token file {p}"),
        }
    }

    /// Keyed by everything in the entry that shapes the token (not by
    /// host: one token serves every key of the entry) and, for pod tokens,
    /// whose token it is.
    fn cache_parts(
        &self,
        _: &ImageRef,
        _: &Options,
        workload: Option<&Workload>,
    ) -> Vec<(&'static str, String)> {
        let x = &self.x;
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let (kind, file) = match subject(x) {
            Subject::Pod => ("pod", String::new()),
            Subject::File(p) => ("file", p.to_string()),
        };
        let parameters: Vec<String> = x
            .parameters
            .iter()
            .map(|(k, v)| format!("{}:{k}={v}", k.len()))
            .collect();
        token_key(
            "exchange",
            vec![("exchange", x.name.clone())],
            workload,
            vec![
                ("token-url", wire::token_url(x)),
                ("flavor", wire::Flavor::of(x).name().to_string()),
                ("subject", kind.to_string()),
                ("subject-file", file),
                ("subject-token-type", opt(&x.subject_token_type)),
                ("subject-token-field", opt(&x.subject_token_field)),
                ("audience", opt(&x.audience)),
                ("scope", opt(&x.scope)),
                ("resource", opt(&x.resource)),
                ("requested-token-type", opt(&x.requested_token_type)),
                ("provider-name", opt(&x.provider_name)),
                ("request-format", opt(&x.request_format)),
                ("parameters", parameters.join("\n")),
                ("token-field", opt(&x.token_field)),
                ("expires-in-field", opt(&x.expires_in_field)),
                ("expires-at-field", opt(&x.expires_at_field)),
                ("username", opt(&x.username)),
                ("username-field", opt(&x.username_field)),
            ],
        )
    }

    fn pod_rules(&self) -> Option<&dyn PodRules> {
        (subject(&self.x) == Subject::Pod).then_some(&self.rules as &dyn PodRules)
    }

    fn shares_token_across_hosts(&self) -> bool {
        true
    }

    fn fetch(&self, ctx: &FetchContext) -> Result<Credential, SourceError> {
        let x = &self.x;
        let token = match subject(x) {
            Subject::Pod => match ctx.workload {
                Some(w) => w.token.clone(),
                None => {
                    return Err(SourceError::config(
                        format!("token exchange {}", x.name),
                        "subjectToken: pod needs the pod's service-account token, and the request carries no serviceAccountToken; add tokenAttributes (serviceAccountTokenAudience, cacheType: ServiceAccount, requireServiceAccount: true) to this provider in the kubelet's credential provider config (Kubernetes 1.33+)",
                    ));
                }
            },
            Subject::File(path) => read_token_file(&x.name, Path::new(path))?,
        };
        let issued = client::exchange(x, &token, ctx.deadline)?;
        Ok(Credential::Token(Fetched {
            username: issued.username,
            password: issued.password,
            expires_at: issued.expires_at,
        }))
    }
}

/// The node's subject token, read afresh (projected tokens are symlinks
/// into a `..data` directory the kubelet swaps on rotation).
fn read_token_file(exchange: &str, path: &Path) -> Result<Secret, SourceError> {
    let step = || {
        format!(
            "token exchange {exchange}: subjectTokenFile {}",
            path.display()
        )
    };
    let bytes = private_file::open_regular(path, Limits::shared(MAX_TOKEN_FILE))
        .map_err(|e| SourceError::config(step(), e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| SourceError::config(step(), "not UTF-8"))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(SourceError::config(step(), "is empty"));
    }
    Ok(Secret::new(token))
}

/// The identity a pod asks for: this exchange, with its own token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeIdentity {
    pub exchange: String,
}

impl Identity for ExchangeIdentity {
    fn describe(&self) -> String {
        format!("its own token, exchanged by exchange {}", self.exchange)
    }

    fn cache_parts(&self) -> Vec<(&'static str, String)> {
        vec![("sa-exchange", self.exchange.clone())]
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Every service account with a token gets its own identity; the issuer's
/// trust rule decides which of them get a registry token.
#[derive(Debug)]
struct ExchangeRules {
    exchange: String,
}

impl PodRules for ExchangeRules {
    fn identity(
        &self,
        _: &ServiceAccount,
        _: &BTreeMap<String, String>,
        _: &WorkloadSettings,
    ) -> Result<Option<Arc<dyn Identity>>, String> {
        Ok(Some(Arc::new(ExchangeIdentity {
            exchange: self.exchange.clone(),
        })))
    }

    fn missing_hint(&self, _: &WorkloadSettings) -> String {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(yaml: &str) -> Options {
        let c = kubelet_config::pullcred::parse(&format!(
            "apiVersion: pullcred.dev/v1alpha1\nkind: PullcredConfig\nexchanges:\n{yaml}"
        ))
        .unwrap();
        assert!(
            kubelet_config::pullcred::check(&c).is_empty(),
            "{:?}",
            kubelet_config::pullcred::check(&c)
        );
        Options {
            config: Arc::new(c),
            ..Options::default()
        }
    }

    const TWO: &str = "- name: broad\n  registries: ['*.jfrog.io']\n  flavor: artifactory\n  tokenUrl: https://acme.jfrog.io\n  providerName: k8s\n  subjectToken: pod\n- name: narrow\n  registries: [acme.jfrog.io/team-a]\n  tokenUrl: https://sts.example.com/token\n  subjectToken: file\n  subjectTokenFile: /var/run/node-token\n";

    fn route(image: &str, o: &Options) -> Option<Box<dyn Route>> {
        Exchange.route(&ImageRef::parse(image).unwrap(), o)
    }

    #[test]
    fn keys_route_as_docker_config_keys_and_the_longest_wins() {
        let o = opts(TWO);
        let r = route("acme.jfrog.io/team-a/app", &o).unwrap();
        assert!(
            r.describe(&ImageRef::parse("x/y").unwrap())
                .contains("narrow")
        );
        assert!(
            r.pod_rules().is_none(),
            "a node token file: no per-pod identity"
        );
        let r = route("acme.jfrog.io/team-b/app", &o).unwrap();
        assert!(
            r.describe(&ImageRef::parse("x/y").unwrap())
                .contains("broad")
        );
        assert!(r.pod_rules().is_some());
        assert!(route("other.example.com/app", &o).is_none());
        assert!(
            route("a.b.jfrog.io/app", &o).is_none(),
            "a glob label is one label"
        );
        let img = ImageRef::parse("acme.jfrog.io/team-b/app").unwrap();
        assert!(Exchange.path_scoped(&img, &o));
        assert!(!Exchange.path_scoped(&ImageRef::parse("x.jfrog.io/app").unwrap(), &o));
    }

    #[test]
    fn every_service_account_is_its_own_identity() {
        let o = opts(TWO);
        let r = route("x.jfrog.io/app", &o).unwrap();
        let rules = r.pod_rules().unwrap();
        let sa = |name: &str| ServiceAccount {
            issuer: "i".into(),
            namespace: "ns".into(),
            name: name.into(),
            uid: "u".into(),
            expires_at: 0,
        };
        let id = rules
            .identity(&sa("a"), &BTreeMap::new(), &WorkloadSettings::default())
            .unwrap()
            .unwrap();
        assert_eq!(id.cache_parts(), [("sa-exchange", "broad".to_string())]);
        let img = ImageRef::parse("x.jfrog.io/app").unwrap();
        let w = |name: &str| Workload {
            account: sa(name),
            identity: id.clone(),
            token: Secret::new("t"),
        };
        let (a, b) = (w("a"), w("b"));
        assert_ne!(
            r.cache_parts(&img, &o, Some(&a)),
            r.cache_parts(&img, &o, Some(&b))
        );
        // One token serves every host of the entry.
        let other = ImageRef::parse("y.jfrog.io/app").unwrap();
        assert_eq!(
            r.cache_parts(&img, &o, Some(&a)),
            r.cache_parts(&other, &o, Some(&a))
        );
    }

    #[test]
    fn a_pod_exchange_without_a_token_names_token_attributes() {
        let o = opts(TWO);
        let img = ImageRef::parse("x.jfrog.io/app").unwrap();
        let r = route("x.jfrog.io/app", &o).unwrap();
        let deadline = crate::deadline::Deadline::after(std::time::Duration::from_secs(5));
        let e = r
            .fetch(&FetchContext {
                image: &img,
                opts: &o,
                workload: None,
                deadline: &deadline,
            })
            .unwrap_err();
        assert!(e.to_string().contains("tokenAttributes"), "{e}");
        assert_eq!(e.kind, crate::error::Kind::Config);
    }

    #[test]
    fn node_token_file_errors_name_the_file() {
        let e = read_token_file("n", Path::new("/nonexistent/pullcred/token")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/pullcred/token"), "{e}");
        let dir = std::env::temp_dir().join(format!("pullcred-exchange-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("empty");
        std::fs::write(&f, "\n").unwrap();
        assert!(
            read_token_file("n", &f)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        std::fs::write(&f, "tok\n").unwrap();
        assert_eq!(read_token_file("n", &f).unwrap().expose(), "tok");
        std::fs::remove_dir_all(&dir).ok();
    }
}
