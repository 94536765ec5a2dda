//! The on-node token cache: one JSON file per key in a private directory.
//!
//! - The directory is 0700 and owned by us; a symlink, or a directory that
//!   another user can read or write, is refused ([`CacheError::Insecure`]).
//! - Entry files are 0600. Writes go to a temporary file in the same
//!   directory, then fsync and rename, so a reader never sees a torn entry.
//! - An entry that is corrupt, unreadable, from another format or for another
//!   key is a miss, and the next write replaces it.
//! - Single flight across processes: a refresher holds an exclusive lock on
//!   `<key>.lock` (std's `File::lock`, flock(2) on Linux) while it fetches;
//!   others wait on it for a bounded time, then read what it wrote. The kernel
//!   drops the lock when a holder dies, even by SIGKILL.
//!
//! Nothing here touches the network or an async runtime.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::expiry::{self, Schedule};
use crate::protocol::{AuthConfig, CacheKeyType};

/// Bump when the entry layout or the key derivation changes; older entries
/// then count as misses.
pub const FORMAT: u32 = 1;
/// Entries are tiny; anything bigger is not ours.
const MAX_ENTRY_BYTES: u64 = 64 * 1024;

/// A cache key: the SHA-256 of the request and configuration facts that decide
/// which credential is right. Never computed from a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey(String);

impl CacheKey {
    /// `parts` are (name, value) pairs; the order given is the order hashed.
    pub fn new(parts: &[(&str, &str)]) -> CacheKey {
        let mut h = Sha256::new();
        h.update(format!("pullcred-cache-v{FORMAT}\0").as_bytes());
        for (k, v) in parts {
            // length-prefixed so that no two different part lists hash alike
            h.update((k.len() as u64).to_le_bytes());
            h.update(k.as_bytes());
            h.update((v.len() as u64).to_le_bytes());
            h.update(v.as_bytes());
        }
        CacheKey(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What is stored for one key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub format: u32,
    pub key: String,
    /// For people reading the directory: which registry this is for.
    pub registry: String,
    pub cache_key_type: CacheKeyType,
    pub auth: BTreeMap<String, AuthConfig>,
    pub fetched_at: i64,
    pub expires_at: i64,
    /// Set for credentials with a fixed freshness window (see
    /// [`expiry::fixed`]); absent for tokens, whose refresh point follows
    /// from their life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_at: Option<i64>,
}

impl Entry {
    pub fn schedule(&self) -> Schedule {
        match self.refresh_at {
            Some(r) => Schedule {
                fetched_at: self.fetched_at,
                expires_at: self.expires_at,
                refresh_at: r,
                capped: false,
            },
            None => expiry::schedule(self.fetched_at, self.expires_at),
        }
    }
}

#[derive(Debug)]
pub enum CacheError {
    /// The directory is unsafe to use; pullcred refuses to run with it.
    Insecure { path: PathBuf, why: String },
    /// An I/O failure; pullcred answers uncached.
    Io {
        path: PathBuf,
        op: &'static str,
        err: std::io::Error,
    },
}

impl std::fmt::Display for CacheError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheError::Insecure { path, why } => {
                write!(f, "cache directory {}: refused: {why}", path.display())
            }
            CacheError::Io { path, op, err } => write!(f, "cache {op} {}: {err}", path.display()),
        }
    }
}

impl std::error::Error for CacheError {}

fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> CacheError + 'a {
    move |err| CacheError::Io {
        path: path.to_path_buf(),
        op,
        err,
    }
}

/// `/run/pullcred` for root (tmpfs: tokens never reach a node image's disk),
/// else `$XDG_CACHE_HOME/pullcred` or `~/.cache/pullcred`.
pub fn default_dir() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/run/pullcred");
    }
    let xdg = std::env::var_os("XDG_CACHE_HOME").filter(|v| Path::new(v).is_absolute());
    match (xdg, std::env::var_os("HOME")) {
        (Some(x), _) => PathBuf::from(x).join("pullcred"),
        (None, Some(h)) if !h.is_empty() => PathBuf::from(h).join(".cache").join("pullcred"),
        _ => std::env::temp_dir().join(format!("pullcred-{}", rustix::process::geteuid().as_raw())),
    }
}

#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
}

/// The outcome of a lock attempt.
pub enum Lock {
    /// Held until dropped.
    Held(#[allow(dead_code)] File),
    /// Another process held it for the whole wait.
    TimedOut,
}

impl Cache {
    /// Opens the cache directory, creating it 0700 if missing, and checks it.
    pub fn open(dir: &Path) -> Result<Cache, CacheError> {
        match fs::symlink_metadata(dir) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(io(dir, "create"))?;
            }
            Err(e) => return Err(io(dir, "stat")(e)),
            Ok(_) => {}
        }
        let meta = fs::symlink_metadata(dir).map_err(io(dir, "stat"))?;
        check_private(dir, &meta, true)?;
        Ok(Cache {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.json", key.as_str()))
    }

    /// Reads an entry. `Err` carries why a present entry was not usable
    /// (corrupt, wrong owner or mode, other format); a missing file is `Ok(None)`.
    pub fn read(&self, key: &CacheKey) -> Result<Option<Entry>, String> {
        let path = self.entry_path(key);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
        };
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
        if !meta.is_file() || meta.uid() != euid() || meta.mode() & 0o077 != 0 {
            return Err(format!(
                "{} has the wrong type, owner or mode (want a 0600 file owned by uid {})",
                path.display(),
                euid()
            ));
        }
        if meta.len() > MAX_ENTRY_BYTES {
            return Err(format!("{} is too large to be an entry", path.display()));
        }
        let mut buf = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut buf)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let entry: Entry = serde_json::from_slice(&buf)
            .map_err(|_| format!("{} is corrupt or from an older format", path.display()))?;
        if entry.format != FORMAT || entry.key != key.as_str() {
            return Err(format!("{} is from another format or key", path.display()));
        }
        Ok(Some(entry))
    }

    /// Waits up to `wait` for the key's lock.
    pub fn lock(&self, key: &CacheKey, wait: Duration) -> Result<Lock, CacheError> {
        let path = self.dir.join(format!("{}.lock", key.as_str()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .map_err(io(&path, "open lock"))?;
        let start = Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Lock::Held(file)),
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => return Err(io(&path, "lock")(e)),
            }
            let waited = start.elapsed();
            if waited >= wait {
                return Ok(Lock::TimedOut);
            }
            std::thread::sleep(pause.min(wait - waited));
            pause = (pause * 2).min(Duration::from_millis(25));
        }
    }

    /// Atomically replaces the entry for `key`.
    pub fn write(&self, key: &CacheKey, entry: &Entry) -> Result<(), CacheError> {
        self.sweep_temp_files();
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tmp = self.dir.join(format!(
            ".{}.{}.{nanos}.tmp",
            key.as_str(),
            std::process::id()
        ));
        let body = serde_json::to_vec(entry).expect("entry serialises");
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io(&tmp, "create"))?;
            f.write_all(&body).map_err(io(&tmp, "write"))?;
            f.sync_all().map_err(io(&tmp, "fsync"))?;
            let dest = self.entry_path(key);
            fs::rename(&tmp, &dest).map_err(io(&dest, "rename"))?;
            // Make the rename itself durable; best effort.
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Removes temporary files left by processes killed mid-write.
    fn sweep_temp_files(&self) {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        for e in dir.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with('.') && name.ends_with(".tmp")) {
                continue;
            }
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > Duration::from_secs(60));
            if old {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// A path we keep secrets in must be ours, not a symlink, and closed to others.
pub fn check_private(path: &Path, meta: &fs::Metadata, want_dir: bool) -> Result<(), CacheError> {
    let refuse = |why: String| {
        Err(CacheError::Insecure {
            path: path.to_path_buf(),
            why,
        })
    };
    if meta.file_type().is_symlink() {
        return refuse("is a symlink".into());
    }
    if want_dir && !meta.is_dir() {
        return refuse("is not a directory".into());
    }
    if meta.uid() != euid() {
        return refuse(format!(
            "owned by uid {}, not by uid {} that runs pullcred",
            meta.uid(),
            euid()
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return refuse(format!(
            "mode {mode:04o} lets other users write it (want 0700)"
        ));
    }
    if mode & 0o044 != 0 {
        return refuse(format!(
            "mode {mode:04o} lets other users read it (want 0700)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pullcred-unit-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn entry(key: &CacheKey) -> Entry {
        let mut auth = BTreeMap::new();
        auth.insert(
            "r.example".to_string(),
            AuthConfig {
                username: "AWS".into(),
                password: Secret::new("pw"),
            },
        );
        Entry {
            format: FORMAT,
            key: key.as_str().to_string(),
            registry: "r.example".into(),
            cache_key_type: CacheKeyType::Registry,
            auth,
            fetched_at: 1,
            expires_at: 2,
            refresh_at: None,
        }
    }

    #[test]
    fn key_is_stable_and_unambiguous() {
        let a = CacheKey::new(&[("a", "bc")]);
        assert_eq!(a, CacheKey::new(&[("a", "bc")]));
        assert_ne!(a, CacheKey::new(&[("ab", "c")]));
        assert_ne!(a, CacheKey::new(&[("a", "b"), ("", "c")]));
        assert_eq!(a.as_str().len(), 64);
    }

    #[test]
    fn creates_private_dir_and_round_trips() {
        let d = tempdir("rt");
        let c = Cache::open(&d).unwrap();
        let mode = fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let k = CacheKey::new(&[("x", "y")]);
        assert!(c.read(&k).unwrap().is_none());
        c.write(&k, &entry(&k)).unwrap();
        let got = c.read(&k).unwrap().unwrap();
        assert_eq!(got.auth["r.example"].password.expose(), "pw");
        let fmode = fs::metadata(c.entry_path(&k)).unwrap().permissions().mode() & 0o777;
        assert_eq!(fmode, 0o600);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn corrupt_and_foreign_entries_are_misses_with_a_reason() {
        let d = tempdir("corrupt");
        let c = Cache::open(&d).unwrap();
        let k = CacheKey::new(&[("x", "y")]);
        let p = c.entry_path(&k);
        fs::write(&p, b"{\"format\":1,\"ke").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(c.read(&k).unwrap_err().contains("corrupt"));
        let other = CacheKey::new(&[("other", "")]);
        fs::write(&p, serde_json::to_vec(&entry(&other)).unwrap()).unwrap();
        assert!(c.read(&k).is_err());
        // and a write replaces it
        c.write(&k, &entry(&k)).unwrap();
        assert!(c.read(&k).unwrap().is_some());
        // a world-readable entry is not trusted
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(c.read(&k).unwrap_err().contains("mode"));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refuses_symlinks_and_open_modes() {
        let d = tempdir("refuse");
        fs::create_dir_all(&d).unwrap();
        let real = d.join("real");
        fs::DirBuilder::new().mode(0o700).create(&real).unwrap();
        let link = d.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = Cache::open(&link).unwrap_err();
        assert!(
            matches!(e, CacheError::Insecure { .. }) && e.to_string().contains("symlink"),
            "{e}"
        );
        fs::set_permissions(&real, fs::Permissions::from_mode(0o777)).unwrap();
        let e = Cache::open(&real).unwrap_err();
        assert!(e.to_string().contains("write"), "{e}");
        fs::set_permissions(&real, fs::Permissions::from_mode(0o755)).unwrap();
        let e = Cache::open(&real).unwrap_err();
        assert!(e.to_string().contains("read"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn lock_is_exclusive_and_bounded() {
        let d = tempdir("lock");
        let c = Cache::open(&d).unwrap();
        let k = CacheKey::new(&[("x", "y")]);
        let held = c.lock(&k, Duration::from_millis(10)).unwrap();
        assert!(matches!(held, Lock::Held(_)));
        let t = Instant::now();
        assert!(matches!(
            c.lock(&k, Duration::from_millis(50)).unwrap(),
            Lock::TimedOut
        ));
        assert!(t.elapsed() < Duration::from_millis(500));
        drop(held);
        assert!(matches!(
            c.lock(&k, Duration::from_millis(10)).unwrap(),
            Lock::Held(_)
        ));
        fs::remove_dir_all(&d).unwrap();
    }
}
