//! `exchanges`: registries whose credentials come from an OAuth 2.0 token
//! exchange (RFC 8693): a pod's service-account token or the node's
//! identity token goes in, a short-lived registry token comes out.
//! `flavor: artifactory` is JFrog's `/access/api/v1/oidc/token` shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Problem, check_named_source, check_secret_url};

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Exchange {
    /// A name for errors, logs and cache keys.
    pub name: String,
    /// Registry keys this exchange serves.
    pub registries: Vec<String>,
    /// `rfc8693` (default) or `artifactory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<String>,
    /// The token endpoint (for `artifactory`: the platform's base URL,
    /// e.g. `https://example.jfrog.io`).
    pub token_url: String,
    /// Which token is exchanged: `pod` (the pod's service-account token;
    /// the kubelet config's tokenAttributes must be set) or `file` (the
    /// node's, read from `subjectTokenFile`).
    pub subject_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_token_file: Option<String>,
    /// `subject_token_type` (default `urn:ietf:params:oauth:token-type:jwt`;
    /// Artifactory: `urn:ietf:params:oauth:token-type:id_token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_token_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_token_type: Option<String>,
    /// Artifactory: the OIDC integration's provider name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_name: Option<String>,
    /// Request encoding: `form` (RFC 8693, default) or `json` (Artifactory,
    /// and services that take JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_format: Option<String>,
    /// Extra request parameters, sent as given (not secret: they are
    /// part of the cache key and of `doctor`'s view).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    /// For services that take the subject token under another name and are
    /// not RFC 8693 (Cloudsmith: `oidc_token`): the token is sent under this
    /// name, with `parameters` and whichever of `audience`, `scope`,
    /// `resource`, `requestedTokenType` and `subjectTokenType` are set, and
    /// without `grant_type`. `rfc8693` flavour only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_token_field: Option<String>,
    /// The answer's token field (default `access_token`; dotted paths reach
    /// into objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_field: Option<String>,
    /// The answer's lifetime in seconds (default `expires_in`), or
    /// `expiresAtField` for an absolute time (RFC 3339 or unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_field: Option<String>,
    /// The username to answer with; `usernameField` reads it from the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_field: Option<String>,
}

/// Request fields pullcred sets itself; `parameters` may not name them.
const RESERVED: [&str; 8] = [
    "grant_type",
    "subject_token",
    "subject_token_type",
    "audience",
    "scope",
    "resource",
    "requested_token_type",
    "provider_name",
];

impl Exchange {
    pub fn check(&self, at: &str, out: &mut Vec<Problem>) {
        check_named_source(at, &self.name, &self.registries, out);
        check_secret_url(&format!("{at}.tokenUrl"), &self.token_url, out);
        let flavor = self.flavor.as_deref().unwrap_or("rfc8693");
        if !matches!(flavor, "rfc8693" | "artifactory") {
            out.push(Problem::error(
                format!("{at}.flavor"),
                format!("{flavor:?}: want rfc8693 or artifactory"),
            ));
        }
        if flavor == "artifactory"
            && self
                .provider_name
                .as_deref()
                .is_none_or(|p| p.trim().is_empty())
        {
            out.push(Problem::error(
                format!("{at}.providerName"),
                "required with flavor artifactory",
            ));
        }
        match self.subject_token.as_str() {
            "pod" => {}
            "file" => {
                if self
                    .subject_token_file
                    .as_deref()
                    .is_none_or(|p| p.trim().is_empty())
                {
                    out.push(Problem::error(
                        format!("{at}.subjectTokenFile"),
                        "required with subjectToken: file",
                    ));
                }
            }
            other => out.push(Problem::error(
                format!("{at}.subjectToken"),
                format!("{other:?}: want pod or file"),
            )),
        }
        if !matches!(self.request_format.as_deref(), None | Some("form" | "json")) {
            out.push(Problem::error(
                format!("{at}.requestFormat"),
                "want form or json",
            ));
        }
        if flavor == "artifactory" {
            if self.request_format.as_deref() == Some("form") {
                out.push(Problem::error(
                    format!("{at}.requestFormat"),
                    "Artifactory's token endpoint takes JSON only",
                ));
            }
            if self.subject_token_field.is_some() {
                out.push(Problem::error(
                    format!("{at}.subjectTokenField"),
                    "only with flavor rfc8693 (Artifactory's field is subject_token)",
                ));
            }
        } else if self.provider_name.is_some() {
            out.push(Problem::error(
                format!("{at}.providerName"),
                "only with flavor artifactory",
            ));
        }
        if self.subject_token == "pod" && self.subject_token_file.is_some() {
            out.push(Problem::error(
                format!("{at}.subjectTokenFile"),
                "only with subjectToken: file (a pod's token comes in the kubelet's request)",
            ));
        }
        if let Some(f) = &self.subject_token_file
            && !f.trim().is_empty()
            && !f.starts_with('/')
        {
            out.push(Problem::error(
                format!("{at}.subjectTokenFile"),
                format!("{f:?} is not an absolute path"),
            ));
        }
        let names = [
            ("subjectTokenField", &self.subject_token_field),
            ("subjectTokenType", &self.subject_token_type),
            ("tokenField", &self.token_field),
            ("expiresInField", &self.expires_in_field),
            ("expiresAtField", &self.expires_at_field),
            ("usernameField", &self.username_field),
        ];
        for (field, v) in names {
            if let Some(v) = v
                && (v.trim().is_empty() || v.chars().any(char::is_whitespace))
            {
                out.push(Problem::error(
                    format!("{at}.{field}"),
                    "must be a non-empty name without spaces",
                ));
            }
        }
        let subject_field = self
            .subject_token_field
            .as_deref()
            .unwrap_or("subject_token");
        for k in self.parameters.keys() {
            let reserved = RESERVED.contains(&k.as_str()) || k == subject_field;
            if reserved || k.trim().is_empty() {
                out.push(Problem::error(
                    format!("{at}.parameters.{k}"),
                    "is set by pullcred (use the exchange's own fields: audience, scope, resource, requestedTokenType, subjectTokenType, providerName)",
                ));
            }
        }
        if self.expires_in_field.is_some() && self.expires_at_field.is_some() {
            out.push(Problem::error(
                at,
                "set expiresInField or expiresAtField, not both",
            ));
        }
        if self.username.is_some() && self.username_field.is_some() {
            out.push(Problem::error(
                at,
                "set username or usernameField, not both",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{check, parse};

    fn problems(entry: &str) -> Vec<String> {
        let c = parse(&format!(
            "apiVersion: pullcred.dev/v1alpha1\nkind: PullcredConfig\nexchanges:\n- name: x\n  registries: [r.example.com]\n{entry}"
        ))
        .unwrap();
        check(&c).iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn valid_entries() {
        for entry in [
            "  tokenUrl: https://sts.example.com/token\n  subjectToken: pod\n  audience: r\n",
            "  tokenUrl: http://127.0.0.1:9/t\n  subjectToken: file\n  subjectTokenFile: /var/run/t\n",
            "  flavor: artifactory\n  tokenUrl: https://acme.jfrog.io\n  providerName: k8s\n  subjectToken: pod\n  parameters: {project_key: app}\n",
            "  tokenUrl: https://api.cloudsmith.io/openid/acme/\n  subjectToken: pod\n  requestFormat: json\n  subjectTokenField: oidc_token\n  parameters: {service_slug: s}\n  tokenField: token\n  username: token\n",
        ] {
            assert_eq!(problems(entry), Vec::<String>::new(), "{entry}");
        }
    }

    #[test]
    fn mistakes_are_named() {
        for (entry, want) in [
            (
                "  tokenUrl: http://sts.example.com/t\n  subjectToken: pod\n",
                "exchanges[0].tokenUrl",
            ),
            (
                "  tokenUrl: https://s/t\n  subjectToken: node\n",
                "want pod or file",
            ),
            (
                "  tokenUrl: https://s/t\n  subjectToken: file\n",
                "subjectTokenFile: required",
            ),
            (
                "  tokenUrl: https://s/t\n  subjectToken: file\n  subjectTokenFile: t\n",
                "not an absolute path",
            ),
            (
                "  tokenUrl: https://s/t\n  subjectToken: pod\n  subjectTokenFile: /t\n",
                "only with subjectToken: file",
            ),
            (
                "  flavor: artifactory\n  tokenUrl: https://a\n  subjectToken: pod\n",
                "providerName: required",
            ),
            (
                "  flavor: artifactory\n  tokenUrl: https://a\n  providerName: p\n  subjectToken: pod\n  requestFormat: form\n",
                "JSON only",
            ),
            (
                "  flavor: artifactory\n  tokenUrl: https://a\n  providerName: p\n  subjectToken: pod\n  subjectTokenField: t\n",
                "only with flavor rfc8693",
            ),
            (
                "  tokenUrl: https://s/t\n  subjectToken: pod\n  providerName: p\n",
                "only with flavor artifactory",
            ),
            (
                "  tokenUrl: https://s/t\n  subjectToken: pod\n  parameters: {grant_type: x}\n",
                "parameters.grant_type",
            ),
            (
                "  tokenUrl: https://s/t\n  subjectToken: pod\n  subjectTokenField: oidc_token\n  parameters: {oidc_token: x}\n",
                "parameters.oidc_token",
            ),
            (
                "  tokenUrl: https://s/t\n  subjectToken: pod\n  tokenField: ''\n",
                "tokenField",
            ),
            (
                "  tokenUrl: https://s/t\n  subjectToken: pod\n  username: u\n  usernameField: f\n",
                "not both",
            ),
        ] {
            let p = problems(entry);
            assert!(p.iter().any(|p| p.contains(want)), "{entry}: {p:?}");
        }
    }
}
