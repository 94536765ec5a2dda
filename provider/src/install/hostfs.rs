//! The node's file system as `pullcred install` sees it: a host root mounted
//! at some directory (`/host` in the DaemonSet), paths resolved as the host
//! resolves them, and the few ways the installer may change a file.
//!
//! Promises (the same as packer/provision.sh's):
//! - a path is resolved inside the root: a symlink's absolute target is read
//!   from the host root, `..` stops at it, so nothing outside is reached;
//! - nothing is written under /run, /var/run, /tmp, /var/tmp, /proc, /sys or
//!   /dev (also not through a symlinked directory), nor onto a symlink;
//! - a file is rewritten only when its bytes differ (owner and mode are fixed
//!   in place otherwise), through a temporary file in the same directory
//!   renamed over it; directories it did not create are never touched.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Places nothing of pullcred's goes: volatile, temporary or kernel file systems.
const REFUSED: [&str; 7] = [
    "/run", "/var/run", "/tmp", "/var/tmp", "/proc", "/sys", "/dev",
];

/// Longest chain of symlinks followed (Linux's own limit).
const MAX_LINKS: usize = 40;

/// The host's root directory.
#[derive(Debug, Clone)]
pub struct HostRoot {
    root: PathBuf,
}

/// A file as it was before the installer changed it (for rollback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    pub bytes: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// What [`HostRoot::put`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    Unchanged,
    /// Same bytes; owner or mode fixed.
    FixedMeta,
    /// New bytes; the file's former state, if it existed.
    Written(Option<Previous>),
}

fn split(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect()
}

/// Whether a host path is in (or is) one of the refused places.
pub fn refused(host_path: &str) -> bool {
    REFUSED
        .iter()
        .any(|r| host_path == *r || host_path.starts_with(&format!("{r}/")))
}

impl HostRoot {
    /// The root at `dir` (a directory; symlinks in `dir` itself are resolved).
    pub fn new(dir: &Path) -> Result<HostRoot, String> {
        let root =
            fs::canonicalize(dir).map_err(|e| format!("--host-root {}: {e}", dir.display()))?;
        if !root.is_dir() {
            return Err(format!("--host-root {}: not a directory", dir.display()));
        }
        Ok(HostRoot { root })
    }

    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Where a resolved host path is, seen from this process.
    pub fn local(&self, host_path: &str) -> PathBuf {
        self.root.join(host_path.trim_start_matches('/'))
    }

    /// `path` (absolute, as on the host) with every symlink resolved as the
    /// host would resolve it; components that do not exist are kept as they are.
    pub fn resolve(&self, path: &str) -> Result<String, String> {
        let mut done: Vec<String> = Vec::new();
        let mut todo: Vec<String> = split(path);
        todo.reverse();
        let mut links = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                done.pop();
                continue;
            }
            let candidate = format!(
                "/{}",
                done.iter()
                    .chain([&c])
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("/")
            );
            let local = self.local(&candidate);
            match fs::symlink_metadata(&local) {
                Ok(m) if m.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(format!("{path}: too many levels of symbolic links"));
                    }
                    let target = fs::read_link(&local).map_err(|e| format!("{candidate}: {e}"))?;
                    let target = target.to_string_lossy().into_owned();
                    if target.starts_with('/') {
                        done.clear();
                    }
                    for t in split(&target).into_iter().rev() {
                        todo.push(t);
                    }
                }
                _ => done.push(c),
            }
        }
        Ok(format!("/{}", done.join("/")))
    }

    /// The local path of a host file, for reading (symlinks followed inside the root).
    pub fn open_path(&self, path: &str) -> Result<PathBuf, String> {
        Ok(self.local(&self.resolve(path)?))
    }

    /// A host file's bytes; `None` when it does not exist (or is not a regular file).
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        let p = self.open_path(path).ok()?;
        let m = fs::metadata(&p).ok()?;
        if !m.is_file() || m.len() > 64 * 1024 * 1024 {
            return None;
        }
        fs::read(p).ok()
    }

    pub fn read_text(&self, path: &str) -> Option<String> {
        self.read(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    pub fn exists(&self, path: &str) -> bool {
        self.open_path(path).is_ok_and(|p| p.exists())
    }

    /// Names in a host directory, sorted; empty when it does not exist.
    pub fn list(&self, dir: &str) -> Vec<String> {
        let Ok(p) = self.open_path(dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = fs::read_dir(p)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The local path to write host file `path` at: its directory resolved
    /// (and not a refused place), the file itself not a symlink.
    pub fn write_path(&self, path: &str) -> Result<PathBuf, String> {
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) if !n.is_empty() && n != "." && n != ".." => (d, n),
            _ => return Err(format!("{path}: not a file path")),
        };
        let dir = self.resolve(if dir.is_empty() { "/" } else { dir })?;
        if refused(&dir) {
            return Err(format!(
                "refusing to write {path}: it resolves to {dir}/{name}, and nothing of pullcred's goes under /run, /tmp, /proc, /sys or /dev"
            ));
        }
        let local = self.local(&dir).join(name);
        if fs::symlink_metadata(&local).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(format!("{path} is a symlink; refusing to write through it"));
        }
        Ok(local)
    }

    /// Creates host directory `dir` and missing parents, 0755 root:root.
    /// Returns the directories created (host paths).
    pub fn ensure_dir(&self, dir: &str) -> Result<Vec<String>, String> {
        let resolved = self.resolve(dir)?;
        if refused(&resolved) {
            return Err(format!(
                "refusing to write under {dir}: it resolves to {resolved}, and nothing of pullcred's goes under /run, /tmp, /proc, /sys or /dev"
            ));
        }
        let mut made = Vec::new();
        let mut cur = String::new();
        for c in split(&resolved) {
            cur = format!("{cur}/{c}");
            let local = self.local(&cur);
            match fs::symlink_metadata(&local) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(format!("{cur} exists and is not a directory")),
                Err(_) => {
                    fs::create_dir(&local).map_err(|e| format!("creating {cur}: {e}"))?;
                    std::os::unix::fs::chown(&local, Some(0), Some(0))
                        .map_err(|e| format!("chown {cur}: {e}"))?;
                    fs::set_permissions(&local, fs::Permissions::from_mode(0o755))
                        .map_err(|e| format!("chmod {cur}: {e}"))?;
                    made.push(cur.clone());
                }
            }
        }
        Ok(made)
    }

    /// A file's current state, when it is a regular file.
    pub fn previous(&self, path: &str) -> Result<Option<Previous>, String> {
        let local = self.write_path(path)?;
        match fs::symlink_metadata(&local) {
            Err(_) => Ok(None),
            Ok(m) if m.is_file() => Ok(Some(Previous {
                bytes: fs::read(&local).map_err(|e| format!("reading {path}: {e}"))?,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
            })),
            Ok(_) => Err(format!("{path} exists and is not a regular file")),
        }
    }

    /// Installs `bytes` as host file `path`, root-owned with `mode`, only when
    /// content, mode or owner differ.
    pub fn put(&self, path: &str, bytes: &[u8], mode: u32) -> Result<Put, String> {
        if let Some((dir, _)) = path.rsplit_once('/')
            && !dir.is_empty()
        {
            self.ensure_dir(dir)?;
        }
        let local = self.write_path(path)?;
        let prev = self.previous(path)?;
        if let Some(p) = &prev
            && p.bytes == bytes
        {
            if (p.mode, p.uid, p.gid) == (mode, 0, 0) {
                return Ok(Put::Unchanged);
            }
            std::os::unix::fs::chown(&local, Some(0), Some(0))
                .map_err(|e| format!("chown {path}: {e}"))?;
            fs::set_permissions(&local, fs::Permissions::from_mode(mode))
                .map_err(|e| format!("chmod {path}: {e}"))?;
            return Ok(Put::FixedMeta);
        }
        write_atomic(&local, bytes, mode, 0, 0).map_err(|e| format!("writing {path}: {e}"))?;
        Ok(Put::Written(prev))
    }

    /// Puts a file back as it was (`None`: removes it).
    pub fn restore(&self, path: &str, prev: Option<&Previous>) -> Result<(), String> {
        let local = self.write_path(path)?;
        match prev {
            None => match fs::remove_file(&local) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(format!("removing {path}: {e}")),
            },
            Some(p) => write_atomic(&local, &p.bytes, p.mode, p.uid, p.gid)
                .map_err(|e| format!("restoring {path}: {e}")),
        }
    }

    /// Renames host file `from` to `to` (same directory), replacing `to`.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), String> {
        let a = self.write_path(from)?;
        let b = self.write_path(to)?;
        fs::rename(a, b).map_err(|e| format!("renaming {from} to {to}: {e}"))
    }

    /// Copies host file `from` to `to`, keeping mode and owner (for backups).
    pub fn copy(&self, from: &str, to: &str) -> Result<(), String> {
        let prev = self
            .previous(from)?
            .ok_or_else(|| format!("{from}: no such file"))?;
        let local = self.write_path(to)?;
        write_atomic(&local, &prev.bytes, prev.mode, prev.uid, prev.gid)
            .map_err(|e| format!("writing {to}: {e}"))
    }
}

fn write_atomic(dest: &Path, bytes: &[u8], mode: u32, uid: u32, gid: u32) -> std::io::Result<()> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dest.with_file_name(format!(".{name}.pullcred-new.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
        fs::rename(&tmp, dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pullcred-hostfs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn resolves_symlinks_inside_the_root() {
        let d = scratch("resolve");
        fs::create_dir_all(d.join("opt/eks")).unwrap();
        fs::create_dir_all(d.join("etc")).unwrap();
        // an absolute link is read from the host root, not this process's
        std::os::unix::fs::symlink("/opt/eks", d.join("etc/eks")).unwrap();
        // `..` stops at the root
        std::os::unix::fs::symlink("../../../../opt", d.join("etc/up")).unwrap();
        let h = HostRoot::new(&d).unwrap();
        assert_eq!(
            h.resolve("/etc/eks/nodeadm.d/x.yaml").unwrap(),
            "/opt/eks/nodeadm.d/x.yaml"
        );
        assert_eq!(h.resolve("/etc/up/eks").unwrap(), "/opt/eks");
        assert_eq!(h.resolve("/a/./b/../c").unwrap(), "/a/c");
        // a loop is an error, not a hang
        std::os::unix::fs::symlink("/loop", d.join("loop")).unwrap();
        assert!(
            h.resolve("/loop/x")
                .unwrap_err()
                .contains("too many levels")
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refuses_run_tmp_and_symlinks() {
        let d = scratch("refuse");
        fs::create_dir_all(d.join("run/x")).unwrap();
        fs::create_dir_all(d.join("etc")).unwrap();
        std::os::unix::fs::symlink("/run/x", d.join("etc/pullcred")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("etc/victim")).unwrap();
        let h = HostRoot::new(&d).unwrap();
        assert!(
            h.write_path("/etc/pullcred/a.yaml")
                .unwrap_err()
                .contains("refusing")
        );
        assert!(h.write_path("/tmp/a").unwrap_err().contains("refusing"));
        assert!(h.write_path("/etc/victim").unwrap_err().contains("symlink"));
        assert!(refused("/var/run") && refused("/run/pullcred") && !refused("/running"));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn put_writes_only_changes() {
        let d = scratch("put");
        let h = HostRoot::new(&d).unwrap();
        assert_eq!(
            h.put("/etc/pullcred/a", b"one", 0o644).unwrap(),
            Put::Written(None)
        );
        assert_eq!(
            h.put("/etc/pullcred/a", b"one", 0o644).unwrap(),
            Put::Unchanged
        );
        fs::set_permissions(d.join("etc/pullcred/a"), fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            h.put("/etc/pullcred/a", b"one", 0o644).unwrap(),
            Put::FixedMeta
        );
        match h.put("/etc/pullcred/a", b"two", 0o644).unwrap() {
            Put::Written(Some(p)) => assert_eq!(p.bytes, b"one"),
            other => panic!("{other:?}"),
        }
        h.restore("/etc/pullcred/a", None).unwrap();
        assert!(!d.join("etc/pullcred/a").exists());
        fs::remove_dir_all(&d).unwrap();
    }
}
