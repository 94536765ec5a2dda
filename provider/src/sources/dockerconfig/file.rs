//! Static credentials from dockerconfigjson files on the node.
//!
//! The format is a `kubernetes.io/dockerconfigjson` Secret's decoded data,
//! which is also `~/.docker/config.json`: `{"auths": {KEY: {"auth":
//! base64(user:pass)} | {"username": .., "password": ..}}}`. The older
//! `.dockercfg` form (the map without `auths`) is read too. A Secret migrates
//! by copying its decoded data into a root-only file.
//!
//! Keys keep their path (`harbor.example.com/dockerhub-cache`), so credentials
//! go only to that project, by the kubelet's own prefix rule. Docker Hub's many
//! names (`https://index.docker.io/v1/`, `index.docker.io`,
//! `registry-1.docker.io`) are one registry and become `docker.io`, the key
//! that matches the images the kubelet sends (`docker.io/library/nginx`).
//!
//! Parsing and matching are pure; [`load`] adds the file checks: a file that is
//! not a regular file, a symlink, or that another user can use, is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::image::ImageRef;
use crate::private_file::{self, Limits};
use crate::protocol::{AuthConfig, CacheKeyType};
use crate::secret::Secret;

const MAX_FILE: u64 = 1 << 20;

/// One usable entry of a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The key as the response will carry it: no scheme, no `/v1/`.
    pub key: String,
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, Clone)]
pub struct DockerConfig {
    pub path: PathBuf,
    /// SHA-256 of the file's bytes: part of the cache key, so an edited file
    /// is a new entry.
    pub digest: String,
    pub entries: Vec<ConfigEntry>,
}

#[derive(Deserialize)]
struct RawFile {
    auths: Option<BTreeMap<String, RawEntry>>,
    #[serde(flatten)]
    legacy: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct RawEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<Secret>,
}

/// Reads and checks one file, through one handle: a regular file (a FIFO or
/// device is refused without waiting), not a symlink, owned by the user
/// running pullcred and closed to others (see [`crate::private_file`]).
pub fn load(path: &Path) -> Result<DockerConfig, String> {
    let shown = path.display();
    let bytes = private_file::open_regular(path, Limits::private(MAX_FILE))
        .map_err(|e| format!("docker config {shown}: {e}"))?;
    let entries = parse(&bytes).map_err(|e| format!("docker config {shown}: {e}"))?;
    Ok(DockerConfig {
        path: path.to_path_buf(),
        digest: crate::encode::hex(&Sha256::digest(&bytes)),
        entries,
    })
}

/// Parses a dockerconfigjson (or legacy dockercfg) document. Entries without
/// usable credentials are skipped with a debug log; a document that is not
/// JSON, or has no usable entry at all, is an error. Messages never quote a
/// credential.
pub fn parse(bytes: &[u8]) -> Result<Vec<ConfigEntry>, String> {
    let raw: RawFile = serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "not a dockerconfigjson document (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let map: BTreeMap<String, RawEntry> = match raw.auths {
        Some(a) => a,
        None => raw
            .legacy
            .into_iter()
            .filter_map(|(k, v)| serde_json::from_value::<RawEntry>(v).ok().map(|e| (k, e)))
            .collect(),
    };
    let mut out: Vec<ConfigEntry> = Vec::new();
    for (raw_key, e) in map {
        let Some(key) = normalize_key(&raw_key) else {
            tracing::warn!("docker config: skipping key {raw_key:?}: not a registry host");
            continue;
        };
        let creds = match (&e.auth, &e.username, &e.password) {
            (Some(a), _, _) if !a.is_empty() => decode_auth(a),
            (_, Some(u), Some(p)) => Some((u.clone(), p.clone())),
            _ => None,
        };
        let Some((username, password)) = creds else {
            tracing::warn!("docker config: skipping {key}: no usable auth or username/password");
            continue;
        };
        if out.iter().any(|x| x.key == key) {
            continue; // the first of Docker Hub's aliases wins
        }
        out.push(ConfigEntry {
            key,
            username,
            password,
        });
    }
    if out.is_empty() {
        return Err("no usable credentials in it".into());
    }
    Ok(out)
}

fn decode_auth(a: &str) -> Option<(String, Secret)> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(a.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), Secret::new(p)))
}

const DOCKER_HUB_ALIASES: [&str; 4] = [
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

/// `https://index.docker.io/v1/` → `docker.io`; `https://harbor.example.com/v2/proj` → `harbor.example.com/proj`.
pub fn normalize_key(raw: &str) -> Option<String> {
    let raw = raw.trim();
    // A registry key never holds whitespace or control characters; one that
    // does would come back unmatched and not idempotent (found by fuzzing).
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let k = kubelet_config::matching::normalize_auth_key(raw)?;
    // A trailing `/` on a path confines the key to what lies below it (the
    // kubelet's match is a plain string prefix): keep it. On a bare host it
    // means nothing and goes.
    let confined = k.ends_with('/');
    let k = k.trim_end_matches('/');
    let (host, path) = match k.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (k, None),
    };
    if host.is_empty() {
        return None;
    }
    let host = if DOCKER_HUB_ALIASES.contains(&host) {
        "docker.io"
    } else {
        host
    };
    let key = match path {
        Some(p) if !p.is_empty() && confined => format!("{host}/{p}/"),
        Some(p) if !p.is_empty() => format!("{host}/{p}"),
        _ => host.to_string(),
    };
    // Percent-escapes decode to what a key may not hold (control characters,
    // spaces); the kubelet could never match such a key (found by fuzzing).
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    Some(key)
}

/// What the files offer for one image.
#[derive(Debug, Clone)]
pub struct StaticPlan {
    pub auth: BTreeMap<String, AuthConfig>,
    /// Which file each key came from, for errors.
    pub origins: BTreeMap<String, PathBuf>,
    pub cache_key_type: CacheKeyType,
    /// Digests of every configured file, in order: part of the cache key.
    pub digests: Vec<String>,
}

/// True when `key` has a path and its host part would match `image`'s host
/// under the kubelet's rules: an answer for that host must then be
/// `Image`-scoped, or the kubelet's registry-wide cache entry would shadow
/// the path-scoped key for every other image of the host.
pub fn path_key_for_host(key: &str, image: &ImageRef) -> bool {
    match key.split_once('/') {
        Some((host, path)) if !path.is_empty() => {
            kubelet_config::matching::auth_key_matches(host, &image.name())
        }
        _ => false,
    }
}

/// Whether any file holds a path-scoped key for the image's host (whether
/// or not that key matches the image itself).
pub fn host_has_path_keys(files: &[DockerConfig], image: &ImageRef) -> bool {
    files
        .iter()
        .flat_map(|f| &f.entries)
        .any(|e| path_key_for_host(&e.key, image))
}

/// Every entry of every file whose key matches the image under the kubelet's
/// rules; the first file wins for a key present in several.
pub fn resolve(files: &[DockerConfig], image: &ImageRef) -> Option<StaticPlan> {
    let name = image.name();
    let mut auth = BTreeMap::new();
    let mut origins = BTreeMap::new();
    for f in files {
        for e in &f.entries {
            if !auth.contains_key(&e.key)
                && kubelet_config::matching::auth_key_matches(&e.key, &name)
            {
                auth.insert(
                    e.key.clone(),
                    AuthConfig {
                        username: e.username.clone(),
                        password: e.password.clone(),
                    },
                );
                origins.insert(e.key.clone(), f.path.clone());
            }
        }
    }
    if auth.is_empty() {
        return None;
    }
    // A key with a path must not be cached by the kubelet for the whole
    // registry: another project on the same host would get this answer. Nor
    // may a host-wide answer be, while the host has any path-scoped key: the
    // kubelet looks its registry entry up before it asks us again, so that
    // entry would answer for the path-scoped project too.
    let cache_key_type = if auth.keys().any(|k| k.contains('/')) || host_has_path_keys(files, image)
    {
        CacheKeyType::Image
    } else {
        CacheKeyType::Registry
    };
    Some(StaticPlan {
        auth,
        origins,
        cache_key_type,
        digests: files.iter().map(|f| f.digest.clone()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn files(json: &str) -> Vec<DockerConfig> {
        vec![DockerConfig {
            path: "t".into(),
            digest: "d".into(),
            entries: parse(json.as_bytes()).unwrap(),
        }]
    }

    fn keys(plan: &Option<StaticPlan>) -> Vec<String> {
        plan.as_ref()
            .map(|p| p.auth.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn normalises_keys() {
        assert_eq!(
            normalize_key("https://index.docker.io/v1/").as_deref(),
            Some("docker.io")
        );
        assert_eq!(
            normalize_key("index.docker.io").as_deref(),
            Some("docker.io")
        );
        assert_eq!(
            normalize_key("registry-1.docker.io").as_deref(),
            Some("docker.io")
        );
        assert_eq!(
            normalize_key("docker.io/myorg").as_deref(),
            Some("docker.io/myorg")
        );
        assert_eq!(
            normalize_key("https://harbor.example.com/v2/").as_deref(),
            Some("harbor.example.com")
        );
        assert_eq!(
            normalize_key("harbor.example.com/dockerhub-cache").as_deref(),
            Some("harbor.example.com/dockerhub-cache")
        );
        assert_eq!(
            normalize_key("registry.local:5000").as_deref(),
            Some("registry.local:5000")
        );
        // a trailing slash confines a path key to what lies below it
        assert_eq!(
            normalize_key("harbor.example.com/team-a/").as_deref(),
            Some("harbor.example.com/team-a/")
        );
        assert_eq!(
            normalize_key("https://harbor.example.com/team-a//").as_deref(),
            Some("harbor.example.com/team-a/")
        );
        assert_eq!(
            normalize_key("http://registry.local:5000/").as_deref(),
            Some("registry.local:5000")
        );
    }

    /// Inputs the dockerconfig fuzz target found (fuzz/corpus/dockerconfig/seed-crash-*).
    #[test]
    fn keys_that_cannot_be_keys_are_refused_and_normalising_is_idempotent() {
        assert_eq!(normalize_key("htter.io/v1 /"), None);
        assert_eq!(normalize_key("a.io/p\tq"), None);
        assert_eq!(normalize_key("o/v%1a"), None);
        for k in [
            "docker.io",
            "a.io/x/y",
            "r:5000/p",
            "https://index.docker.io/v1/",
            "a.io/%41",
        ] {
            let once = normalize_key(k).unwrap();
            assert_eq!(normalize_key(&once).as_deref(), Some(once.as_str()), "{k}");
        }
    }

    #[test]
    fn parses_auth_and_username_password_and_legacy() {
        let doc = format!(
            r#"{{"auths":{{"a.io":{{"auth":"{}"}},"b.io":{{"username":"u","password":"p:w"}},"c.io":{{"email":"x"}}}}}}"#,
            b64("user:pa:ss")
        );
        let e = parse(doc.as_bytes()).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(
            (
                e[0].key.as_str(),
                e[0].username.as_str(),
                e[0].password.expose()
            ),
            ("a.io", "user", "pa:ss")
        );
        assert_eq!(
            (e[1].username.as_str(), e[1].password.expose()),
            ("u", "p:w")
        );
        let legacy = format!(
            r#"{{"https://index.docker.io/v1/":{{"auth":"{}","email":"e"}}}}"#,
            b64("u:p")
        );
        assert_eq!(parse(legacy.as_bytes()).unwrap()[0].key, "docker.io");
    }

    #[test]
    fn bad_documents_are_errors_without_secrets() {
        assert!(parse(b"not json").unwrap_err().contains("line 1"));
        assert!(parse(br#"{"auths":{}}"#).is_err());
        let e = parse(br#"{"auths":{"a.io":{"auth":"!!notbase64"}}}"#).unwrap_err();
        assert!(!e.contains("notbase64"));
    }

    #[test]
    fn docker_hub_images_get_the_docker_io_key() {
        let f = files(&format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}}}}}}"#,
            b64("u:p")
        ));
        let img = ImageRef::parse("docker.io/library/nginx").unwrap();
        let plan = resolve(&f, &img);
        assert_eq!(keys(&plan), ["docker.io"]);
        assert_eq!(plan.unwrap().cache_key_type, CacheKeyType::Registry);
        assert!(resolve(&f, &ImageRef::parse("quay.io/x/y").unwrap()).is_none());
    }

    #[test]
    fn path_scoped_keys_go_only_to_their_project() {
        let f = files(&format!(
            r#"{{"auths":{{"harbor.example.com/dockerhub-cache":{{"auth":"{}"}}}}}}"#,
            b64("robot:tok")
        ));
        let ok = resolve(
            &f,
            &ImageRef::parse("harbor.example.com/dockerhub-cache/library/nginx").unwrap(),
        );
        assert_eq!(keys(&ok), ["harbor.example.com/dockerhub-cache"]);
        assert_eq!(ok.unwrap().cache_key_type, CacheKeyType::Image);
        assert!(
            resolve(
                &f,
                &ImageRef::parse("harbor.example.com/other/app").unwrap()
            )
            .is_none()
        );
    }

    /// The kubelet's cache order (image, then registry, then global) means a
    /// `Registry`-scoped answer for `docker.io/library/nginx` would later
    /// answer `docker.io/myorg/private`, which has a key of its own.
    #[test]
    fn a_host_with_any_path_key_is_answered_image_scoped() {
        let f = files(&format!(
            r#"{{"auths":{{"docker.io":{{"auth":"{}"}},"docker.io/myorg":{{"auth":"{}"}},"quay.io":{{"auth":"{}"}}}}}}"#,
            b64("ratelimit:1"),
            b64("robot:2"),
            b64("q:3")
        ));
        let public = resolve(&f, &ImageRef::parse("docker.io/library/nginx").unwrap()).unwrap();
        assert_eq!(public.auth.keys().collect::<Vec<_>>(), ["docker.io"]);
        assert_eq!(public.cache_key_type, CacheKeyType::Image);
        let private = resolve(&f, &ImageRef::parse("docker.io/myorg/private").unwrap()).unwrap();
        assert_eq!(private.cache_key_type, CacheKeyType::Image);
        // another host keeps its registry-wide answer
        let quay = resolve(&f, &ImageRef::parse("quay.io/x/y").unwrap()).unwrap();
        assert_eq!(quay.cache_key_type, CacheKeyType::Registry);
        // globs and ports count as the kubelet counts them
        let g = files(&format!(
            r#"{{"auths":{{"*.example.com/team-a":{{"auth":"{}"}},"harbor.example.com":{{"auth":"{}"}},"harbor.example.com:5000/x":{{"auth":"{}"}}}}}}"#,
            b64("a:1"),
            b64("h:2"),
            b64("p:3")
        ));
        let other = resolve(
            &g,
            &ImageRef::parse("harbor.example.com/team-b/app").unwrap(),
        )
        .unwrap();
        assert_eq!(other.cache_key_type, CacheKeyType::Image);
        let port = files(&format!(
            r#"{{"auths":{{"h.example.com":{{"auth":"{}"}},"h.example.com:5000/x":{{"auth":"{}"}}}}}}"#,
            b64("h:2"),
            b64("p:3")
        ));
        let p = resolve(&port, &ImageRef::parse("h.example.com/y/app").unwrap()).unwrap();
        assert_eq!(p.cache_key_type, CacheKeyType::Registry);
    }

    #[test]
    fn ports_must_match() {
        let f = files(&format!(
            r#"{{"auths":{{"registry.local:5000":{{"auth":"{}"}}}}}}"#,
            b64("u:p")
        ));
        assert!(resolve(&f, &ImageRef::parse("registry.local:5000/app").unwrap()).is_some());
        assert!(resolve(&f, &ImageRef::parse("registry.local/app").unwrap()).is_none());
        assert!(resolve(&f, &ImageRef::parse("registry.local:5001/app").unwrap()).is_none());
    }

    #[test]
    fn first_file_wins_for_a_key() {
        let mut fs = files(&format!(
            r#"{{"auths":{{"a.io":{{"auth":"{}"}}}}}}"#,
            b64("first:1")
        ));
        fs.extend(files(&format!(
            r#"{{"auths":{{"a.io":{{"auth":"{}"}}}}}}"#,
            b64("second:2")
        )));
        let plan = resolve(&fs, &ImageRef::parse("a.io/x").unwrap()).unwrap();
        assert_eq!(plan.auth["a.io"].username, "first");
    }
}
