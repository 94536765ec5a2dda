//! One proxy policy for every HTTP client in the binary (the blocking client in
//! `http` and the AWS SDK's client), read once from the environment.
//!
//! - An `https://` URL uses the first non-empty of `https_proxy`,
//!   `HTTPS_PROXY`, `all_proxy`, `ALL_PROXY`; an `http://` URL the first of
//!   `http_proxy`, `HTTP_PROXY`, `all_proxy`, `ALL_PROXY`. Lower case wins
//!   when both are set, as in curl. An `https://` URL never falls back to
//!   `HTTP_PROXY`.
//! - A proxy is `http://[user:password@]host[:port]` (port 80 by default; no
//!   scheme means `http://`). `https://` and `socks*://` proxies are refused:
//!   a request that would use one fails with a one-line error naming the
//!   variable, rather than silently going direct.
//! - `no_proxy` (else `NO_PROXY`), split on commas and spaces: `*` (nothing is
//!   proxied); a domain (`example.com`, `.example.com` and `*.example.com`
//!   all match `example.com` and every name under it); an IP address; a CIDR
//!   (`10.0.0.0/8`, `fd00::/8`); any of these but `*` and CIDRs may end in
//!   `:port` (`[::1]:8080` for IPv6) to match that port only. Names are
//!   compared, never resolved: an IP or CIDR entry matches a URL whose host is
//!   that IP literal.
//! - Never proxied, whatever the environment says: instance metadata and
//!   credential endpoints (`169.254.0.0/16`, `fe80::/10`, `fd00:ec2::254`,
//!   `fd00:ec2::23`, `metadata.google.internal`, `metadata`, and the hosts
//!   named by `GCE_METADATA_HOST`, `GCE_METADATA_IP`,
//!   `AWS_EC2_METADATA_SERVICE_ENDPOINT`,
//!   `AWS_CONTAINER_CREDENTIALS_FULL_URI` and `PULLCRED_AZURE_IMDS_ENDPOINT`),
//!   and loopback (`localhost`, `*.localhost`, `127.0.0.0/8`, `::1`), as Go
//!   does. A token request to a metadata server must not be readable, or
//!   answerable, by a proxy.
//!
//! A proxy's password is never printed: [`ProxyUrl`]'s `Display` and `Debug`
//! show `***`, and [`scrub`] takes it out of library error text.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::OnceLock;

/// An `http://` forward proxy.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// Host name or IP address, without brackets.
    pub host: String,
    pub port: u16,
    /// Decoded user name and password, if the URL had them.
    pub user: Option<String>,
    pub password: Option<String>,
    /// The variable it came from.
    pub var: &'static str,
}

impl ProxyUrl {
    /// `host:port`, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL with its credentials percent-encoded, for the HTTP clients
    /// only: never log it.
    pub fn url_with_credentials(&self) -> String {
        match (&self.user, &self.password) {
            (Some(u), Some(p)) => format!(
                "http://{}:{}@{}",
                crate::encode::percent_encode(u),
                crate::encode::percent_encode(p),
                self.authority()
            ),
            (Some(u), None) => format!(
                "http://{}@{}",
                crate::encode::percent_encode(u),
                self.authority()
            ),
            _ => format!("http://{}", self.authority()),
        }
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.user, &self.password) {
            (Some(u), Some(_)) => write!(f, "http://{u}:***@{}", self.authority()),
            (Some(u), None) => write!(f, "http://{u}@{}", self.authority()),
            _ => write!(f, "http://{}", self.authority()),
        }
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self} from {})", self.var)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Setting {
    Unset,
    Proxy(ProxyUrl),
    /// A variable is set to something we will not use; requests that would
    /// use it fail with this one-line message.
    Refused(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    All,
    Net(IpAddr, u8),
    Ip(IpAddr, Option<u16>),
    Domain(String, Option<u16>),
}

/// The proxy settings of this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    https: Setting,
    http: Setting,
    no_proxy: Vec<Rule>,
    /// Hosts named by metadata-endpoint variables: always direct.
    metadata_hosts: Vec<String>,
}

/// Variables, in order, for each target scheme.
const HTTPS_VARS: [&str; 4] = ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"];
const HTTP_VARS: [&str; 4] = ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"];
const NO_PROXY_VARS: [&str; 2] = ["no_proxy", "NO_PROXY"];

/// Metadata-endpoint variables: `(name, holds a URL rather than host[:port])`.
const METADATA_VARS: [(&str, bool); 5] = [
    ("GCE_METADATA_HOST", false),
    ("GCE_METADATA_IP", false),
    ("AWS_EC2_METADATA_SERVICE_ENDPOINT", true),
    ("AWS_CONTAINER_CREDENTIALS_FULL_URI", true),
    ("PULLCRED_AZURE_IMDS_ENDPOINT", true),
];

/// Metadata names that are never proxied.
const METADATA_NAMES: [&str; 2] = ["metadata.google.internal", "metadata"];

impl Policy {
    pub fn from_env() -> Policy {
        Policy::from_lookup(|k| std::env::var(k).ok())
    }

    /// The policy from any variable source (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Policy {
        let first = |vars: &[&'static str]| {
            vars.iter().find_map(|v| {
                get(v)
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .map(|s| (*v, s))
            })
        };
        let setting = |vars: &[&'static str]| match first(vars) {
            None => Setting::Unset,
            Some((var, value)) => match parse_proxy(var, &value) {
                Ok(p) => Setting::Proxy(p),
                Err(e) => Setting::Refused(e),
            },
        };
        let no_proxy = first(&NO_PROXY_VARS)
            .map(|(_, v)| parse_no_proxy(&v))
            .unwrap_or_default();
        let metadata_hosts = METADATA_VARS
            .iter()
            .filter_map(|(var, is_url)| {
                let v = get(var)?;
                let v = v.trim();
                let host = if *is_url {
                    Target::parse(v)?.host
                } else {
                    Target::parse(&format!("http://{v}"))?.host
                };
                (!host.is_empty()).then_some(host)
            })
            .collect();
        Policy {
            https: setting(&HTTPS_VARS),
            http: setting(&HTTP_VARS),
            no_proxy,
            metadata_hosts,
        }
    }

    /// Is any proxy configured at all?
    pub fn is_empty(&self) -> bool {
        self.https == Setting::Unset && self.http == Setting::Unset
    }

    /// The proxy to use for `url`, `None` to connect directly, or why the
    /// configured proxy cannot be used (one line, no password).
    pub fn proxy_for(&self, url: &str) -> Result<Option<&ProxyUrl>, String> {
        let Some(t) = Target::parse(url) else {
            return Ok(None);
        };
        let setting = match t.scheme.as_str() {
            "https" => &self.https,
            "http" => &self.http,
            _ => return Ok(None),
        };
        if *setting == Setting::Unset || self.is_direct(&t) {
            return Ok(None);
        }
        match setting {
            Setting::Proxy(p) => Ok(Some(p)),
            Setting::Refused(e) => Err(e.clone()),
            Setting::Unset => Ok(None),
        }
    }

    /// Every proxy this policy may use (for building one connector each).
    pub fn proxies(&self) -> Vec<&ProxyUrl> {
        let mut out: Vec<&ProxyUrl> = Vec::new();
        for s in [&self.https, &self.http] {
            if let Setting::Proxy(p) = s
                && !out.contains(&p)
            {
                out.push(p);
            }
        }
        out
    }

    fn is_direct(&self, t: &Target) -> bool {
        if is_always_direct(&t.host) || self.metadata_hosts.contains(&t.host) {
            return true;
        }
        let ip = t.host.parse::<IpAddr>().ok();
        self.no_proxy.iter().any(|r| match r {
            Rule::All => true,
            Rule::Net(net, len) => ip.is_some_and(|ip| in_net(ip, *net, *len)),
            Rule::Ip(want, port) => {
                ip.is_some_and(|ip| ip == *want) && port.is_none_or(|p| p == t.port)
            }
            Rule::Domain(d, port) => {
                (t.host == *d
                    || t.host
                        .strip_suffix(d.as_str())
                        .is_some_and(|h| h.ends_with('.')))
                    && port.is_none_or(|p| p == t.port)
            }
        })
    }

    /// One line for the debug log: where each scheme goes.
    pub fn describe(&self) -> String {
        let one = |s: &Setting| match s {
            Setting::Unset => "direct".to_string(),
            Setting::Proxy(p) => format!("{p} ({})", p.var),
            Setting::Refused(e) => format!("refused: {e}"),
        };
        format!(
            "https via {}; http via {}; {} no_proxy rule(s)",
            one(&self.https),
            one(&self.http),
            self.no_proxy.len()
        )
    }

    /// `text` with every configured proxy password replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for p in self.proxies() {
            if let Some(pw) = p.password.as_deref().filter(|pw| pw.len() >= 3) {
                out = out
                    .replace(&crate::encode::percent_encode(pw), "***")
                    .replace(pw, "***");
            }
        }
        out
    }
}

/// The process's policy, read from the environment on first use.
pub fn global() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let p = Policy::from_env();
        if !p.is_empty() {
            tracing::debug!(policy = %p.describe(), "proxy settings");
        }
        p
    })
}

/// [`Policy::scrub`] with the process's policy.
pub fn scrub(text: &str) -> String {
    global().scrub(text)
}

/// Metadata servers, credential agents and loopback: never through a proxy.
pub fn is_always_direct(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host == "localhost" || host.ends_with(".localhost") || METADATA_NAMES.contains(&host) {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback() || v4.is_link_local(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback()
                || in_net(
                    IpAddr::V6(v6),
                    IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)),
                    10,
                )
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23)
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_link_local())
        }
        Err(_) => false,
    }
}

/// The parts of a request URL the policy looks at.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    scheme: String,
    /// Lower case, no brackets, no trailing dot.
    host: String,
    port: u16,
}

impl Target {
    fn parse(url: &str) -> Option<Target> {
        let (scheme, rest) = url.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = split_host_port(hostport)?;
        let port = match port {
            Some(p) => p,
            None => match scheme.as_str() {
                "https" => 443,
                "http" => 80,
                _ => 0,
            },
        };
        Some(Target {
            scheme,
            host: host.trim_end_matches('.').to_ascii_lowercase(),
            port,
        })
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`; a bare IPv6 address has no port.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host, port));
    }
    if s.parse::<Ipv6Addr>().is_ok() {
        return Some((s, None));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(p.parse().ok()?))),
        None => Some((s, None)),
    }
}

fn parse_proxy(var: &'static str, value: &str) -> Result<ProxyUrl, String> {
    let (scheme, rest) = match value.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("http".to_string(), value),
    };
    if scheme != "http" {
        return Err(format!(
            "{var} names a {scheme}:// proxy; only http:// proxies are supported"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let bad = || format!("{var} is not a proxy URL of the form http://host:port");
    let (host, port) = split_host_port(hostport).ok_or_else(bad)?;
    if host.is_empty() {
        return Err(bad());
    }
    let (user, password) = match userinfo {
        None => (None, None),
        Some(u) => match u.split_once(':') {
            Some((u, p)) => (Some(decode(u)), Some(decode(p))),
            None => (Some(decode(u)), None),
        },
    };
    Ok(ProxyUrl {
        host: host.to_ascii_lowercase(),
        port: port.unwrap_or(80),
        user,
        password,
        var,
    })
}

fn parse_no_proxy(value: &str) -> Vec<Rule> {
    value
        .split([',', ' ', '\t'])
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .filter_map(|e| {
            if e == "*" {
                return Some(Rule::All);
            }
            if let Some((addr, len)) = e.split_once('/') {
                let addr = addr.trim_start_matches('[').trim_end_matches(']');
                let ip: IpAddr = addr.parse().ok()?;
                let len: u8 = len.parse().ok()?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                return (len <= max).then_some(Rule::Net(ip, len));
            }
            let (host, port) = split_host_port(&e)?;
            if let Ok(ip) = host.parse::<IpAddr>() {
                return Some(Rule::Ip(ip, port));
            }
            let d = host
                .trim_start_matches("*.")
                .trim_start_matches('.')
                .trim_end_matches('.');
            (!d.is_empty()).then(|| Rule::Domain(d.to_string(), port))
        })
        .collect()
}

fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|a| in_net(IpAddr::V4(a), net, len)),
        (IpAddr::V4(a), IpAddr::V6(_)) => in_net(IpAddr::V6(a.to_ipv6_mapped()), net, len),
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn policy(vars: &[(&str, &str)]) -> Policy {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Policy::from_lookup(|k| m.get(k).cloned())
    }

    fn via(p: &Policy, url: &str) -> Option<String> {
        p.proxy_for(url).unwrap().map(|p| p.authority())
    }

    #[test]
    fn scheme_picks_the_variable_and_lower_case_wins() {
        let p = policy(&[
            ("HTTPS_PROXY", "http://upper:3128"),
            ("https_proxy", "http://lower:3128"),
            ("HTTP_PROXY", "plain:8080"),
        ]);
        assert_eq!(via(&p, "https://x.example/"), Some("lower:3128".into()));
        assert_eq!(via(&p, "http://x.example/"), Some("plain:8080".into()));
        // https never falls back to HTTP_PROXY
        let p = policy(&[("HTTP_PROXY", "http://p:1")]);
        assert_eq!(via(&p, "https://x.example/"), None);
        assert_eq!(via(&p, "http://x.example/"), Some("p:1".into()));
        // ALL_PROXY is the fallback for both; an empty value counts as unset
        let p = policy(&[("https_proxy", " "), ("ALL_PROXY", "http://all:9")]);
        assert_eq!(via(&p, "https://x.example/"), Some("all:9".into()));
        assert_eq!(via(&p, "http://x.example/"), Some("all:9".into()));
        assert!(policy(&[]).is_empty());
        assert_eq!(via(&policy(&[]), "https://x.example/"), None);
    }

    #[test]
    fn proxy_urls_parse_with_credentials_and_defaults() {
        let p = policy(&[("HTTPS_PROXY", "http://us%40er:p%3Ass@Proxy.corp:3128/")]);
        let got = p.proxy_for("https://a.example").unwrap().unwrap().clone();
        assert_eq!(got.host, "proxy.corp");
        assert_eq!(got.port, 3128);
        assert_eq!(got.user.as_deref(), Some("us@er"));
        assert_eq!(got.password.as_deref(), Some("p:ss"));
        assert_eq!(got.to_string(), "http://us@er:***@proxy.corp:3128");
        assert!(!format!("{got:?}").contains("p:ss"));
        assert_eq!(
            got.url_with_credentials(),
            "http://us%40er:p%3Ass@proxy.corp:3128"
        );
        let p = policy(&[("HTTPS_PROXY", "[fd00::1]")]);
        let got = p.proxy_for("https://a.example").unwrap().unwrap();
        assert_eq!((got.authority().as_str(), got.port), ("[fd00::1]:80", 80));
    }

    #[test]
    fn unsupported_proxy_schemes_are_refused_without_the_password() {
        for v in ["socks5://u:hunter22@s:1080", "https://u:hunter22@p:443"] {
            let p = policy(&[("HTTPS_PROXY", v)]);
            let e = p.proxy_for("https://a.example").unwrap_err();
            assert!(e.starts_with("HTTPS_PROXY names a "), "{e}");
            assert!(!e.contains("hunter22"), "{e}");
            // bypassed hosts are still direct
            assert_eq!(p.proxy_for("http://169.254.169.254/").unwrap(), None);
        }
        let p = policy(&[("HTTPS_PROXY", "http://:3128")]);
        assert!(p.proxy_for("https://a.example").is_err());
    }

    #[test]
    fn no_proxy_domains_match_the_domain_and_below() {
        let p = policy(&[
            ("HTTPS_PROXY", "http://p:1"),
            (
                "NO_PROXY",
                "example.com, .corp.internal,*.svc ,registry.local:5000",
            ),
        ]);
        for direct in [
            "https://example.com/",
            "https://api.example.com/",
            "https://EXAMPLE.COM./",
            "https://corp.internal/",
            "https://a.b.corp.internal/",
            "https://x.svc/",
            "https://registry.local:5000/v2/",
        ] {
            assert_eq!(via(&p, direct), None, "{direct}");
        }
        for proxied in [
            "https://notexample.com/",
            "https://example.com.evil/",
            "https://registry.local/",
            "https://registry.local:5001/",
            "https://svc.example.org/",
        ] {
            assert_eq!(via(&p, proxied), Some("p:1".into()), "{proxied}");
        }
    }

    #[test]
    fn no_proxy_ips_cidrs_ports_and_star() {
        let p = policy(&[
            ("https_proxy", "http://p:1"),
            ("http_proxy", "http://p:1"),
            (
                "no_proxy",
                "10.0.0.0/8,192.168.1.7,fd00:abcd::/32,[2001:db8::1]:8443,172.16.0.1:80",
            ),
            ("NO_PROXY", "ignored.example"),
        ]);
        for direct in [
            "https://10.1.2.3/",
            "https://192.168.1.7:444/",
            "https://[fd00:abcd:1::5]/",
            "https://[2001:db8::1]:8443/",
            "http://172.16.0.1/",
        ] {
            assert_eq!(via(&p, direct), None, "{direct}");
        }
        for proxied in [
            "https://11.0.0.1/",
            "https://192.168.1.8/",
            "https://[fd00:abce::1]/",
            "https://[2001:db8::1]/",
            "https://172.16.0.1/",
            "https://ignored.example/",
        ] {
            assert_eq!(via(&p, proxied), Some("p:1".into()), "{proxied}");
        }
        let star = policy(&[("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", "*")]);
        assert_eq!(via(&star, "https://anything.example/"), None);
    }

    #[test]
    fn metadata_and_loopback_are_never_proxied() {
        let p = policy(&[
            ("HTTP_PROXY", "http://p:1"),
            ("HTTPS_PROXY", "http://p:1"),
            ("GCE_METADATA_HOST", "gce-meta.test:8080"),
            (
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                "http://imds.test:1234/",
            ),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://[fd00:ec2::99]:80/creds",
            ),
            ("PULLCRED_AZURE_IMDS_ENDPOINT", "http://az-imds.test"),
        ]);
        for direct in [
            "http://169.254.169.254/latest/api/token",
            "http://169.254.170.2/v2/credentials/x",
            "http://169.254.170.23/v1/credentials",
            "http://[fd00:ec2::254]/latest/api/token",
            "http://[fd00:ec2::23]/v1/credentials",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://METADATA.google.internal./computeMetadata/v1/",
            "http://gce-meta.test:8080/computeMetadata/v1/",
            "http://imds.test:1234/latest/api/token",
            "http://[fd00:ec2::99]/creds",
            "http://az-imds.test/metadata/identity/oauth2/token",
            "http://localhost:8080/",
            "http://a.localhost/",
            "https://127.0.0.1:8443/",
            "https://[::1]/",
            "http://[fe80::1]/",
        ] {
            assert_eq!(via(&p, direct), None, "{direct}");
        }
        assert_eq!(
            via(&p, "http://metadata.google.internal.evil/"),
            Some("p:1".into())
        );
        assert_eq!(via(&p, "http://169.255.169.254/"), Some("p:1".into()));
    }

    #[test]
    fn scrub_takes_passwords_out() {
        let p = policy(&[("HTTPS_PROXY", "http://bob:s3cr%2Ft@p:1")]);
        assert_eq!(
            p.scrub("proxy http://bob:s3cr%2Ft@p:1 said s3cr/t"),
            "proxy http://bob:***@p:1 said ***"
        );
        assert!(!p.describe().contains("s3cr"));
    }

    #[test]
    fn urls_parse_to_scheme_host_and_port() {
        let t = Target::parse("HTTPS://User:pw@[FD00::1]:8443/path?q#f").unwrap();
        assert_eq!(
            (t.scheme.as_str(), t.host.as_str(), t.port),
            ("https", "fd00::1", 8443)
        );
        let t = Target::parse("http://h.example?x=1").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("h.example", 80));
        assert!(Target::parse("no-scheme").is_none());
        assert!(Target::parse("https://h:notaport/").is_none());
    }
}
