//! `--mirror SOURCE=TARGET[/PREFIX]`: a declarative mirror map, for every
//! registry pullcred serves.
//!
//! Images of SOURCE (`host[:port]`, matched exactly, e.g. `docker.io`) get
//! the credentials of `TARGET/PREFIX/<repository>`: an ECR pull-through
//! cache (`<acct>.dkr.ecr.<region>.amazonaws.com/docker-hub`), an Artifact
//! Registry remote repository (`us-docker.pkg.dev/proj/remote`), an ACR, or
//! a static key (a Harbor proxy project `harbor.example.com/dockerhub-proxy`).
//! The answer is keyed SOURCE, the host the kubelet asked about: containerd
//! hands the credentials given for SOURCE to every host its `hosts.toml`
//! lists for SOURCE (README, "Registry mirrors and pull-through caches").
//!
//! The route wraps the TARGET's own route, found through the same routing
//! (static keys first, then the host's cloud) on the rewritten image, and
//! delegates to it: fetch, identity, pod rules, cache parts (plus the
//! mirrored registry when the target's token is not shared across hosts),
//! and `doctor`'s registry API, which is the TARGET's, never SOURCE's.
//! Static credentials are checked at TARGET and re-keyed to SOURCE.

use std::collections::BTreeMap;

use super::{Credential, FetchContext, Route, Source, SourceError};
use crate::image::ImageRef;
use crate::protocol::CacheKeyType;
use crate::settings::{Mirror, Options};
use crate::workload::{PodRules, Workload};

/// The `--mirror` map; asked first (a mirror decides where pulls go). It
/// holds the request's docker configs, read once by the caller, to route a
/// TARGET that is a static key.
pub struct Mirrors<'a>(pub &'a dyn Source);

impl Source for Mirrors<'_> {
    fn route(&self, image: &ImageRef, opts: &Options) -> Option<Box<dyn Route>> {
        let m = mirror_for(image, &opts.mirrors)?;
        let target = rewrite(image, m)?;
        let inner = super::route_direct_with(&target, opts, self.0).ok()?.route;
        Some(Box::new(MirrorRoute {
            source: m.source.clone(),
            target,
            inner,
        }))
    }
}

/// The mapping for the image's registry: SOURCE matches the whole registry
/// (host and port), exactly; the first mapping wins.
pub fn mirror_for<'a>(image: &ImageRef, mirrors: &'a [Mirror]) -> Option<&'a Mirror> {
    mirrors.iter().find(|m| m.source == image.registry)
}

/// `image` as TARGET serves it: `TARGET/PREFIX/<repository>`, same tag and
/// digest. `None` when the result is not a valid reference (too long).
pub fn rewrite(image: &ImageRef, m: &Mirror) -> Option<ImageRef> {
    let name = if m.prefix.is_empty() {
        format!("{}/{}", m.target, image.repository)
    } else {
        format!("{}/{}/{}", m.target, m.prefix, image.repository)
    };
    let mut target = ImageRef::parse(&name).ok()?;
    if target.registry != m.target {
        return None;
    }
    target.tag = image.tag.clone();
    target.digest = image.digest.clone();
    Some(target)
}

struct MirrorRoute {
    /// SOURCE, the registry the kubelet asked about.
    source: String,
    /// The image rewritten to TARGET/PREFIX.
    target: ImageRef,
    /// TARGET's own route.
    inner: Box<dyn Route>,
}

impl Route for MirrorRoute {
    fn id(&self) -> &'static str {
        self.inner.id()
    }

    fn describe(&self, _: &ImageRef) -> String {
        format!(
            "{} (mirror of {})",
            self.inner.describe(&self.target),
            self.source
        )
    }

    fn node_identity(&self, opts: &Options) -> String {
        self.inner.node_identity(opts)
    }

    /// TARGET's parts for the rewritten image. A token shared across the
    /// target's hosts (ECR in a region, Google) keeps TARGET's entry, so
    /// direct pulls and mirrored ones share one upstream call (the entry is
    /// re-keyed per host); any other is a separate entry, keyed SOURCE.
    fn cache_parts(
        &self,
        _: &ImageRef,
        opts: &Options,
        workload: Option<&Workload>,
    ) -> Vec<(&'static str, String)> {
        let mut parts = self.inner.cache_parts(&self.target, opts, workload);
        if !self.inner.shares_token_across_hosts() {
            parts.push(("mirror-of", self.source.clone()));
        }
        parts
    }

    fn pod_rules(&self) -> Option<&dyn PodRules> {
        self.inner.pod_rules()
    }

    fn shares_token_across_hosts(&self) -> bool {
        self.inner.shares_token_across_hosts()
    }

    fn fetch(&self, ctx: &FetchContext) -> Result<Credential, SourceError> {
        let at_target = FetchContext {
            image: &self.target,
            opts: ctx.opts,
            workload: ctx.workload,
            deadline: ctx.deadline,
        };
        match self.inner.fetch(&at_target)? {
            Credential::Token(f) => Ok(Credential::Token(f)),
            Credential::Static { auth, .. } => Ok(Credential::Static {
                auth: rekey(auth, &self.source),
                // SOURCE is a whole registry; the flow narrows this to
                // Image when SOURCE's host has path-scoped keys.
                key_type: CacheKeyType::Registry,
            }),
        }
    }

    #[cfg(feature = "static")]
    fn registry_api(&self, _: &ImageRef) -> Result<String, String> {
        self.inner.registry_api(&self.target)
    }

    #[cfg(feature = "static")]
    fn realm_url(&self, registry_api: &str, realm: &str) -> Result<String, String> {
        self.inner.realm_url(registry_api, realm)
    }

    fn forbidden_hint(&self) -> Option<&'static str> {
        self.inner.forbidden_hint()
    }

    fn target(&self, _: &ImageRef) -> Option<ImageRef> {
        Some(self.target.clone())
    }
}

/// Static credentials of TARGET, keyed SOURCE: the one the kubelet would
/// try first (the most specific key: reverse lexical order).
fn rekey(
    auth: BTreeMap<String, crate::protocol::AuthConfig>,
    source: &str,
) -> BTreeMap<String, crate::protocol::AuthConfig> {
    auth.into_iter()
        .next_back()
        .map(|(_, creds)| (source.to_string(), creds))
        .into_iter()
        .collect()
}

/// Parses one `SOURCE=TARGET[/PREFIX]` mapping. SOURCE is a registry as
/// images name it (`host[:port]`); TARGET is one too, optionally followed
/// by a repository path prefix. Whether a source serves TARGET is checked
/// with the settings ([`check_targets`]).
pub fn parse_mirror(s: &str) -> Result<Mirror, String> {
    let (source, target) = s.split_once('=').ok_or_else(|| {
        format!(
            "mirror {s:?} is not SOURCE=TARGET[/PREFIX] (e.g. docker.io=123456789012.dkr.ecr.us-east-1.amazonaws.com/docker-hub)"
        )
    })?;
    let (source, target) = (source.trim(), target.trim().trim_end_matches('/'));
    let registry_of = |r: &str| {
        ImageRef::parse(&format!("{r}/x"))
            .ok()
            .filter(|i| i.registry == r)
    };
    if registry_of(source).is_none() {
        return Err(format!(
            "mirror source {source:?} is not a registry host[:port]"
        ));
    }
    let (host, prefix) = target.split_once('/').unwrap_or((target, ""));
    let parsed = registry_of(host).and_then(|_| ImageRef::parse(&format!("{target}/x")).ok());
    let prefix_ok = parsed.as_ref().is_some_and(|i| {
        i.registry == host
            && i.repository
                == if prefix.is_empty() {
                    "x".to_string()
                } else {
                    format!("{prefix}/x")
                }
    });
    if !prefix_ok {
        return Err(format!(
            "mirror target {target:?} is not a registry host[:port] with an optional /path prefix"
        ));
    }
    if host == source && prefix.is_empty() {
        return Err(format!("mirror {s:?} maps {source} to itself"));
    }
    Ok(Mirror {
        source: source.to_string(),
        target: host.to_string(),
        prefix: prefix.to_string(),
    })
}

/// Every mapping's TARGET must be served by a source (a cloud host, or a
/// static key that matches it): else a usage error naming the mapping.
pub fn check_targets(opts: &Options) -> Result<(), String> {
    // Cloud targets are known by their host alone; the docker configs are
    // read (once) only for a target no cloud source serves.
    let mut files = None;
    for m in &opts.mirrors {
        let probe = ImageRef {
            registry: m.source.clone(),
            repository: "library/x".to_string(),
            tag: None,
            digest: None,
        };
        let served = rewrite(&probe, m).is_some_and(|t| {
            super::by_host()
                .into_iter()
                .any(|s| s.route(&t, opts).is_some())
                || {
                    let files = files.get_or_insert_with(|| super::node_files(opts));
                    super::route_direct_with(&t, opts, files).is_ok()
                }
        });
        if !served {
            let target = if m.prefix.is_empty() {
                m.target.clone()
            } else {
                format!("{}/{}", m.target, m.prefix)
            };
            return Err(format!(
                "--mirror {}={target}: no pullcred source serves {target} (an ECR, ECR Public, Google or ACR host, or a --docker-config/--aws-secret key for it)",
                m.source
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::route;

    const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

    fn opts(maps: &[&str]) -> Options {
        Options {
            mirrors: maps.iter().map(|m| parse_mirror(m).unwrap()).collect(),
            ..Options::default()
        }
    }

    fn img(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap()
    }

    #[test]
    fn syntax() {
        assert_eq!(
            parse_mirror(&format!(" docker.io = {ECR}/docker-hub/ ")).unwrap(),
            Mirror {
                source: "docker.io".into(),
                target: ECR.into(),
                prefix: "docker-hub".into(),
            }
        );
        assert_eq!(
            parse_mirror("registry.local:5000=other.azurecr.io:443").unwrap(),
            Mirror {
                source: "registry.local:5000".into(),
                target: "other.azurecr.io:443".into(),
                prefix: String::new(),
            }
        );
        assert_eq!(
            parse_mirror("docker.io=us-docker.pkg.dev/proj/remote-repo")
                .unwrap()
                .prefix,
            "proj/remote-repo"
        );
        for bad in [
            "mcr.microsoft.com",
            "mcr.microsoft.com:myreg.azurecr.io",
            "=myreg.azurecr.io",
            "mcr.microsoft.com=",
            "mcr.microsoft.com/path=myreg.azurecr.io",
            "docker.io=harbor/proxy",
            "docker.io=harbor.example.com/Proxy",
            "docker.io=harbor.example.com//proxy",
            "docker.io=docker.io",
        ] {
            assert!(parse_mirror(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_image_is_rewritten_under_the_prefix() {
        let m = parse_mirror(&format!("docker.io={ECR}/docker-hub")).unwrap();
        let t = rewrite(&img("nginx:1.0"), &m).unwrap();
        assert_eq!(t.name(), format!("{ECR}/docker-hub/library/nginx"));
        assert_eq!(t.tag.as_deref(), Some("1.0"));
        let m = parse_mirror("quay.io=myreg.azurecr.io").unwrap();
        assert_eq!(
            rewrite(&img("quay.io/a/b"), &m).unwrap().name(),
            "myreg.azurecr.io/a/b"
        );
    }

    /// The mirror is asked first, matches the whole registry only, and
    /// routes to the TARGET's source, whichever cloud it is.
    #[test]
    fn routes_through_the_targets_source() {
        let o = opts(&[
            &format!("docker.io={ECR}/docker-hub"),
            "quay.io=us-docker.pkg.dev/proj/remote",
            "mcr.microsoft.com=myreg.azurecr.io",
            "registry.local:5000=other.azurecr.io:443",
        ]);
        for (image, id, described) in [
            ("nginx", "ecr", "account 123456789012, region us-east-1"),
            (
                "quay.io/x/y",
                "google",
                "us-docker.pkg.dev (mirror of quay.io)",
            ),
            (
                "mcr.microsoft.com/dotnet/runtime",
                "acr",
                "Azure Container Registry myreg.azurecr.io (mirror of mcr.microsoft.com)",
            ),
            ("registry.local:5000/x", "acr", "other.azurecr.io:443"),
        ] {
            let i = img(image);
            let r = route(&i, &o).unwrap().route;
            assert_eq!(r.id(), id, "{image}");
            assert!(r.describe(&i).contains(described), "{}", r.describe(&i));
        }
        for not in [
            "mcr.microsoft.com.evil.io/x",
            "evil.io/mcr.microsoft.com/x",
            "mcr.microsoft.com:443/x",
            "registry.local/x",
        ] {
            assert!(route(&img(not), &o).is_err(), "{not}");
        }
    }

    /// An ECR or Google target shares the direct pulls' entry (one token per
    /// region); an ACR target's entry is its own, apart from direct pulls.
    #[test]
    fn cache_parts_share_a_regional_token_and_separate_the_rest() {
        let o = opts(&[
            &format!("docker.io={ECR}/docker-hub"),
            "mcr.microsoft.com=myreg.azurecr.io",
        ]);
        let parts = |s: &str| {
            let i = img(s);
            route(&i, &o).unwrap().route.cache_parts(&i, &o, None)
        };
        assert_eq!(
            parts("nginx"),
            parts(&format!("{ECR}/docker-hub/library/x"))
        );
        let mirrored = parts("mcr.microsoft.com/a");
        assert_ne!(mirrored, parts("myreg.azurecr.io/a"));
        assert!(mirrored.contains(&("mirror-of", "mcr.microsoft.com".to_string())));
        assert!(mirrored.contains(&("registry", "myreg.azurecr.io".to_string())));
    }

    #[test]
    fn static_credentials_are_rekeyed_to_the_source() {
        use crate::protocol::AuthConfig;
        use crate::secret::Secret;
        let a = |u: &str| AuthConfig {
            username: u.into(),
            password: Secret::new("p"),
        };
        let auth: BTreeMap<String, AuthConfig> = [
            ("harbor.example.com".to_string(), a("wide")),
            (
                "harbor.example.com/dockerhub-proxy/".to_string(),
                a("robot"),
            ),
        ]
        .into();
        let r = rekey(auth, "docker.io");
        assert_eq!(r.keys().collect::<Vec<_>>(), ["docker.io"]);
        assert_eq!(r["docker.io"].username, "robot");
    }

    #[test]
    fn a_static_target_routes_to_its_secret() {
        let o = Options {
            aws_secrets: vec![(
                "harbor.example.com/dockerhub-proxy/".into(),
                "arn:secret".into(),
            )],
            ..opts(&["docker.io=harbor.example.com/dockerhub-proxy"])
        };
        let r = route(&img("nginx"), &o).unwrap().route;
        assert_eq!(r.id(), "aws-secret");
        assert!(check_targets(&o).is_ok());
    }

    #[test]
    fn a_target_no_source_serves_is_refused() {
        let e = check_targets(&opts(&["docker.io=quay.io/proxy"])).unwrap_err();
        assert!(e.contains("--mirror docker.io=quay.io/proxy"), "{e}");
        assert!(check_targets(&opts(&["docker.io=myreg.azurecr.io"])).is_ok());
    }
}
