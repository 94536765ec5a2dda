//! Running a provider plugin the way the kubelet does, for `match --fetch`:
//! exec `<bin-dir>/<name> <args>` with the kubelet's environment plus the
//! entry's `env`, a `CredentialProviderRequest` JSON and a newline on stdin,
//! killed after the timeout (the kubelet's is one minute).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::{CredentialProvider, TokenAttributes};
use crate::duration::GoDuration;

/// The kubelet's exec timeout.
pub const KUBELET_TIMEOUT: Duration = Duration::from_secs(60);

/// One `auth` entry. `Debug` does not show the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("password", &mask(&self.password))
            .finish()
    }
}

/// `"****" (N chars)`: never the secret itself.
pub fn mask(password: &str) -> String {
    format!("**** ({} chars)", password.chars().count())
}

/// The plugin's answer, decoded strictly as the kubelet does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CredentialProviderResponse {
    pub api_version: String,
    pub kind: String,
    pub cache_key_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_duration: Option<String>,
    #[serde(default)]
    pub auth: BTreeMap<String, AuthConfig>,
}

/// A service account token to send (v1 `tokenAttributes` providers).
#[derive(Clone, Default)]
pub struct ServiceAccount {
    pub token: String,
    pub annotations: BTreeMap<String, String>,
}

/// Why a run gave the kubelet nothing.
#[derive(Debug)]
#[non_exhaustive]
pub enum ExecError {
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    Timeout {
        path: PathBuf,
        after: Duration,
        stderr: String,
    },
    Failed {
        path: PathBuf,
        status: String,
        stderr: String,
    },
    BadResponse {
        path: PathBuf,
        why: String,
    },
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one_line = |s: &str| s.trim().replace('\n', " | ");
        match self {
            ExecError::Spawn { path, source } => {
                write!(f, "{}: cannot start: {source}", path.display())
            }
            ExecError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            ExecError::Timeout { path, after, .. } => {
                write!(
                    f,
                    "{}: killed after {:?} (the kubelet's timeout is 1 minute)",
                    path.display(),
                    after
                )
            }
            ExecError::Failed {
                path,
                status,
                stderr,
            } => {
                write!(
                    f,
                    "{}: {status}; stderr: {}",
                    path.display(),
                    one_line(stderr)
                )
            }
            ExecError::BadResponse { path, why } => {
                write!(f, "{}: response rejected: {why}", path.display())
            }
        }
    }
}

impl std::error::Error for ExecError {}

/// The request JSON (one line, then a newline).
pub fn request_line(
    provider: &CredentialProvider,
    image: &str,
    sa: Option<&ServiceAccount>,
) -> String {
    let mut req = serde_json::json!({
        "apiVersion": provider.api_version,
        "kind": "CredentialProviderRequest",
        "image": image,
    });
    // Both fields are `omitempty` in the v1 Go type.
    if let Some(sa) = sa {
        if !sa.token.is_empty() {
            req["serviceAccountToken"] = serde_json::Value::String(sa.token.clone());
        }
        if !sa.annotations.is_empty() {
            req["serviceAccountAnnotations"] =
                serde_json::to_value(&sa.annotations).unwrap_or_default();
        }
    }
    let mut line = req.to_string();
    line.push('\n');
    line
}

/// The annotations the kubelet passes a plugin, from a service account's
/// (`getServiceAccountData` in pkg/credentialprovider/plugin/plugin.go): each
/// required key (exact, case-sensitive), then each optional key present;
/// nothing else. `Err` lists the required keys the service account lacks:
/// the kubelet then does not run the plugin at all.
pub fn service_account_annotations(
    t: &TokenAttributes,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Vec<String>> {
    let missing: Vec<String> = t
        .required_service_account_annotation_keys
        .iter()
        .filter(|k| !given.contains_key(*k))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(missing);
    }
    Ok(t.required_service_account_annotation_keys
        .iter()
        .chain(&t.optional_service_account_annotation_keys)
        .filter_map(|k| given.get(k).map(|v| (k.clone(), v.clone())))
        .collect())
}

/// Checks a response as the kubelet would.
pub fn decode_response(
    stdout: &[u8],
    request_api_version: &str,
) -> Result<CredentialProviderResponse, String> {
    let r: CredentialProviderResponse =
        serde_json::from_slice(stdout).map_err(|e| e.to_string())?;
    if r.api_version != request_api_version {
        return Err(format!(
            "apiVersion {:?} is not the request's {request_api_version:?}",
            r.api_version
        ));
    }
    if r.kind != "CredentialProviderResponse" {
        return Err(format!(
            "kind {:?} is not \"CredentialProviderResponse\"",
            r.kind
        ));
    }
    if !matches!(r.cache_key_type.as_str(), "Image" | "Registry" | "Global") {
        return Err(format!(
            "cacheKeyType {:?} is not Image, Registry or Global",
            r.cache_key_type
        ));
    }
    if let Some(d) = &r.cache_duration {
        GoDuration::parse(d).map_err(|e| format!("cacheDuration: {e}"))?;
    }
    Ok(r)
}

/// Runs the provider's plugin for `image` and decodes its answer.
pub fn run_plugin(
    bin_dir: &Path,
    provider: &CredentialProvider,
    image: &str,
    sa: Option<&ServiceAccount>,
    timeout: Duration,
) -> Result<(CredentialProviderResponse, String), ExecError> {
    let path = bin_dir.join(&provider.name);
    let mut cmd = Command::new(&path);
    cmd.args(&provider.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in &provider.env {
        cmd.env(&var.name, &var.value);
    }
    let mut child = cmd.spawn().map_err(|source| ExecError::Spawn {
        path: path.clone(),
        source,
    })?;
    let input = request_line(provider, image, sa);
    let mut stdin = child.stdin.take();
    let writer = thread::spawn(move || {
        if let Some(s) = stdin.as_mut() {
            // A plugin that exits without reading closes the pipe: not our error.
            let _ = s.write_all(input.as_bytes());
        }
    });
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(source) => return Err(ExecError::Io { path, source }),
        }
    };
    let Some(status) = status else {
        // Not waiting for the pipes: a grandchild may still hold them open.
        return Err(ExecError::Timeout {
            path,
            after: timeout,
            stderr: String::new(),
        });
    };
    let _ = writer.join();
    let stdout = out.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    if !status.success() {
        return Err(ExecError::Failed {
            path,
            status: status.to_string(),
            stderr,
        });
    }
    let response = decode_response(&stdout, &provider.api_version)
        .map_err(|why| ExecError::BadResponse { path, why })?;
    Ok((response, stderr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(required: &[&str], optional: &[&str]) -> TokenAttributes {
        TokenAttributes {
            service_account_token_audience: "aud".into(),
            cache_type: "ServiceAccount".into(),
            require_service_account: Some(true),
            required_service_account_annotation_keys: required
                .iter()
                .map(|s| s.to_string())
                .collect(),
            optional_service_account_annotation_keys: optional
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_listed_annotations_pass_and_required_ones_gate_the_run() {
        let given = map(&[("a/req", "1"), ("a/opt", "2"), ("a/other", "3")]);
        assert_eq!(
            service_account_annotations(&attrs(&["a/req"], &["a/opt", "a/gone"]), &given),
            Ok(map(&[("a/req", "1"), ("a/opt", "2")]))
        );
        assert_eq!(
            service_account_annotations(&attrs(&["a/req", "A/Req", "b/x"], &[]), &given),
            Err(vec!["A/Req".to_string(), "b/x".to_string()])
        );
        assert_eq!(
            service_account_annotations(&attrs(&[], &[]), &given),
            Ok(BTreeMap::new())
        );
    }

    #[test]
    fn empty_token_fields_are_omitted_from_the_request() {
        let p = CredentialProvider {
            api_version: "credentialprovider.kubelet.k8s.io/v1".into(),
            ..Default::default()
        };
        let sa = ServiceAccount {
            token: "t".into(),
            annotations: BTreeMap::new(),
        };
        let v: serde_json::Value = serde_json::from_str(&request_line(&p, "i", Some(&sa))).unwrap();
        assert_eq!(v["serviceAccountToken"], "t");
        assert!(v.get("serviceAccountAnnotations").is_none(), "{v}");
        let v: serde_json::Value = serde_json::from_str(&request_line(&p, "i", None)).unwrap();
        assert!(v.get("serviceAccountToken").is_none(), "{v}");
    }
}
