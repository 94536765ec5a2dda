//! A small blocking HTTPS client for sources that speak plain HTTP APIs.
//!
//! - rustls with ring (the same TLS stack as the AWS SDK's client), roots from
//!   the system store (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured), so private
//!   CAs on nodes work and tests can use a test CA;
//! - every request bounded by the run's [`Deadline`]: connect, resolve and the
//!   whole call;
//! - response bodies read up to [`MAX_BODY`], so a huge answer cannot eat
//!   the node's memory;
//! - errors classified ([`HttpErrorKind`]) so callers can say whether DNS, the
//!   connection, TLS or the deadline failed; messages never include a body;
//! - [`with_retries`] retries 5xx, 429 and connection failures with jittered
//!   exponential backoff inside the deadline;
//! - proxies by [`crate::proxy`]'s one policy, URL by URL ([`Client::new`]),
//!   or never ([`Client::direct`], for metadata servers).
//!
//! No async runtime: a cache hit never gets here, and a miss needs one request
//! at a time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ureq::tls::{Certificate, RootCerts, TlsConfig};

use crate::deadline::Deadline;
use crate::proxy::{self, ProxyUrl};

/// Upstream answers we read are small JSON documents; a megabyte is plenty.
pub const MAX_BODY: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpErrorKind {
    Dns,
    Connect,
    Tls,
    Timeout,
    BodyTooLarge,
    Protocol,
    /// The configured proxy cannot be used (an unsupported scheme).
    Proxy,
}

#[derive(Debug)]
pub struct HttpError {
    pub kind: HttpErrorKind,
    pub detail: String,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            HttpErrorKind::Dns => "DNS lookup failed",
            HttpErrorKind::Connect => "connection failed",
            HttpErrorKind::Tls => "TLS handshake failed",
            HttpErrorKind::Timeout => "timed out",
            HttpErrorKind::BodyTooLarge => "response body too large",
            HttpErrorKind::Protocol => "HTTP error",
            HttpErrorKind::Proxy => "proxy not usable",
        };
        write!(f, "{what}: {}", self.detail)
    }
}

impl std::error::Error for HttpError {}

/// A complete response. `body` is at most [`MAX_BODY`] bytes.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

pub struct Client {
    deadline: Deadline,
    /// Never through a proxy, whatever the environment says.
    direct: bool,
    /// Trust anchors added to the system's (a source's `caFile`).
    extra_roots: Vec<Certificate<'static>>,
    /// One agent per route (direct, or a proxy), built on first use.
    agents: Mutex<Vec<(Option<ProxyUrl>, ureq::Agent)>>,
}

static ROOTS: std::sync::OnceLock<Arc<Vec<Certificate<'static>>>> = std::sync::OnceLock::new();

/// The system's trust anchors, loaded once per run (also for `kube`'s agent).
pub(crate) fn system_roots() -> Arc<Vec<Certificate<'static>>> {
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::debug!("system root certificates: {e}");
            }
            Arc::new(
                found
                    .certs
                    .into_iter()
                    .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                    .collect(),
            )
        })
        .clone()
}

impl Client {
    /// A client that uses a proxy where the environment's policy says so
    /// (see [`crate::proxy`]).
    pub fn new(deadline: &Deadline) -> Client {
        Client {
            deadline: *deadline,
            direct: false,
            extra_roots: Vec::new(),
            agents: Mutex::new(Vec::new()),
        }
    }

    /// Also trusts the certificates of a PEM bundle (an operator's
    /// `caFile`), besides the system's roots. Errors say what is wrong,
    /// never quote the file.
    pub fn with_ca_pem(mut self, pem: &[u8]) -> Result<Client, String> {
        for item in ureq::tls::parse_pem(pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => self.extra_roots.push(c),
                Ok(_) => {}
                Err(_) => return Err("is not a readable PEM bundle".into()),
            }
        }
        if self.extra_roots.is_empty() {
            return Err("holds no PEM certificate (BEGIN CERTIFICATE)".into());
        }
        Ok(self)
    }

    /// A client that never uses a proxy: for instance metadata servers and
    /// credential agents, whose token requests a proxy must not see.
    pub fn direct(deadline: &Deadline) -> Client {
        Client {
            direct: true,
            ..Client::new(deadline)
        }
    }

    /// The agent for `url`'s route, and the proxy it goes through.
    fn agent(&self, url: &str) -> Result<(ureq::Agent, Option<ProxyUrl>), HttpError> {
        let via = if self.direct {
            None
        } else {
            proxy::global()
                .proxy_for(url)
                .map_err(|detail| HttpError {
                    kind: HttpErrorKind::Proxy,
                    detail,
                })?
                .cloned()
        };
        let mut agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, a)) = agents.iter().find(|(p, _)| *p == via) {
            return Ok((a.clone(), via));
        }
        let remaining = self.timeout();
        let roots = if self.extra_roots.is_empty() {
            system_roots()
        } else {
            let mut all = (*system_roots()).clone();
            all.extend(self.extra_roots.iter().cloned());
            Arc::new(all)
        };
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::Specific(roots))
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build();
        let ureq_proxy = match &via {
            None => None,
            Some(p) => {
                Some(
                    ureq::Proxy::new(&p.url_with_credentials()).map_err(|_| HttpError {
                        kind: HttpErrorKind::Proxy,
                        detail: format!("{} ({}) is not a usable proxy URL", p, p.var),
                    })?,
                )
            }
        };
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
            // Set always: ureq would otherwise read the proxy variables
            // itself, by rules of its own.
            .proxy(ureq_proxy)
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(remaining))
            .timeout_resolve(Some(remaining.min(Duration::from_secs(5))))
            .timeout_connect(Some(remaining.min(Duration::from_secs(5))))
            .user_agent(concat!("pullcred/", env!("CARGO_PKG_VERSION")))
            .build();
        let agent = crate::resolve::ureq_agent(config);
        agents.push((via.clone(), agent.clone()));
        Ok((agent, via))
    }

    /// Runs one request on `url`'s route; a failure through a proxy says so.
    fn call(
        &self,
        url: &str,
        send: impl FnOnce(&ureq::Agent) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Response, HttpError> {
        let (agent, via) = self.agent(url)?;
        if let Some(p) = &via {
            tracing::debug!(proxy = %p, "through the proxy from {}", p.var);
        }
        finish(send(&agent)).map_err(|mut e| {
            if let Some(p) = via {
                e.detail = format!(
                    "{} (through proxy {} from {})",
                    e.detail,
                    p.authority(),
                    p.var
                );
            }
            e
        })
    }

    pub fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Response, HttpError> {
        self.call(url, |a| self.prepare(a.get(url), headers).call())
    }

    pub fn head(&self, url: &str, headers: &[(&str, &str)]) -> Result<Response, HttpError> {
        self.call(url, |a| self.prepare(a.head(url), headers).call())
    }

    pub fn post_form(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        form: &[(&str, &str)],
    ) -> Result<Response, HttpError> {
        self.call(url, |a| {
            self.prepare(a.post(url), headers)
                .send_form(form.iter().copied())
        })
    }

    pub fn post_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, HttpError> {
        self.call(url, |a| {
            self.prepare(a.post(url), headers)
                .header("Content-Type", "application/json")
                .send(body)
        })
    }

    /// A PUT with an empty body (the IMDSv2 session-token handshake).
    pub fn put(&self, url: &str, headers: &[(&str, &str)]) -> Result<Response, HttpError> {
        self.call(url, |a| self.prepare(a.put(url), headers).send_empty())
    }

    /// Bounds the request by what is left of the deadline and adds `headers`.
    fn prepare<B>(
        &self,
        req: ureq::RequestBuilder<B>,
        headers: &[(&str, &str)],
    ) -> ureq::RequestBuilder<B> {
        let mut req = req.config().timeout_global(Some(self.timeout())).build();
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req
    }

    fn timeout(&self) -> Duration {
        self.deadline.remaining().max(Duration::from_millis(1))
    }
}

fn finish(
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Response, HttpError> {
    let mut resp = result.map_err(classify)?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(classify)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn classify(e: ureq::Error) -> HttpError {
    use HttpErrorKind::*;
    let kind = match &e {
        ureq::Error::HostNotFound => Dns,
        ureq::Error::ConnectionFailed | ureq::Error::ConnectProxyFailed(_) => Connect,
        ureq::Error::Timeout(_) => Timeout,
        ureq::Error::BodyExceedsLimit(_) => BodyTooLarge,
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => Tls,
        // Our own resolver's failures (crate::resolve), carried in an io::Error.
        ureq::Error::Io(io)
            if io
                .get_ref()
                .is_some_and(|i| i.is::<crate::resolve::ResolveError>()) =>
        {
            Dns
        }
        // rustls reports handshake failures (a bad certificate, a peer that
        // does not speak TLS) as an io::Error wrapping a rustls::Error.
        ureq::Error::Io(io) if io.get_ref().is_some_and(|i| i.is::<rustls::Error>()) => Tls,
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::NotConnected => Connect,
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Timeout,
            _ if io.to_string().contains("certificate") => Tls,
            // std's getaddrinfo failure ("failed to lookup address information: ...")
            _ if io.to_string().contains("failed to lookup address") => Dns,
            _ => Protocol,
        },
        _ => Protocol,
    };
    HttpError {
        kind,
        detail: proxy::scrub(&e.to_string().replace(['\n', '\r'], " ")),
    }
}

/// One line about a failed HTTP call, naming the deadline on a timeout.
pub fn describe_error(e: &HttpError, deadline: &crate::deadline::Deadline) -> String {
    if e.kind == HttpErrorKind::Timeout {
        deadline.timed_out()
    } else {
        e.to_string()
    }
}

/// `HTTP 400: invalid_grant: Invalid JWT Signature.`: the status and the
/// error fields of an OAuth answer (`error`, first line of
/// `error_description`), a Google API error (`error.status`,
/// `error.message`) or a registry's error list (`errors[].code`, `message`);
/// never the raw body.
pub fn status_detail(resp: &Response) -> String {
    let mut out = format!("HTTP {}", resp.status);
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&resp.body) else {
        return out;
    };
    let text = |x: Option<&serde_json::Value>| x.and_then(|x| x.as_str()).map(str::to_string);
    let mut parts: Vec<String> = Vec::new();
    match v.get("error") {
        Some(serde_json::Value::String(code)) => {
            parts.push(code.clone());
            if let Some(d) = text(v.get("error_description")) {
                parts.push(d.lines().next().unwrap_or("").to_string());
            }
        }
        Some(obj @ serde_json::Value::Object(_)) => {
            parts.extend(text(obj.get("status")));
            parts.extend(text(obj.get("message")));
        }
        _ => {}
    }
    if let Some(errs) = v.get("errors").and_then(|e| e.as_array()) {
        for e in errs.iter().take(2) {
            let f = |k: &str| text(e.get(k)).unwrap_or_default();
            parts.push(format!("{}: {}", f("code"), f("message")));
        }
    }
    for p in parts.iter().filter(|p| !p.trim().is_empty()) {
        out.push_str(": ");
        let p: String = p.chars().take(300).collect();
        out.push_str(&p.replace(['\n', '\r'], " "));
    }
    out
}

/// Is this worth another attempt? 5xx, 429, and failures to connect.
pub fn retryable(r: &Result<Response, HttpError>) -> bool {
    match r {
        Ok(resp) => resp.status == 429 || resp.status >= 500,
        Err(e) => matches!(
            e.kind,
            HttpErrorKind::Connect | HttpErrorKind::Dns | HttpErrorKind::Protocol
        ),
    }
}

/// Calls `attempt` until it gives a non-retryable answer, `max_attempts` are
/// spent, or the next backoff would pass the deadline. Backoff: full jitter
/// over 100ms·2ⁿ, capped at 4s; a `Retry-After` in seconds is honoured when it fits.
pub fn with_retries(
    deadline: &Deadline,
    max_attempts: u32,
    mut attempt: impl FnMut() -> Result<Response, HttpError>,
) -> Result<Response, HttpError> {
    retry_each(deadline, max_attempts, None, |_| attempt())
}

/// The one retry loop. With `per_attempt`, each attempt gets its own
/// deadline of at most that long inside `deadline`, and an attempt that
/// times out is tried again (a metadata server that stalls once).
pub fn retry_each(
    deadline: &Deadline,
    max_attempts: u32,
    per_attempt: Option<Duration>,
    mut attempt: impl FnMut(&Deadline) -> Result<Response, HttpError>,
) -> Result<Response, HttpError> {
    let mut n = 0;
    loop {
        let r = match per_attempt {
            Some(per) => attempt(&Deadline::after(deadline.remaining().min(per))),
            None => attempt(deadline),
        };
        n += 1;
        let timed_out =
            per_attempt.is_some() && matches!(&r, Err(e) if e.kind == HttpErrorKind::Timeout);
        if n >= max_attempts || !(timed_out || retryable(&r)) {
            return r;
        }
        let ceiling =
            Duration::from_millis(100u64.saturating_mul(1 << n.min(6))).min(Duration::from_secs(4));
        let mut pause = ceiling.mul_f64(jitter());
        if let Ok(resp) = &r
            && let Some(secs) = resp
                .header("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
        {
            pause = Duration::from_secs(secs);
        }
        if pause + Duration::from_millis(200) >= deadline.remaining() {
            return r;
        }
        tracing::debug!(attempt = n, pause_ms = pause.as_millis() as u64, "retrying");
        std::thread::sleep(pause);
    }
}

/// A number in [0.5, 1.0) from the std hasher's random keys: enough to spread
/// retries of many nodes apart, without a random-number crate.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    0.5 + (h.finish() % 1000) as f64 / 2000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn tls_and_dns_errors_inside_io_are_named() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        assert_eq!(classify(ureq::Error::Io(io)).kind, HttpErrorKind::Tls);
        let dns = std::io::Error::other(
            "failed to lookup address information: Name or service not known",
        );
        assert_eq!(classify(ureq::Error::Io(dns)).kind, HttpErrorKind::Dns);
        let plain = std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk");
        assert_eq!(
            classify(ureq::Error::Io(plain)).kind,
            HttpErrorKind::Protocol
        );
    }

    /// A one-shot HTTP server on 127.0.0.1 answering `responses` in turn.
    fn serve(responses: Vec<&'static str>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for r in responses {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(r.as_bytes());
            }
        });
        format!("http://{addr}/")
    }

    #[test]
    fn reads_status_headers_and_body() {
        let url = serve(vec![
            "HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        ]);
        let c = Client::new(&Deadline::after(Duration::from_secs(5)));
        let r = c.get(&url, &[]).unwrap();
        assert_eq!(
            (r.status, r.header("x-a"), r.body.as_slice()),
            (200, Some("b"), &b"ok"[..])
        );
    }

    #[test]
    fn retries_5xx_then_succeeds() {
        let url = serve(vec![
            "HTTP/1.1 503 No\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ]);
        let d = Deadline::after(Duration::from_secs(5));
        let c = Client::new(&d);
        let r = with_retries(&d, 3, || c.get(&url, &[])).unwrap();
        assert_eq!(r.status, 200);
    }

    #[test]
    fn refused_connection_is_classified() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::new(&Deadline::after(Duration::from_secs(2)));
        let e = c
            .get(&format!("http://127.0.0.1:{port}/"), &[])
            .unwrap_err();
        assert_eq!(e.kind, HttpErrorKind::Connect, "{e}");
    }

    #[test]
    fn huge_body_is_refused() {
        let big: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                MAX_BODY + 10,
                "x".repeat(MAX_BODY as usize + 10)
            )
            .into_boxed_str(),
        );
        let url = serve(vec![big]);
        let c = Client::new(&Deadline::after(Duration::from_secs(5)));
        let e = c.get(&url, &[]).unwrap_err();
        assert_eq!(e.kind, HttpErrorKind::BodyTooLarge, "{e}");
    }

    #[test]
    fn hang_ends_at_the_deadline() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        std::thread::spawn(move || {
            let (_s, _) = l.accept().unwrap();
            std::thread::sleep(Duration::from_secs(5));
        });
        let t = std::time::Instant::now();
        let c = Client::new(&Deadline::after(Duration::from_millis(500)));
        let e = c.get(&url, &[]).unwrap_err();
        assert_eq!(e.kind, HttpErrorKind::Timeout, "{e}");
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
