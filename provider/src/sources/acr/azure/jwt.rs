//! Just enough JWT: read the claims of a token handed to us (no signature
//! check: ACR's refresh token and Entra's access token are for us to use, not
//! to trust), and sign a client assertion for a certificate credential
//! (RS256, `x5t` header, as Entra documents for certificate credentials).

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use ring::rand::SecureRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::{Map, Value};

/// The payload of a compact JWS, or `None` if it is not one.
pub fn claims(token: &str) -> Option<Map<String, Value>> {
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(payload))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// The `exp` claim, in unix seconds.
pub fn expiry(token: &str) -> Option<i64> {
    match claims(token)?.get("exp")? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        _ => None,
    }
}

/// A string claim, such as an Entra access token's tenant (`tid`).
pub fn string_claim(token: &str, name: &str) -> Option<String> {
    match claims(token)?.get(name)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// An RSA key and its certificate, for Entra's certificate credential.
pub struct CertificateKey {
    key: RsaKeyPair,
    /// base64url SHA-1 of the certificate's DER: the `x5t` header.
    thumbprint: String,
}

impl std::fmt::Debug for CertificateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertificateKey(x5t {})", self.thumbprint)
    }
}

impl CertificateKey {
    /// From PEM text holding the certificate and its RSA private key
    /// (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`), in either order.
    pub fn from_pem(pem: &[u8]) -> Result<CertificateKey, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let cert = CertificateDer::pem_slice_iter(pem)
            .next()
            .ok_or("no CERTIFICATE block (PEM expected; PKCS#12/.pfx is not supported: convert it with `openssl pkcs12 -in cert.pfx -nodes -out cert.pem`)")?
            .map_err(|e| format!("bad CERTIFICATE block: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|_| "no unencrypted private key block (PRIVATE KEY or RSA PRIVATE KEY) next to the certificate".to_string())?;
        let key = match &key {
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => {
                return Err(
                    "the private key is not RSA (Entra certificate credentials need RSA)".into(),
                );
            }
        }
        .map_err(|e| format!("the private key is not a usable RSA key: {e}"))?;
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.as_ref());
        Ok(CertificateKey {
            key,
            thumbprint: URL_SAFE_NO_PAD.encode(sha1.as_ref()),
        })
    }

    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A client assertion for `client_id` at the token endpoint `audience`,
    /// valid for ten minutes from `now`.
    pub fn assertion(&self, client_id: &str, audience: &str, now: i64) -> Result<String, String> {
        let rng = ring::rand::SystemRandom::new();
        let mut jti = [0u8; 16];
        rng.fill(&mut jti)
            .map_err(|_| "no randomness for the assertion id")?;
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": self.thumbprint});
        let payload = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": jti.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "nbf": now,
            "iat": now,
            "exp": now + 600,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &rng, signing_input.as_bytes(), &mut sig)
            .map_err(|_| "signing the client assertion failed")?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn reads_exp_and_tid() {
        let t = jwt(r#"{"exp":1800010800,"tid":"t-1","grant_type":"refresh_token"}"#);
        assert_eq!(expiry(&t), Some(1_800_010_800));
        assert_eq!(string_claim(&t, "tid").as_deref(), Some("t-1"));
        assert_eq!(expiry(&jwt(r#"{"exp":1800010800.5}"#)), Some(1_800_010_800));
    }

    #[test]
    fn padded_payloads_are_read_too() {
        let t = format!("h.{}.s", URL_SAFE.encode(r#"{"exp":17}"#));
        assert_eq!(expiry(&t), Some(17));
    }

    #[test]
    fn garbled_or_missing_exp_is_none() {
        for t in [
            "",
            "not-a-jwt",
            "a.b",
            "a.b.c.d",
            "a.!!!.c",
            &jwt("[1,2]"),
            &jwt(r#"{"exp":"soon"}"#),
            &jwt(r#"{"iat":1}"#),
            &jwt("not json"),
        ] {
            assert_eq!(expiry(t), None, "{t}");
        }
    }
}
