//! The node's resolver settings: `/etc/resolv.conf` (resolv.conf(5)) and
//! `/etc/hosts` (hosts(5)), read as glibc's stub resolver reads them.
//! Pure functions on text.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

/// glibc's limits and defaults (resolv.conf(5); `MAXNS`, `RES_TIMEOUT`,
/// `RES_DFLRETRY`, `RES_MAXNDOTS`, `RES_MAXRETRANS`, `RES_MAXRETRY`).
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCH: usize = 32;
const DEFAULT_TIMEOUT_SECS: u64 = 5;
const DEFAULT_ATTEMPTS: u32 = 2;
const MAX_NDOTS: u8 = 15;
const MAX_TIMEOUT_SECS: u64 = 30;
const MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    /// Port 53 each; `127.0.0.1` when the file names none (as glibc).
    pub nameservers: Vec<SocketAddr>,
    /// `search` (or `domain`): suffixes tried for relative names.
    pub search: Vec<String>,
    /// A name with at least this many dots is tried as it is first.
    pub ndots: u8,
    /// How long one server is waited for, per attempt.
    pub timeout: Duration,
    /// Rounds over the server list.
    pub attempts: u32,
    /// `options rotate`: start each lookup at a different server.
    pub rotate: bool,
}

impl Default for ResolvConf {
    fn default() -> ResolvConf {
        parse_resolv_conf("")
    }
}

/// Reads resolv.conf text. Unknown lines and options are ignored, as by
/// glibc; the last `search` or `domain` line wins.
pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut conf = ResolvConf {
        nameservers: Vec::new(),
        search: Vec::new(),
        ndots: 1,
        timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
        attempts: DEFAULT_ATTEMPTS,
        rotate: false,
    };
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_ascii_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(server) = words.next().and_then(nameserver)
                    && conf.nameservers.len() < MAX_NAMESERVERS
                {
                    conf.nameservers.push(server);
                }
            }
            Some("domain") => {
                conf.search = words.next().map(domain).into_iter().flatten().collect();
            }
            Some("search") => {
                conf.search = words.filter_map(domain).take(MAX_SEARCH).collect();
            }
            Some("options") => {
                for opt in words {
                    let (key, value) = opt.split_once(':').unwrap_or((opt, ""));
                    let n = value.parse::<u64>().ok();
                    match (key, n) {
                        ("ndots", Some(n)) => conf.ndots = n.min(MAX_NDOTS as u64) as u8,
                        ("timeout", Some(n)) => {
                            conf.timeout = Duration::from_secs(n.clamp(1, MAX_TIMEOUT_SECS))
                        }
                        ("attempts", Some(n)) => {
                            conf.attempts = n.clamp(1, MAX_ATTEMPTS as u64) as u32
                        }
                        ("rotate", _) => conf.rotate = true,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if conf.nameservers.is_empty() {
        conf.nameservers
            .push(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 53));
    }
    conf
}

/// A nameserver's address, port 53. A link-local IPv6 server needs its
/// interface: a numeric scope (`fe80::1%2`) is kept; an interface name
/// (`%eth0`) would need the C library to look up, so that line is skipped.
fn nameserver(word: &str) -> Option<SocketAddr> {
    match word.split_once('%') {
        None => Some(SocketAddr::new(word.parse().ok()?, 53)),
        Some((ip, scope)) => {
            let ip: std::net::Ipv6Addr = ip.parse().ok()?;
            Some(SocketAddrV6::new(ip, 53, 0, scope.parse().ok()?).into())
        }
    }
}

fn domain(word: &str) -> Option<String> {
    let d = word.trim_end_matches('.');
    (!d.is_empty()).then(|| d.to_ascii_lowercase())
}

/// `/etc/hosts`: addresses by name, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hosts {
    entries: Vec<(String, IpAddr)>,
}

/// Reads hosts text: `ADDRESS NAME [ALIAS...]`, `#` comments. Lines whose
/// address does not parse (or is scoped) are skipped, as by glibc.
pub fn parse_hosts(text: &str) -> Hosts {
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_ascii_whitespace();
        let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) else {
            continue;
        };
        for name in words {
            entries.push((name.trim_end_matches('.').to_ascii_lowercase(), ip));
        }
    }
    Hosts { entries }
}

impl Hosts {
    /// Every address listed for `name` (canonical name or alias), without
    /// repeats, in file order.
    pub fn lookup(&self, name: &str) -> Vec<IpAddr> {
        let name = name.trim_end_matches('.');
        let mut out: Vec<IpAddr> = Vec::new();
        for (n, ip) in &self.entries {
            if n.eq_ignore_ascii_case(name) && !out.contains(ip) {
                out.push(*ip);
            }
        }
        out
    }
}

/// The names to ask DNS for, in order (glibc's `res_search`): a name with
/// a final dot only as it is; one with at least `ndots` dots as it is, then
/// with each search suffix; any other with the suffixes first.
pub fn candidates(name: &str, conf: &ResolvConf) -> Vec<String> {
    if let Some(absolute) = name.strip_suffix('.') {
        return vec![absolute.to_string()];
    }
    let dots = name.bytes().filter(|&b| b == b'.').count();
    let searched = conf.search.iter().map(|s| format!("{name}.{s}"));
    let mut out: Vec<String> = Vec::new();
    if dots >= conf.ndots as usize {
        out.push(name.to_string());
        out.extend(searched);
    } else {
        out.extend(searched);
        out.push(name.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_resolv_conf_like_glibc() {
        let c = parse_resolv_conf(
            "# generated\n\
             nameserver 10.0.0.2\n\
             nameserver 2001:db8::53 # comment\n\
             nameserver fe80::1%eth0\n\
             nameserver fe80::2%2\n\
             nameserver not-an-ip\n\
             nameserver 10.0.0.3\n\
             nameserver 10.0.0.4\n\
             domain ignored.example\n\
             search Corp.Example. svc.cluster.local\n\
             options ndots:5 timeout:2 attempts:9 rotate edns0 single-request\n\
             sortlist 130.155.160.0/255.255.240.0\n",
        );
        let ns: Vec<String> = c.nameservers.iter().map(|s| s.to_string()).collect();
        assert_eq!(ns, ["10.0.0.2:53", "[2001:db8::53]:53", "[fe80::2%2]:53"]);
        assert_eq!(c.search, ["corp.example", "svc.cluster.local"]);
        assert_eq!(c.ndots, 5);
        assert_eq!(c.timeout, Duration::from_secs(2));
        assert_eq!(c.attempts, 5);
        assert!(c.rotate);
    }

    #[test]
    fn empty_resolv_conf_means_the_local_server_and_glibc_defaults() {
        let c = parse_resolv_conf("");
        assert_eq!(c.nameservers, vec!["127.0.0.1:53".parse().unwrap()]);
        assert_eq!((c.ndots, c.attempts), (1, 2));
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert!(c.search.is_empty());
        // The last of domain/search wins; out-of-range options are clamped.
        let c = parse_resolv_conf("search a.example\ndomain b.example\noptions ndots:99 timeout:0");
        assert_eq!(c.search, ["b.example"]);
        assert_eq!((c.ndots, c.timeout), (15, Duration::from_secs(1)));
    }

    #[test]
    fn reads_hosts_with_aliases_comments_and_bad_lines() {
        let h = parse_hosts(
            "127.0.0.1\tlocalhost\n\
             ::1 localhost ip6-localhost\n\
             # 10.9.9.9 commented.example\n\
             10.0.0.5 Registry.Example registry # the mirror\n\
             fe80::1%lo scoped.example\n\
             garbage line\n\
             10.0.0.6 registry.example.\n",
        );
        assert_eq!(
            h.lookup("REGISTRY.example"),
            vec![IpAddr::from([10, 0, 0, 5]), IpAddr::from([10, 0, 0, 6])]
        );
        assert_eq!(h.lookup("registry"), vec![IpAddr::from([10, 0, 0, 5])]);
        assert_eq!(h.lookup("localhost").len(), 2);
        assert!(h.lookup("commented.example").is_empty());
        assert!(h.lookup("scoped.example").is_empty());
    }

    #[test]
    fn search_order_follows_ndots() {
        let c = parse_resolv_conf("search a.example b.example\noptions ndots:2");
        assert_eq!(
            candidates("reg", &c),
            ["reg.a.example", "reg.b.example", "reg"]
        );
        assert_eq!(
            candidates("reg.x.io", &c),
            ["reg.x.io", "reg.x.io.a.example", "reg.x.io.b.example"]
        );
        assert_eq!(candidates("reg.x.io.", &c), ["reg.x.io"]);
        assert_eq!(candidates("reg", &parse_resolv_conf("")), ["reg"]);
    }
}
