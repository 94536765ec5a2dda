//! Restarting the kubelet from the installer's container, and waiting for it.
//!
//! The installer image holds one static binary and no shell, so it runs the
//! host's own tools: a child of this process (`pullcred install
//! --chroot-exec ROOT -- CMD...`) changes its root to the host's, then
//! execs the host's `nsenter --target 1 --mount --uts --ipc --net --pid --
//! systemctl ...`, which joins PID 1's namespaces (the DaemonSet has
//! `hostPID: true` and is privileged). `systemctl` inside a plain chroot
//! refuses to act ("Running in chroot, ignoring command"), hence nsenter.
//! Each command has its own timeout; the child is killed past it.
//!
//! The kubelet is then asked for `/healthz` on loopback plain HTTP (its
//! `healthzBindAddress`/`healthzPort` defaults, 127.0.0.1:10248; k3s and
//! RKE2 keep them): nothing secret crosses it.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The PATH the host's tools are looked up with.
pub const HOST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// nsenter into PID 1's namespaces, then `args`.
pub fn in_init(args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "nsenter", "--target", "1", "--mount", "--uts", "--ipc", "--net", "--pid", "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

/// The child's side: chroot to `root` (unless it is `/`), then exec `argv`
/// with a clean environment. Returns only on failure.
pub fn chroot_exec(root: &Path, argv: &[String]) -> String {
    use std::os::unix::process::CommandExt;
    let Some((cmd, args)) = argv.split_first() else {
        return "--chroot-exec: no command".into();
    };
    if root != Path::new("/") {
        if let Err(e) = std::os::unix::fs::chroot(root) {
            return format!("chroot {}: {e}", root.display());
        }
        if let Err(e) = std::env::set_current_dir("/") {
            return format!("chdir / in {}: {e}", root.display());
        }
    }
    let e = Command::new(cmd)
        .args(args)
        .env_clear()
        .env("PATH", HOST_PATH)
        .env("LANG", "C")
        .exec();
    format!("{cmd}: {e}")
}

/// Runs `argv` in the host root through a child of this binary; `Err` with
/// the command, its exit status and the last line of its stderr.
pub fn run_on_host(root: &Path, argv: &[String], timeout: Duration) -> Result<(), String> {
    let me = std::env::current_exe().map_err(|e| format!("finding this executable: {e}"))?;
    let shown = argv.join(" ");
    let mut child = Command::new(me)
        .arg("install")
        .arg("--chroot-exec")
        .arg(root)
        .arg("--")
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{shown}: {e}"))?;
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.take(64 * 1024).read_to_end(&mut buf);
        }
        buf
    });
    let end = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= end => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{shown}: no answer within {}s", timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("{shown}: {e}")),
        }
    };
    let err = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    if status.success() {
        return Ok(());
    }
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    Err(format!(
        "{shown}: {status}{}",
        if last.is_empty() {
            String::new()
        } else {
            format!(": {last}")
        }
    ))
}

/// A loopback `http://HOST:PORT/PATH` URL, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthz {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Healthz {
    pub fn parse(url: &str) -> Result<Healthz, String> {
        let bad = || {
            format!(
                "--kubelet-healthz {url:?}: not an http://127.0.0.1:PORT/PATH URL (loopback only), or none"
            )
        };
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
            None => (authority, 80),
        };
        let loopback = host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback || path.contains(char::is_whitespace) {
            return Err(bad());
        }
        Ok(Healthz {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// One probe: `Ok` when the answer is 200 with body `ok`.
    pub fn probe(&self, timeout: Duration) -> Result<(), String> {
        let addr = (
            self.host.trim_start_matches('[').trim_end_matches(']'),
            self.port,
        )
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .next()
            .ok_or("no address")?;
        let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        // one write: a peer that answers after the first segment and closes
        // would otherwise reset the connection before the answer is read
        let request = format!(
            "GET {} HTTP/1.0\r\nHost: {}:{}\r\nConnection: close\r\n\r\n",
            self.path, self.host, self.port
        );
        s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.take(4096)
            .read_to_end(&mut buf)
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf);
        let status = text.lines().next().unwrap_or("");
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").trim();
        if status.split_whitespace().nth(1) == Some("200") && body == "ok" {
            Ok(())
        } else {
            Err(format!("{status:?} {body:?}").chars().take(200).collect())
        }
    }

    /// Probes until healthy or `timeout` has passed.
    pub fn wait(&self, timeout: Duration) -> Result<(), String> {
        let end = Instant::now() + timeout;
        let mut last;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.probe(
                left.min(Duration::from_secs(2))
                    .max(Duration::from_millis(100)),
            ) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            if Instant::now() >= end {
                return Err(format!(
                    "the kubelet's http://{}:{}{} did not answer ok within {}s (last: {last})",
                    self.host,
                    self.port,
                    self.path,
                    timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(250).min(left));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthz_is_loopback_http_only() {
        assert_eq!(
            Healthz::parse("http://127.0.0.1:10248/healthz").unwrap(),
            Healthz {
                host: "127.0.0.1".into(),
                port: 10248,
                path: "/healthz".into()
            }
        );
        assert!(Healthz::parse("http://[::1]:10248/healthz").is_ok());
        assert!(Healthz::parse("http://localhost:1/x").is_ok());
        for bad in [
            "https://127.0.0.1:10248/healthz",
            "http://10.0.0.1:10248/healthz",
            "http://example.com/",
            "http://127.0.0.1:x/",
        ] {
            assert!(Healthz::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn probe_reads_ok_and_refuses_others() {
        use std::net::TcpListener;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            for body in ["ok", "[-]ping failed"] {
                let (mut c, _) = l.accept().unwrap();
                let mut req = Vec::new();
                let mut b = [0u8; 512];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&b[..n]),
                    }
                }
                let code = if body == "ok" {
                    "200 OK"
                } else {
                    "500 Internal Server Error"
                };
                let _ = write!(
                    c,
                    "HTTP/1.1 {code}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let h = Healthz::parse(&format!("http://127.0.0.1:{port}/healthz")).unwrap();
        assert!(h.probe(Duration::from_secs(2)).is_ok());
        assert!(h.probe(Duration::from_secs(2)).unwrap_err().contains("500"));
        t.join().unwrap();
    }

    #[test]
    fn nsenter_targets_pid_1() {
        assert_eq!(
            in_init(&["systemctl", "restart", "kubelet"]).join(" "),
            "nsenter --target 1 --mount --uts --ipc --net --pid -- systemctl restart kubelet"
        );
    }
}
