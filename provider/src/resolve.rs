//! Host names to addresses, without the C library.
//!
//! Every name pullcred connects to (registries, token services, a proxy, the
//! kubeconfig's API server) is resolved here, in the ordinary build and the
//! static one alike, never by `getaddrinfo`. A statically linked glibc can
//! only run `getaddrinfo` by loading NSS modules (`libnss_dns.so`, ...) of the
//! exact glibc version it was linked with, at run time, from the node's disk:
//! a static binary that called it would not be static. So pullcred is its own
//! stub resolver, in the order of glibc's default `hosts: files dns`:
//!
//! 1. an IP literal is itself;
//! 2. `/etc/hosts` (hosts(5)): every address listed for the name;
//! 3. `localhost` and names under `.localhost` are loopback and never sent
//!    to DNS (RFC 6761 §6.3);
//! 4. DNS (RFC 1035): A and AAAA (RFC 3596) queries together over UDP to the
//!    `nameserver`s of `/etc/resolv.conf`, `options timeout:`/`attempts:`
//!    rounds, `rotate`, the `search` list under `ndots` as glibc's
//!    `res_search`; a truncated answer is asked again over TCP (RFC 1035
//!    §4.2.2, RFC 7766); query IDs are random and an answer must match
//!    its query's ID, question and server, or it is ignored (RFC 5452 §9.1);
//!    CNAME chains are followed (RFC 1034 §3.6.2).
//!
//! Everything waits inside the caller's [`Deadline`]. Not supported, as for
//! most stub resolvers outside glibc: `sortlist`, `RES_OPTIONS` and
//! `LOCALDOMAIN`, DNSSEC validation, mDNS, and NSS sources other than files
//! and DNS (LDAP, systemd-resolved's `resolve` module: a node running
//! systemd-resolved lists its stub, 127.0.0.53, in resolv.conf).
//!
//! Layout: [`conf`] reads the two files, [`wire`] the DNS messages (both
//! pure); this file does the sockets and adapts to ureq and the AWS SDK.

pub mod conf;
pub mod wire;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use crate::deadline::Deadline;
use conf::{Hosts, ResolvConf};
use wire::{Answer, TYPE_A, TYPE_AAAA, WireError};

pub const RESOLV_CONF: &str = "/etc/resolv.conf";
pub const HOSTS: &str = "/etc/hosts";

/// The two files are small; anything longer is cut here.
const MAX_FILE: u64 = 256 * 1024;
/// CNAME targets asked for again when an answer stops short of an address.
const MAX_REQUERIES: usize = 8;

/// Why a name has no address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not in /etc/hosts, and DNS says no such name (or no address).
    NotFound,
    /// No DNS server gave an answer (unreachable, timed out, failing).
    Unavailable,
    /// The deadline passed first.
    Timeout,
    /// Not something DNS can carry.
    BadName,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveError {
    pub name: String,
    pub kind: ErrorKind,
    pub detail: String,
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot resolve {:?}: {}", self.name, self.detail)
    }
}

impl std::error::Error for ResolveError {}

/// The node's settings, read once per run.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    pub conf: ResolvConf,
    pub hosts: Hosts,
}

static SYSTEM: OnceLock<Resolver> = OnceLock::new();

/// The resolver of `/etc/resolv.conf` and `/etc/hosts`, read on first use.
/// A missing file is an empty one (as for glibc: `127.0.0.1` is then the
/// nameserver).
pub fn system() -> &'static Resolver {
    SYSTEM.get_or_init(|| Resolver {
        conf: conf::parse_resolv_conf(&read_small(Path::new(RESOLV_CONF))),
        hosts: conf::parse_hosts(&read_small(Path::new(HOSTS))),
    })
}

fn read_small(path: &Path) -> String {
    let mut text = Vec::new();
    match std::fs::File::open(path) {
        Ok(f) => {
            if let Err(e) = f.take(MAX_FILE).read_to_end(&mut text) {
                tracing::debug!("{}: {e}", path.display());
            }
        }
        Err(e) => tracing::debug!("{}: {e}", path.display()),
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// What asking DNS about one name gave.
enum Asked {
    Found(Vec<IpAddr>),
    /// NXDOMAIN, or no address of either type.
    Nothing,
    /// No server answered either query; the last failure.
    Failed(String),
    /// An answer ended in a CNAME without an address: ask for this name.
    Alias(String),
}

impl Resolver {
    /// The addresses of `host` (a name or an IP literal, `[v6]` brackets
    /// allowed), IPv4 first, never empty on success.
    pub fn lookup(&self, host: &str, deadline: &Deadline) -> Result<Vec<IpAddr>, ResolveError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let err = |kind, detail: String| ResolveError {
            name: host.to_string(),
            kind,
            detail,
        };
        let found = self.hosts.lookup(host);
        if !found.is_empty() {
            return Ok(found);
        }
        let lower = host.trim_end_matches('.').to_ascii_lowercase();
        if lower == "localhost" || lower.ends_with(".localhost") {
            return Ok(vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]);
        }
        if let Err(e) = wire::encode_query(0, host, TYPE_A) {
            return Err(err(ErrorKind::BadName, format!("the name {}", e.0)));
        }
        let mut failure = None;
        for candidate in conf::candidates(host, &self.conf) {
            let mut name = candidate;
            for _ in 0..=MAX_REQUERIES {
                match self.ask(&name, deadline) {
                    Asked::Found(addrs) => return Ok(addrs),
                    Asked::Alias(next) => name = next,
                    Asked::Nothing => break,
                    Asked::Failed(why) => {
                        if deadline.remaining().is_zero() {
                            return Err(err(
                                ErrorKind::Timeout,
                                format!("the deadline passed waiting for DNS ({why})"),
                            ));
                        }
                        failure = Some(why);
                        break;
                    }
                }
            }
        }
        Err(match failure {
            Some(why) => err(ErrorKind::Unavailable, format!("no DNS answer: {why}")),
            None => err(
                ErrorKind::NotFound,
                format!("no such host (not in {HOSTS}; DNS has no address for it)"),
            ),
        })
    }

    /// A and AAAA for exactly `name`, server by server, round by round.
    fn ask(&self, name: &str, deadline: &Deadline) -> Asked {
        let mut queries = [Query::new(name, TYPE_A), Query::new(name, TYPE_AAAA)];
        let servers = &self.conf.nameservers;
        let first = if self.conf.rotate {
            random_u16() as usize % servers.len().max(1)
        } else {
            0
        };
        let mut last = String::from("no nameserver");
        'rounds: for _ in 0..self.conf.attempts {
            for i in 0..servers.len() {
                let server = servers[(first + i) % servers.len()];
                let wait = self.conf.timeout.min(deadline.remaining());
                if wait.is_zero() {
                    last = format!("{server}: timed out");
                    break 'rounds;
                }
                if let Err(why) = exchange(server, &mut queries, wait, deadline) {
                    last = format!("{server}: {why}");
                }
                if queries.iter().all(|q| q.answer.is_some()) {
                    break 'rounds;
                }
            }
        }
        let answered: Vec<&Answer> = queries.iter().filter_map(|q| q.answer.as_ref()).collect();
        if answered.is_empty() {
            return Asked::Failed(last);
        }
        let mut addrs = Vec::new();
        let mut alias = None;
        for q in &queries {
            let Some(a) = &q.answer else { continue };
            let (found, end) = wire::addresses(&a.records, name, q.qtype);
            if found.is_empty() && a.rcode == wire::RCODE_NOERROR && !wire::same_name(&end, name) {
                alias = Some(end);
            }
            addrs.extend(found);
        }
        match (addrs.is_empty(), alias) {
            (false, _) => Asked::Found(addrs),
            (true, Some(next)) => Asked::Alias(next),
            (true, None) => Asked::Nothing,
        }
    }
}

/// One question and, once a server has given a usable one, its answer
/// (NOERROR or NXDOMAIN; SERVFAIL, REFUSED and the rest mean: next server).
struct Query {
    qtype: u16,
    name: String,
    id: u16,
    answer: Option<Answer>,
}

impl Query {
    fn new(name: &str, qtype: u16) -> Query {
        Query {
            qtype,
            name: name.to_string(),
            id: 0,
            answer: None,
        }
    }

    /// A new random ID and its message.
    fn message(&mut self) -> Vec<u8> {
        self.id = random_u16();
        // The name was checked by `lookup`; a search suffix or a CNAME
        // target that makes it too long is a failed query.
        wire::encode_query(self.id, &self.name, self.qtype).unwrap_or_default()
    }

    fn usable(a: &Answer) -> bool {
        matches!(a.rcode, wire::RCODE_NOERROR | wire::RCODE_NXDOMAIN)
    }
}

/// Sends the unanswered queries to `server` over UDP on one connected
/// socket (only that server's datagrams are received) and waits up to
/// `wait` for their answers; a truncated one is asked again over TCP.
fn exchange(
    server: SocketAddr,
    queries: &mut [Query],
    wait: Duration,
    deadline: &Deadline,
) -> Result<(), String> {
    let until = Deadline::after(wait);
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).map_err(|e| e.to_string())?;
    sock.connect(server).map_err(|e| e.to_string())?;
    let mut pending = 0;
    for q in queries.iter_mut().filter(|q| q.answer.is_none()) {
        let msg = q.message();
        if msg.is_empty() {
            return Err("the name is too long for DNS".into());
        }
        sock.send(&msg).map_err(|e| e.to_string())?;
        pending += 1;
    }
    let mut failure = None;
    let mut buf = vec![0u8; 65535];
    while pending > 0 {
        let left = until.remaining();
        if left.is_zero() {
            return Err(failure.unwrap_or_else(|| "timed out".into()));
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            // ICMP port unreachable and the like: this server is down.
            Err(e) => return Err(e.to_string()),
        };
        for q in queries
            .iter_mut()
            .filter(|q| q.answer.is_none() && q.id != 0)
        {
            let a = match wire::decode_answer(&buf[..n], q.id, &q.name, q.qtype) {
                Ok(a) => a,
                Err(WireError::NotOurs) => continue,
                Err(WireError::Malformed(why)) => {
                    failure = Some(format!("malformed answer: {why}"));
                    q.id = 0;
                    pending -= 1;
                    break;
                }
            };
            let a = if a.truncated {
                tcp(server, q, deadline)
            } else {
                Ok(a)
            };
            q.id = 0;
            pending -= 1;
            match a {
                Ok(a) if Query::usable(&a) => q.answer = Some(a),
                Ok(a) => failure = Some(format!("answered RCODE {}", a.rcode)),
                Err(why) => failure = Some(why),
            }
            break;
        }
    }
    match failure {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

/// The query again over TCP, for an answer too large for a datagram.
fn tcp(server: SocketAddr, q: &mut Query, deadline: &Deadline) -> Result<Answer, String> {
    let over_tcp = |e: std::io::Error| format!("over TCP: {e}");
    let left = || {
        let l = deadline.remaining();
        (!l.is_zero())
            .then_some(l)
            .ok_or("over TCP: timed out".to_string())
    };
    let mut s = TcpStream::connect_timeout(&server, left()?).map_err(over_tcp)?;
    s.set_write_timeout(Some(left()?)).map_err(over_tcp)?;
    let msg = q.message();
    s.write_all(&wire::tcp_frame(&msg)).map_err(over_tcp)?;
    let mut len = [0u8; 2];
    s.set_read_timeout(Some(left()?)).map_err(over_tcp)?;
    s.read_exact(&mut len).map_err(over_tcp)?;
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    s.set_read_timeout(Some(left()?)).map_err(over_tcp)?;
    s.read_exact(&mut body).map_err(over_tcp)?;
    match wire::decode_answer(&body, q.id, &q.name, q.qtype) {
        Ok(a) => Ok(a),
        Err(WireError::NotOurs) => Err("over TCP: the answer is not for our query".into()),
        Err(WireError::Malformed(why)) => Err(format!("over TCP: malformed answer: {why}")),
    }
}

/// A query ID no off-path sender can guess (RFC 5452 §4.3): SipHash under
/// the process's random std hasher keys (from getrandom), over a counter.
fn random_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = KEYS.get_or_init(Default::default).build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    loop {
        let v = h.finish() as u16;
        // 0 marks "no query outstanding" in `Query`.
        if v != 0 {
            return v;
        }
        h.write_u8(0);
    }
}

/// ureq's resolver: a URL's host through [`system`], its port from the URL
/// or the scheme. Build agents with [`ureq_agent`].
#[cfg(feature = "http")]
#[derive(Debug, Clone, Copy, Default)]
pub struct UreqResolver;

#[cfg(feature = "http")]
impl ureq::unversioned::resolver::Resolver for UreqResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let bad = |w: &str| ureq::Error::BadUri(format!("{uri}: {w}"));
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let port = match (authority.port_u16(), uri.scheme_str()) {
            (Some(p), _) => p,
            (None, Some("https")) => 443,
            (None, Some("http")) => 80,
            (None, Some(s)) if s.starts_with("socks") => 1080,
            _ => return Err(bad("no port")),
        };
        let budget = if timeout.after.is_not_happening() {
            crate::deadline::DEFAULT
        } else {
            *timeout.after
        };
        let ips = system()
            .lookup(authority.host(), &Deadline::after(budget))
            .map_err(|e| match e.kind {
                ErrorKind::Timeout => ureq::Error::Timeout(timeout.reason),
                _ => ureq::Error::Io(std::io::Error::new(std::io::ErrorKind::NotFound, e)),
            })?;
        // ResolvedSocketAddrs holds 16 (ureq's MAX_ADDRS).
        let mut out = self.empty();
        let family = config.ip_family();
        let wanted = family.keep_wanted(ips.into_iter().map(|ip| SocketAddr::new(ip, port)));
        for addr in wanted.take(16) {
            out.push(addr);
        }
        if out.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}

/// A ureq agent with `config` whose names go through [`UreqResolver`].
#[cfg(feature = "http")]
pub fn ureq_agent(config: ureq::config::Config) -> ureq::Agent {
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::new(),
        UreqResolver,
    )
}

/// The AWS SDK's resolver (`aws_smithy_http_client`'s `build_with_resolver`):
/// the lookup runs on the runtime's blocking pool, inside the run's deadline.
#[cfg(feature = "aws")]
#[derive(Debug, Clone, Copy)]
pub struct SdkResolver {
    pub deadline: Deadline,
}

#[cfg(feature = "aws")]
impl aws_smithy_runtime_api::client::dns::ResolveDns for SdkResolver {
    fn resolve_dns<'a>(
        &'a self,
        name: &'a str,
    ) -> aws_smithy_runtime_api::client::dns::DnsFuture<'a> {
        use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDnsError};
        let name = name.to_string();
        let deadline = self.deadline;
        DnsFuture::new(async move {
            tokio::task::spawn_blocking(move || system().lookup(&name, &deadline))
                .await
                .map_err(ResolveDnsError::new)?
                .map_err(ResolveDnsError::new)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::wire::tests::reply;
    use super::*;
    use std::sync::mpsc;

    /// A DNS server on 127.0.0.1 that answers each query with what
    /// `answer(query, name, qtype)` returns (none: silence).
    fn server(
        answer: impl Fn(&[u8], &str, u16) -> Vec<Vec<u8>> + Send + 'static,
    ) -> (SocketAddr, mpsc::Receiver<(String, u16)>) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let q = &buf[..n];
                let (name, end) = wire_name(q);
                let qtype = u16::from_be_bytes([q[end], q[end + 1]]);
                let _ = tx.send((name.clone(), qtype));
                for out in answer(q, &name, qtype) {
                    let _ = sock.send_to(&out, from);
                }
            }
        });
        (addr, rx)
    }

    fn wire_name(q: &[u8]) -> (String, usize) {
        let mut pos = 12;
        let mut labels = Vec::new();
        while q[pos] != 0 {
            let l = q[pos] as usize;
            labels.push(String::from_utf8_lossy(&q[pos + 1..pos + 1 + l]).to_string());
            pos += 1 + l;
        }
        (labels.join("."), pos + 1)
    }

    fn id(q: &[u8]) -> u16 {
        u16::from_be_bytes([q[0], q[1]])
    }

    fn a_record(ip: [u8; 4]) -> Vec<u8> {
        let mut r = vec![0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4];
        r.extend_from_slice(&ip);
        r
    }

    fn resolver(servers: &[SocketAddr], extra: &str) -> Resolver {
        let mut conf = conf::parse_resolv_conf(extra);
        conf.nameservers = servers.to_vec();
        conf.timeout = Duration::from_millis(300);
        Resolver {
            conf,
            hosts: conf::parse_hosts("10.1.1.1 pinned.example\n"),
        }
    }

    fn soon() -> Deadline {
        Deadline::after(Duration::from_secs(5))
    }

    #[test]
    fn literals_hosts_and_localhost_need_no_dns() {
        let r = resolver(&[], "");
        let d = soon();
        assert_eq!(
            r.lookup("10.2.3.4", &d).unwrap(),
            vec![IpAddr::from([10, 2, 3, 4])]
        );
        assert_eq!(
            r.lookup("[::1]", &d).unwrap(),
            vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]
        );
        assert_eq!(
            r.lookup("PINNED.example.", &d).unwrap(),
            vec![IpAddr::from([10, 1, 1, 1])]
        );
        let lo = r.lookup("localhost", &d).unwrap();
        assert!(lo.iter().all(IpAddr::is_loopback), "{lo:?}");
        assert!(r.lookup("api.localhost", &d).unwrap()[0].is_loopback());
        assert_eq!(r.lookup("a..b", &d).unwrap_err().kind, ErrorKind::BadName);
    }

    #[test]
    fn asks_a_and_aaaa_and_ignores_mismatched_answers() {
        let (ns, asked) = server(|q, name, qtype| {
            let mut wrong_id = reply(id(q) ^ 1, 0x8180, name, qtype, &[a_record([6, 6, 6, 6])]);
            if qtype == TYPE_AAAA {
                wrong_id = reply(id(q) ^ 1, 0x8180, name, qtype, &[]);
                return vec![wrong_id, reply(id(q), 0x8180, name, qtype, &[])];
            }
            let wrong_name = reply(
                id(q),
                0x8180,
                "evil.example",
                qtype,
                &[a_record([6, 6, 6, 6])],
            );
            vec![
                wrong_id,
                wrong_name,
                reply(id(q), 0x8180, name, qtype, &[a_record([192, 0, 2, 1])]),
            ]
        });
        let r = resolver(&[ns], "");
        assert_eq!(
            r.lookup("reg.example", &soon()).unwrap(),
            vec![IpAddr::from([192, 0, 2, 1])]
        );
        let mut types: Vec<u16> = asked.try_iter().map(|(_, t)| t).collect();
        types.sort();
        assert_eq!(types, [TYPE_A, TYPE_AAAA]);
    }

    #[test]
    fn search_list_nxdomain_and_not_found() {
        let (ns, asked) = server(|q, name, qtype| {
            let hit = name == "reg.corp.example" && qtype == TYPE_A;
            let flags = if hit || name == "reg.corp.example" {
                0x8180
            } else {
                0x8183
            };
            let recs = if hit {
                vec![a_record([10, 9, 9, 9])]
            } else {
                vec![]
            };
            vec![reply(id(q), flags, name, qtype, &recs)]
        });
        let r = resolver(&[ns], "search other.example corp.example\n");
        assert_eq!(
            r.lookup("reg", &soon()).unwrap(),
            vec![IpAddr::from([10, 9, 9, 9])]
        );
        let names: Vec<String> = asked.try_iter().map(|(n, _)| n).collect();
        assert!(
            names.contains(&"reg.other.example".to_string()),
            "{names:?}"
        );
        assert!(!names.contains(&"reg".to_string()), "{names:?}");
        let e = r.lookup("missing.example.", &soon()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    }

    #[test]
    fn a_cname_without_its_address_is_asked_again() {
        let (ns, _) = server(|q, name, qtype| {
            let recs = match (name, qtype) {
                ("reg.example", _) => {
                    let mut r = vec![0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 10];
                    r.extend_from_slice(b"\x04edge\x03cdn\x00");
                    vec![r]
                }
                ("edge.cdn", TYPE_A) => vec![a_record([198, 51, 100, 4])],
                _ => vec![],
            };
            vec![reply(id(q), 0x8180, name, qtype, &recs)]
        });
        let r = resolver(&[ns], "");
        assert_eq!(
            r.lookup("reg.example", &soon()).unwrap(),
            vec![IpAddr::from([198, 51, 100, 4])]
        );
    }

    #[test]
    fn a_truncated_answer_is_asked_again_over_tcp() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let udp = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = udp.recv_from(&mut buf) {
                let q = &buf[..n];
                let (name, end) = wire_name(q);
                let qtype = u16::from_be_bytes([q[end], q[end + 1]]);
                let _ = udp.send_to(&reply(id(q), 0x8380, &name, qtype, &[]), from);
            }
        });
        std::thread::spawn(move || {
            for s in tcp.incoming() {
                let mut s = s.unwrap();
                let mut len = [0u8; 2];
                s.read_exact(&mut len).unwrap();
                let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                s.read_exact(&mut q).unwrap();
                let (name, end) = wire_name(&q);
                let qtype = u16::from_be_bytes([q[end], q[end + 1]]);
                let recs: Vec<Vec<u8>> = if qtype == TYPE_A {
                    (1..=40).map(|i| a_record([10, 0, 0, i])).collect()
                } else {
                    vec![]
                };
                let out = reply(id(&q), 0x8180, &name, qtype, &recs);
                s.write_all(&wire::tcp_frame(&out)).unwrap();
            }
        });
        let r = resolver(&[SocketAddr::from(([127, 0, 0, 1], port))], "");
        assert_eq!(r.lookup("big.example", &soon()).unwrap().len(), 40);
    }

    #[test]
    fn a_silent_server_is_skipped_and_a_dead_one_is_unavailable() {
        let (silent, _) = server(|_, _, _| vec![]);
        let (good, _) = server(|q, name, qtype| {
            let recs = if qtype == TYPE_A {
                vec![a_record([10, 0, 0, 1])]
            } else {
                vec![]
            };
            vec![reply(id(q), 0x8180, name, qtype, &recs)]
        });
        let r = resolver(&[silent, good], "");
        assert_eq!(
            r.lookup("x.example", &soon()).unwrap(),
            vec![IpAddr::from([10, 0, 0, 1])]
        );
        // SERVFAIL everywhere: unavailable, not "no such host".
        let (failing, _) = server(|q, name, qtype| vec![reply(id(q), 0x8182, name, qtype, &[])]);
        let e = resolver(&[failing], "")
            .lookup("x.example", &soon())
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
        assert!(e.to_string().contains("RCODE 2"), "{e}");
    }

    #[test]
    fn the_deadline_bounds_a_silent_server() {
        let (silent, _) = server(|_, _, _| vec![]);
        let mut r = resolver(&[silent], "");
        r.conf.timeout = Duration::from_secs(5);
        let t = std::time::Instant::now();
        let e = r
            .lookup("x.example", &Deadline::after(Duration::from_millis(300)))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn ids_vary() {
        let ids: std::collections::HashSet<u16> = (0..64).map(|_| random_u16()).collect();
        assert!(ids.len() > 50);
        assert!(!ids.contains(&0));
    }
}
