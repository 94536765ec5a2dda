//! Service-account key files: a JWT signed with the key (RS256) is exchanged
//! at the file's `token_uri` for an access token (OAuth 2.0 JWT bearer grant,
//! RFC 7523), as Google documents for server-to-server applications.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Deserialize;

use super::{parse_token_response, post_ok};
use crate::deadline::Deadline;
use crate::http::Client;
use crate::secret::Secret;
use crate::sources::SourceError;

pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The assertion's life; Google accepts at most one hour.
const ASSERTION_LIFE: i64 = 3600;

#[derive(Deserialize)]
struct KeyFile {
    client_email: Option<String>,
    private_key: Option<Secret>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

/// A parsed service-account key file. Debug never shows the key.
pub struct ServiceAccountKey {
    pub client_email: String,
    pub private_key_id: Option<String>,
    pub token_uri: String,
    key: RsaKeyPair,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKey {
    /// Parses the key file's JSON. Errors name the field, never its value.
    pub fn parse(bytes: &[u8]) -> Result<ServiceAccountKey, String> {
        let f: KeyFile = serde_json::from_slice(bytes).map_err(|e| {
            format!(
                "malformed service account key ({})",
                crate::error::json_position(&e)
            )
        })?;
        let client_email = f
            .client_email
            .filter(|e| !e.is_empty())
            .ok_or("service account key has no client_email")?;
        let pem = f
            .private_key
            .filter(|k| !k.is_empty())
            .ok_or("service account key has no private_key")?;
        let der = pem_pkcs8(pem.expose())?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|e| {
            format!("service account private_key is not a usable PKCS#8 RSA key ({e})")
        })?;
        let token_uri = f
            .token_uri
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_string());
        // It receives a signed assertion: https, or http to loopback only.
        crate::endpoint::secret_destination(&token_uri, "token_uri")?;
        Ok(ServiceAccountKey {
            client_email,
            private_key_id: f.private_key_id.filter(|k| !k.is_empty()),
            token_uri,
            key,
        })
    }

    /// The signed assertion for `scopes`, issued at `iat` (unix seconds).
    pub fn assertion(&self, scopes: &[String], iat: i64) -> Result<Secret, String> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = kid.as_str().into();
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": scopes.join(" "),
            "aud": self.token_uri,
            "iat": iat,
            "exp": iat + ASSERTION_LIFE,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| "signing the JWT assertion failed".to_string())?;
        Ok(Secret::new(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(sig)
        )))
    }

    /// Exchanges a fresh assertion for an access token.
    pub fn fetch(
        &self,
        scopes: &[String],
        deadline: &Deadline,
    ) -> Result<(Secret, i64), SourceError> {
        let step = format!(
            "google token endpoint ({}) for service account {}",
            self.token_uri, self.client_email
        );
        let now = deadline.now_unix();
        let assertion = self
            .assertion(scopes, now)
            .map_err(|detail| SourceError::new(step.clone(), detail))?;
        tracing::debug!(token_uri = %self.token_uri, "exchanging a service account JWT");
        let client = Client::new(deadline);
        let resp = post_ok(deadline, &step, || {
            client.post_form(
                &self.token_uri,
                &[],
                &[
                    ("grant_type", JWT_BEARER_GRANT),
                    ("assertion", assertion.expose()),
                ],
            )
        })?;
        parse_token_response(&resp.body, deadline.now_unix())
            .map_err(|detail| SourceError::new(step, detail))
    }
}

/// The DER inside a `-----BEGIN PRIVATE KEY-----` PEM block (PKCS#8).
pub fn pem_pkcs8(pem: &str) -> Result<Vec<u8>, String> {
    const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
    const END: &str = "-----END PRIVATE KEY-----";
    if pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
        return Err(
            "service account private_key is PKCS#1 (BEGIN RSA PRIVATE KEY); Google key files hold PKCS#8 (BEGIN PRIVATE KEY)"
                .into(),
        );
    }
    let start = pem
        .find(BEGIN)
        .ok_or("service account private_key is not a PEM PRIVATE KEY block")?
        + BEGIN.len();
    let len = pem[start..]
        .find(END)
        .ok_or("service account private_key PEM block has no END line")?;
    let b64: String = pem[start..start + len]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD
        .decode(b64)
        .map_err(|_| "service account private_key PEM block is not base64".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{KeyPair, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    /// A throwaway RSA-2048 PKCS#8 key made for these tests (`openssl
    /// genpkey -algorithm RSA`); it guards nothing.
    const TEST_KEY: &str = include_str!("testdata/test-key.pem");

    fn key_file(extra: &str) -> String {
        format!(
            r#"{{"type":"service_account","client_email":"puller@p.iam.gserviceaccount.com","private_key_id":"kid1","private_key":{},"token_uri":"https://oauth2.example/token"{extra}}}"#,
            serde_json::to_string(TEST_KEY).unwrap()
        )
    }

    fn decode_part(p: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
    }

    #[test]
    fn builds_and_signs_the_assertion() {
        let k = ServiceAccountKey::parse(key_file("").as_bytes()).unwrap();
        let scopes = vec![super::super::DEFAULT_SCOPE.to_string()];
        let jwt = k.assertion(&scopes, 1_800_000_000).unwrap();
        let parts: Vec<&str> = jwt.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        let h = decode_part(parts[0]);
        assert_eq!(
            h,
            serde_json::json!({"alg":"RS256","typ":"JWT","kid":"kid1"})
        );
        let c = decode_part(parts[1]);
        assert_eq!(c["iss"], "puller@p.iam.gserviceaccount.com");
        assert_eq!(c["aud"], "https://oauth2.example/token");
        assert_eq!(c["scope"], "https://www.googleapis.com/auth/cloud-platform");
        assert_eq!(c["iat"], 1_800_000_000);
        assert_eq!(c["exp"], 1_800_003_600);
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let public =
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, k.key.public_key().as_ref());
        public
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .expect("signature verifies with the key's public half");
        assert!(!format!("{k:?}").contains("PRIVATE"));
    }

    #[test]
    fn defaults_and_malformed_files() {
        let no_uri = key_file("").replace(r#","token_uri":"https://oauth2.example/token""#, "");
        let k = ServiceAccountKey::parse(no_uri.as_bytes()).unwrap();
        assert_eq!(k.token_uri, DEFAULT_TOKEN_URI);
        let cases = [
            (r#"{"type":"service_account"}"#.to_string(), "no client_email"),
            (
                r#"{"type":"service_account","client_email":"a@b"}"#.to_string(),
                "no private_key",
            ),
            (
                r#"{"client_email":"a@b","private_key":"not pem"}"#.to_string(),
                "not a PEM",
            ),
            (
                r#"{"client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n"}"#
                    .to_string(),
                "not base64",
            ),
            (
                r#"{"client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}"#
                    .to_string(),
                "not a usable",
            ),
            (
                r#"{"client_email":"a@b","private_key":"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"}"#
                    .to_string(),
                "PKCS#1",
            ),
            (
                r#"{"client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n"}"#.to_string(),
                "no END",
            ),
            (key_file("").replace("https://oauth2.example/token", "file:///etc/x"), "not an http"),
            (
                key_file("").replace("https://oauth2.example/token", "http://oauth2.example/token"),
                "token_uri \"http://oauth2.example\" is plain http",
            ),
            (
                key_file("").replace("https://oauth2.example/token", "https://oauth2.googleapis.com@evil.example/token"),
                "userinfo",
            ),
            (r#"{"client_email": 5}"#.to_string(), "malformed"),
        ];
        for (body, want) in cases {
            let e = ServiceAccountKey::parse(body.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
            assert!(!e.contains("AAAA"), "{e}");
        }
    }
}
