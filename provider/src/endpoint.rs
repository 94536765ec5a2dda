//! Where a credential may be sent: one parser and one policy for every URL
//! that receives a secret (a token, a password, a client secret, a pod's
//! service-account token).
//!
//! The rule, for the whole binary: a secret goes only over `https`, to a host
//! read by a real URL parser, with no userinfo. Plain `http` is allowed only
//! to loopback (`127.0.0.0/8`, `::1`, `localhost`: tests and local agents);
//! the cloud metadata endpoints, plain http by design, do not come here.
//!
//! URLs are parsed with `http::Uri`, the parser the HTTP clients themselves
//! use (ureq, and the AWS SDK's client), so what is checked here is what is
//! connected to. On top of it, the host must be a plain DNS name or an IP
//! literal: no percent-encoding, no userinfo (`https://a.example@b.example`
//! goes to `b.example`), no backslash, no fragment. Hosts are compared
//! lower-case; a trailing dot is kept, so `r.azurecr.io.` matches no rule.
//!
//! Callers that send a secret rebuild the URL from [`Destination`]'s parts
//! ([`Destination::url`]) instead of reusing the text they were given.

use std::net::{Ipv4Addr, Ipv6Addr};

use ::http::Uri;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A parsed http(s) URL: scheme, lower-case host (an IPv6 literal keeps its
/// brackets), port (explicit or the scheme's), path and query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// Whether the URL named the port.
    pub explicit_port: bool,
    /// `/path?query`, at least `/`.
    pub path_and_query: String,
}

impl Destination {
    /// `host` or `host:port`, the port shown when the URL named it.
    pub fn authority(&self) -> String {
        if self.explicit_port {
            format!("{}:{}", self.host, self.port)
        } else {
            self.host.clone()
        }
    }

    /// `scheme://authority`.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme.as_str(), self.authority())
    }

    /// The whole URL, rebuilt from its parts.
    pub fn url(&self) -> String {
        format!("{}{}", self.origin(), self.path_and_query)
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split('?')
            .next()
            .unwrap_or(&self.path_and_query)
    }

    /// Same host and same port (explicit or default) as `other`.
    pub fn same_host_and_port(&self, other: &Destination) -> bool {
        self.host == other.host && self.port == other.port
    }

    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.host)
    }
}

/// `localhost`, `127.0.0.0/8` or `[::1]` (the host as [`Destination`] holds it).
pub fn is_loopback_host(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|a| a.is_loopback());
    }
    host.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

/// Parses an absolute http(s) URL. `what` names it in errors (a variable, a
/// file field, "the challenge's realm"). Refuses userinfo, fragments,
/// percent-encoded or otherwise unusual hosts. Does not judge the scheme:
/// see [`secret_destination`].
pub fn parse(raw: &str, what: &str) -> Result<Destination, String> {
    let shown = shorten(raw);
    let bad = |why: &str| Err(format!("{what} {shown:?} {why}"));
    if raw.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if raw.contains('#') {
        return bad("has a fragment (#)");
    }
    if raw
        .bytes()
        .any(|b| b == b'\\' || b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return bad("holds a backslash, a space or a control character");
    }
    match raw.split_once("://").map(|(s, _)| s.to_ascii_lowercase()) {
        Some(s) if s == "https" || s == "http" => {}
        Some(_) => return bad("is not an http(s) URL"),
        None => return bad("is not an absolute http(s) URL"),
    }
    let uri: Uri = match raw.parse() {
        Ok(u) => u,
        Err(_) => return bad("is not a valid URL"),
    };
    let scheme = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("https") => Scheme::Https,
        Some("http") => Scheme::Http,
        Some(_) => return bad("is not an http(s) URL"),
        None => return bad("is not an absolute http(s) URL"),
    };
    let Some(authority) = uri.authority() else {
        return bad("has no host");
    };
    if authority.as_str().contains('@') {
        return bad("has userinfo (user@host); refusing it");
    }
    let host = authority.host().to_ascii_lowercase();
    if !valid_host(&host) {
        return bad("does not name a plain host name or IP address");
    }
    // Whatever follows the host must be `:port` with a port in 1..=65535
    // (http::Uri reads `:65536` as no port at all).
    let after_host = &authority.as_str()[authority.host().len()..];
    let port = match (after_host, authority.port_u16()) {
        ("", _) => None,
        (_, Some(p)) if p > 0 && after_host == format!(":{p}") => Some(p),
        _ => return bad("has an invalid port"),
    };
    let path_and_query = match uri.path_and_query().map(|p| p.as_str()) {
        None | Some("") => "/".to_string(),
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => format!("/{p}"),
    };
    Ok(Destination {
        scheme,
        host,
        port: port.unwrap_or(scheme.default_port()),
        explicit_port: port.is_some(),
        path_and_query,
    })
}

/// [`parse`], and the destination may receive a secret: `https`, or `http`
/// to a loopback host.
pub fn secret_destination(raw: &str, what: &str) -> Result<Destination, String> {
    let d = parse(raw, what)?;
    check_secret(&d, what)?;
    Ok(d)
}

/// The https rule on an already parsed destination.
pub fn check_secret(d: &Destination, what: &str) -> Result<(), String> {
    if d.scheme == Scheme::Http && !d.is_loopback() {
        return Err(format!(
            "{what} {:?} is plain http to a host that is not loopback; refusing to send it credentials in clear (use https)",
            shorten(&d.origin())
        ));
    }
    Ok(())
}

/// A DNS name (letters, digits, `-`, `_`, dots) or an IP literal.
fn valid_host(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[') {
        return v6
            .strip_suffix(']')
            .is_some_and(|a| a.parse::<Ipv6Addr>().is_ok());
    }
    !host.is_empty()
        && !host.starts_with('.')
        && !host.contains("..")
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Error text shows at most 200 characters of a URL.
fn shorten(s: &str) -> String {
    if s.chars().count() <= 200 {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(200).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> Destination {
        secret_destination(raw, "X").unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    fn refused(raw: &str) -> String {
        match secret_destination(raw, "X") {
            Ok(d) => panic!("{raw} accepted as {d:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn parts_of_a_plain_https_url() {
        let d = ok("https://r.azurecr.io/oauth2/token?service=r.azurecr.io");
        assert_eq!(d.scheme, Scheme::Https);
        assert_eq!(d.host, "r.azurecr.io");
        assert_eq!((d.port, d.explicit_port), (443, false));
        assert_eq!(d.path_and_query, "/oauth2/token?service=r.azurecr.io");
        assert_eq!(d.path(), "/oauth2/token");
        assert_eq!(d.origin(), "https://r.azurecr.io");
        assert_eq!(
            d.url(),
            "https://r.azurecr.io/oauth2/token?service=r.azurecr.io"
        );
        let d = ok("https://login.example:8443");
        assert_eq!((d.port, d.explicit_port), (8443, true));
        assert_eq!(d.url(), "https://login.example:8443/");
        assert!(ok("https://a:443/").same_host_and_port(&ok("https://a/x")));
        assert!(!ok("https://a:8443/").same_host_and_port(&ok("https://a/x")));
    }

    #[test]
    fn userinfo_is_refused_in_every_shape() {
        for raw in [
            "https://other.azurecr.io:443@evil.example/oauth2/token",
            "https://a@b/",
            "https://user:pass@r.azurecr.io/",
            "https://@r.azurecr.io/",
            "http://127.0.0.1@evil.example/",
            "https://r.azurecr.io%40evil.example/",
        ] {
            let e = refused(raw);
            assert!(e.starts_with("X "), "{e}");
        }
        assert!(refused("https://a@b/").contains("userinfo"));
    }

    #[test]
    fn backslashes_fragments_spaces_are_refused() {
        // WHATWG reads `\` as `/` (host b); http::Uri does not: refuse both readings.
        for raw in [
            "https://b\\@a/",
            "https://b\\a/",
            "https://evil.example#@r.azurecr.io/",
            "https://r.azurecr.io/#x",
            "https://r.azurecr.io /x",
            "https://r.azurecr.io/\n",
        ] {
            refused(raw);
        }
    }

    #[test]
    fn hosts_are_plain_names_or_ip_literals() {
        assert_eq!(ok("https://R.AzureCR.IO/").host, "r.azurecr.io");
        assert_eq!(ok("HTTPS://r.azurecr.io/").scheme, Scheme::Https);
        // the trailing dot is kept: it matches no host rule by accident
        assert_eq!(ok("https://r.azurecr.io./").host, "r.azurecr.io.");
        for raw in [
            "https://r%2eazurecr.io/",
            "https://%72.azurecr.io/",
            "https://r..azurecr.io/",
            "https://.r.azurecr.io/",
            "https:///path",
            "https://",
            "https://[::1/",
            "https://[not:an:ip]/",
            "https://a!b/",
        ] {
            refused(raw);
        }
    }

    #[test]
    fn ports_and_ipv6_literals() {
        let d = ok("https://[2001:DB8::1]:8443/t");
        assert_eq!(d.host, "[2001:db8::1]");
        assert_eq!(d.authority(), "[2001:db8::1]:8443");
        assert_eq!(d.url(), "https://[2001:db8::1]:8443/t");
        let d = ok("http://[::1]:9/t");
        assert!(d.is_loopback());
        for raw in [
            "https://a:0/",
            "https://a:65536/",
            "https://a:-1/",
            "https://a:x/",
            "https://a:/",
        ] {
            refused(raw);
        }
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for raw in [
            "http://127.0.0.1:1/t",
            "http://127.9.9.9/",
            "http://localhost:5/",
            "http://LOCALHOST/",
            "http://[::1]/",
        ] {
            assert_eq!(ok(raw).scheme, Scheme::Http, "{raw}");
        }
        for raw in [
            "http://evil.example/t",
            "http://10.0.0.1/",
            "http://169.254.169.254/",
            "http://localhost.evil.example/",
            "http://localhost./",
            "http://127.0.0.1.evil.example/",
            "http://[::ffff:127.0.0.1]/",
            "http://2130706433/",
            "http://0x7f.1/",
        ] {
            let e = refused(raw);
            assert!(
                e.contains("plain http") || e.contains("valid"),
                "{raw}: {e}"
            );
        }
    }

    #[test]
    fn other_schemes_and_relative_urls() {
        for raw in [
            "ftp://a/",
            "file:///etc/passwd",
            "/oauth2/token",
            "r.azurecr.io/x",
            "",
        ] {
            refused(raw);
        }
        assert!(refused("").contains("empty"));
        assert!(
            parse("http://evil.example/", "X").is_ok(),
            "parse alone does not judge the scheme"
        );
    }

    #[test]
    fn errors_name_the_setting_and_stay_short() {
        let e = secret_destination("http://evil.example/t", "AZURE_AUTHORITY_HOST").unwrap_err();
        assert!(e.starts_with("AZURE_AUTHORITY_HOST "), "{e}");
        assert!(!e.contains('\n'));
        let long = format!("https://a@b/{}", "x".repeat(5000));
        assert!(refused(&long).len() < 400);
    }
}
