//! The on-node token cache: one JSON file per key in a private directory.
//!
//! - The directory is 0700 and owned by us; a symlink, or a directory that
//!   another user can use, is refused ([`CacheError::Insecure`]) and the run
//!   answers without the cache.
//! - It is opened once (`O_DIRECTORY|O_NOFOLLOW`) and checked through that
//!   handle; every entry read, lock, temporary file, rename and sweep is then
//!   relative to the handle (`openat`, `renameat`, `unlinkat`), so a user who
//!   can write a parent directory cannot swap it between the check and the use.
//! - Entry files are 0600, read through [`crate::private_file`] (no FIFO,
//!   device or symlink stalls or misleads a read). Writes go to a temporary
//!   file in the same directory, then fsync and rename, so a reader never sees
//!   a torn entry.
//! - An entry that is corrupt, unreadable, from another format or for another
//!   key is a miss, and the next write replaces it.
//! - Single flight across processes: a refresher holds an exclusive lock on
//!   `<key>.lock` (std's `File::lock`, flock(2) on Linux) while it fetches;
//!   others wait on it for a bounded time, then read what it wrote. The kernel
//!   drops the lock when a holder dies, even by SIGKILL.
//! - Bounded: each write (a miss, after its fetch; never a hit) examines at
//!   most [`SWEEP_BUDGET`] other names and removes expired entries, stale
//!   unlocked lock files and temporary files left by killed writers.
//!
//! Nothing here touches the network or an async runtime.

use std::collections::BTreeMap;
use std::fs::{self, File, Metadata};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::expiry::{self, Schedule};
use crate::private_file::{self, Limits, PrivateFileError};
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
    /// The directory is unsafe to use (another user's, open to others, a
    /// symlink): pullcred answers without it, with a warning.
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

/// A sweep examines at most this many names per write.
pub const SWEEP_BUDGET: usize = 128;
/// Names read from the directory listing per sweep, at most.
const SWEEP_LISTED: usize = 4096;
/// An entry is removed this long after its expiry (clock skew between runs).
const EXPIRED_GRACE_SECS: i64 = 300;
/// Lock, temporary and unusable files younger than this are left alone: a
/// writer may be about to use them.
const STALE_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Cache {
    /// For messages only: every file operation goes through `fd`.
    dir: PathBuf,
    /// The directory as opened and checked.
    fd: OwnedFd,
}

/// The outcome of a lock attempt.
pub enum Lock {
    /// Held until dropped.
    Held(#[allow(dead_code)] File),
    /// Another process held it for the whole wait.
    TimedOut,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

impl Cache {
    /// Opens the cache directory, creating it 0700 if missing, and checks
    /// the opened directory: ours, not a symlink, closed to other users.
    pub fn open(dir: &Path) -> Result<Cache, CacheError> {
        let fd = match rustix::fs::open(dir, DIR_FLAGS, Mode::empty()) {
            Err(Errno::NOENT) => {
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(parent)
                        .map_err(io(dir, "create"))?;
                }
                match rustix::fs::mkdir(dir, Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(io(dir, "create")(e.into())),
                }
                // Whatever is there now, created by us or swapped in, is
                // checked through the handle below.
                rustix::fs::open(dir, DIR_FLAGS, Mode::empty())
            }
            other => other,
        };
        let fd = match fd {
            Ok(fd) => fd,
            // O_NOFOLLOW|O_DIRECTORY on a symlink: ENOTDIR (ELOOP on some systems)
            Err(Errno::NOTDIR | Errno::LOOP) => {
                let why = match fs::symlink_metadata(dir) {
                    Ok(m) if m.file_type().is_symlink() => "is a symlink",
                    _ => "is not a directory",
                };
                return Err(insecure(dir, why.to_string()));
            }
            Err(e) => return Err(io(dir, "open")(e.into())),
        };
        let handle = File::from(fd);
        let meta = handle.metadata().map_err(io(dir, "stat"))?;
        if !meta.is_dir() {
            return Err(insecure(dir, "is not a directory".into()));
        }
        if let Err(e) = private_file::check_owner_mode(&meta, 0o700) {
            let why = e.to_string();
            return Err(insecure(dir, why.trim_start_matches("refused: ").into()));
        }
        Ok(Cache {
            dir: dir.to_path_buf(),
            fd: handle.into(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn shown(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Reads an entry. `Err` carries why a present entry was not usable
    /// (corrupt, wrong type, owner or mode, other format); a missing file is
    /// `Ok(None)`.
    pub fn read(&self, key: &CacheKey) -> Result<Option<Entry>, String> {
        let name = entry_name(key.as_str());
        let buf = match private_file::open_regular_at(
            &self.fd,
            &name,
            Limits::private(MAX_ENTRY_BYTES),
        ) {
            Ok(b) => b,
            Err(PrivateFileError::Missing) => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", self.shown(&name).display())),
        };
        let entry: Entry = serde_json::from_slice(&buf).map_err(|_| {
            format!(
                "{} is corrupt or from an older format",
                self.shown(&name).display()
            )
        })?;
        if entry.format != FORMAT || entry.key != key.as_str() {
            return Err(format!(
                "{} is from another format or key",
                self.shown(&name).display()
            ));
        }
        Ok(Some(entry))
    }

    /// Waits up to `wait` for the key's lock.
    pub fn lock(&self, key: &CacheKey, wait: Duration) -> Result<Lock, CacheError> {
        let name = lock_name(key.as_str());
        let path = self.shown(&name);
        let start = Instant::now();
        loop {
            let (file, meta) =
                private_file::open_lock_at(&self.fd, &name).map_err(io(&path, "open lock"))?;
            let left = wait.saturating_sub(start.elapsed());
            let held = private_file::lock_within(
                &file,
                left,
                Duration::from_millis(2),
                Duration::from_millis(25),
            )
            .map_err(io(&path, "lock"))?;
            if !held {
                return Ok(Lock::TimedOut);
            }
            // A sweep may have removed the lock file between our open and
            // our lock: a lock on a file no longer in the directory excludes
            // no one, so take the one that is there now.
            if self.same_file(&name, &meta) {
                return Ok(Lock::Held(file));
            }
            if start.elapsed() >= wait {
                return Ok(Lock::TimedOut);
            }
        }
    }

    /// Atomically replaces the entry for `key`, then sweeps a bounded part
    /// of the directory.
    pub fn write(&self, key: &CacheKey, entry: &Entry) -> Result<(), CacheError> {
        let result = self.write_entry(key, entry);
        self.sweep_skipping(Some(key.as_str()), SystemTime::now(), SWEEP_BUDGET);
        result
    }

    fn write_entry(&self, key: &CacheKey, entry: &Entry) -> Result<(), CacheError> {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tmp = format!(".{}.{}.{nanos}.tmp", key.as_str(), std::process::id());
        let shown = self.shown(&tmp);
        let body = serde_json::to_vec(entry).expect("entry serialises");
        let fd = rustix::fs::openat(
            &self.fd,
            &tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io(&shown, "create")(e.into()))?;
        let result = (|| {
            // whatever the umask, an entry is 0600
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o600))
                .map_err(|e| io(&shown, "chmod")(e.into()))?;
            let mut f = File::from(fd);
            f.write_all(&body).map_err(io(&shown, "write"))?;
            f.sync_all().map_err(io(&shown, "fsync"))?;
            let dest = entry_name(key.as_str());
            rustix::fs::renameat(&self.fd, &tmp, &self.fd, &dest)
                .map_err(|e| io(&self.shown(&dest), "rename")(e.into()))?;
            // Make the rename itself durable; best effort.
            let _ = rustix::fs::fsync(&self.fd);
            Ok(())
        })();
        if result.is_err() {
            let _ = rustix::fs::unlinkat(&self.fd, &tmp, AtFlags::empty());
        }
        result
    }

    /// Examines at most `budget` names (a lock file whose entry is there costs
    /// one uncounted `stat`), starting at a point that moves from run to run,
    /// and removes:
    /// - entries expired more than [`EXPIRED_GRACE_SECS`] ago, and entries
    ///   that are not usable (corrupt, wrong type) and older than
    ///   [`STALE_AFTER`], unless their key is locked;
    /// - lock files older than [`STALE_AFTER`] whose entry is gone and that no
    ///   one holds;
    /// - temporary files older than [`STALE_AFTER`] (writers killed mid-write).
    ///
    /// Returns how many files it removed. Best effort: failures are ignored.
    pub fn sweep(&self, now: SystemTime, budget: usize) -> usize {
        self.sweep_skipping(None, now, budget)
    }

    /// [`Cache::sweep`], leaving the files of key `skip` alone.
    fn sweep_skipping(&self, skip: Option<&str>, now: SystemTime, budget: usize) -> usize {
        let Ok(dir) = rustix::fs::Dir::read_from(&self.fd) else {
            return 0;
        };
        let names: Vec<String> = dir
            .take(SWEEP_LISTED)
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
            .filter(|n| match classify(n) {
                Some(Kind::Entry(k) | Kind::Lock(k)) => Some(k) != skip,
                Some(Kind::Temp) => true,
                None => false,
            })
            .collect();
        if names.is_empty() {
            return 0;
        }
        let start = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| {
            d.subsec_nanos() as usize ^ std::process::id() as usize
        }) % names.len();
        let mut removed = 0;
        let mut examined = 0;
        for name in names.iter().cycle().skip(start).take(names.len()) {
            if examined >= budget {
                break;
            }
            let done = match classify(name) {
                // The entry's own sweep decides for its lock: a stat, uncounted.
                Some(Kind::Lock(stem)) if self.identity(&entry_name(stem)).is_some() => continue,
                Some(Kind::Lock(stem)) => self.sweep_lock(stem, now),
                Some(Kind::Temp) => self.older_than(name, now, STALE_AFTER) && self.unlink(name),
                Some(Kind::Entry(stem)) => self.sweep_entry(stem, now),
                None => continue,
            };
            examined += 1;
            removed += usize::from(done);
        }
        if removed > 0 {
            tracing::debug!(removed, "swept the cache directory");
        }
        removed
    }

    fn sweep_entry(&self, stem: &str, now: SystemTime) -> bool {
        let name = entry_name(stem);
        let opened = private_file::open_checked(
            &self.fd,
            Path::new(&name),
            Limits::private(MAX_ENTRY_BYTES),
        );
        let identity = match opened {
            Ok((f, meta)) => {
                let id = (meta.dev(), meta.ino());
                let expires = private_file::read_through((f, meta), MAX_ENTRY_BYTES)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Expiry>(&b).ok())
                    .map(|e| e.expires_at);
                match expires {
                    Some(t) if t.saturating_add(EXPIRED_GRACE_SECS) >= unix(now) => return false,
                    Some(_) => Some(id),
                    // unusable: a miss for any reader; gone once it is old
                    None if self.older_than(&name, now, STALE_AFTER) => Some(id),
                    None => return false,
                }
            }
            Err(PrivateFileError::Missing) => return false,
            Err(_) if self.older_than(&name, now, STALE_AFTER) => None,
            Err(_) => return false,
        };
        // Not while a refresher holds the key: it is about to replace it.
        let lock = match self.try_lock_existing(stem) {
            Some(Some(l)) => Some(l),
            Some(None) => return false,
            None => None,
        };
        // The name must still be the file judged, not a fresh entry renamed
        // over it since (by a writer that could not get the lock).
        let still = match identity {
            Some(id) => self.identity(&name) == Some(id),
            None => true,
        };
        let removed = still && self.unlink(&name);
        if let Some((lock_file, lock_meta)) = lock
            && removed
            && age(&lock_meta, now) > STALE_AFTER
            && self.same_file(&lock_name(stem), &lock_meta)
        {
            self.unlink(&lock_name(stem));
            drop(lock_file);
        }
        removed
    }

    fn sweep_lock(&self, stem: &str, now: SystemTime) -> bool {
        let name = lock_name(stem);
        if !self.older_than(&name, now, STALE_AFTER) {
            return false;
        }
        if self.identity(&entry_name(stem)).is_some() {
            return false; // the entry's own sweep decides
        }
        match self.try_lock_existing(stem) {
            Some(Some((file, meta))) => {
                let removed = self.same_file(&name, &meta)
                    && self.identity(&entry_name(stem)).is_none()
                    && self.unlink(&name);
                drop(file);
                removed
            }
            _ => false,
        }
    }

    /// The key's existing lock file, locked without waiting: `None` if there
    /// is no lock file, `Some(None)` if someone holds it (or it is not a
    /// plain file).
    fn try_lock_existing(&self, stem: &str) -> Option<Option<(File, Metadata)>> {
        let fd = match rustix::fs::openat(
            &self.fd,
            lock_name(stem),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return None,
            Err(_) => return Some(None),
        };
        let file = File::from(fd);
        let Ok(meta) = file.metadata() else {
            return Some(None);
        };
        if !meta.is_file() || file.try_lock().is_err() {
            return Some(None);
        }
        Some(Some((file, meta)))
    }

    /// (device, inode) of a name in the directory, not following symlinks.
    fn identity(&self, name: &str) -> Option<(u64, u64)> {
        let st = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        #[allow(clippy::unnecessary_cast)]
        Some((st.st_dev as u64, st.st_ino as u64))
    }

    fn same_file(&self, name: &str, meta: &Metadata) -> bool {
        self.identity(name) == Some((meta.dev(), meta.ino()))
    }

    fn older_than(&self, name: &str, now: SystemTime, min: Duration) -> bool {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            #[allow(clippy::unnecessary_cast)]
            Ok(st) => unix(now).saturating_sub(st.st_mtime as i64) > min.as_secs() as i64,
            Err(_) => false,
        }
    }

    fn unlink(&self, name: &str) -> bool {
        rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()).is_ok()
    }
}

/// The one field a sweep needs from an entry.
#[derive(Deserialize)]
struct Expiry {
    #[serde(rename = "expiresAt")]
    expires_at: i64,
}

/// The names a sweep may remove; anything else in the directory is left.
enum Kind<'a> {
    Entry(&'a str),
    Lock(&'a str),
    Temp,
}

fn classify(name: &str) -> Option<Kind<'_>> {
    let is_key = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if name.starts_with('.') && name.ends_with(".tmp") {
        return Some(Kind::Temp);
    }
    if let Some(stem) = name.strip_suffix(".json").filter(|s| is_key(s)) {
        return Some(Kind::Entry(stem));
    }
    if let Some(stem) = name.strip_suffix(".lock").filter(|s| is_key(s)) {
        return Some(Kind::Lock(stem));
    }
    None
}

fn entry_name(key: &str) -> String {
    format!("{key}.json")
}

fn lock_name(key: &str) -> String {
    format!("{key}.lock")
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn age(meta: &Metadata, now: SystemTime) -> Duration {
    Duration::from_secs(unix(now).saturating_sub(meta.mtime()).max(0) as u64)
}

fn insecure(path: &Path, why: String) -> CacheError {
    CacheError::Insecure {
        path: path.to_path_buf(),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use std::os::unix::fs::PermissionsExt;

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
            fetched_at: 1_000_000,
            expires_at: i64::MAX / 2,
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
        let fmode = fs::metadata(d.join(entry_name(k.as_str())))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(fmode, 0o600);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn corrupt_and_foreign_entries_are_misses_with_a_reason() {
        let d = tempdir("corrupt");
        let c = Cache::open(&d).unwrap();
        let k = CacheKey::new(&[("x", "y")]);
        let p = d.join(entry_name(k.as_str()));
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

    fn expiring(key: &CacheKey, expires_at: i64) -> Entry {
        Entry {
            expires_at,
            ..entry(key)
        }
    }

    fn set_mtime(path: &Path, ago: Duration) {
        let t = SystemTime::now() - ago;
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    /// Given a cache opened under a parent that another user could write,
    /// when the parent is swapped for a symlink to another directory, then
    /// reads, writes, locks and sweeps still happen in the directory that
    /// was opened and checked.
    #[test]
    fn a_swapped_parent_does_not_redirect_the_cache() {
        let base = tempdir("swap");
        let parent = base.join("parent");
        let opened = parent.join("cache");
        fs::create_dir_all(&opened).unwrap();
        fs::set_permissions(&opened, fs::Permissions::from_mode(0o700)).unwrap();
        let c = Cache::open(&opened).unwrap();

        // the swap: parent moves away, a symlink to a decoy takes its name
        let moved = base.join("moved");
        fs::rename(&parent, &moved).unwrap();
        let decoy = base.join("decoy");
        fs::create_dir_all(decoy.join("cache")).unwrap();
        fs::set_permissions(decoy.join("cache"), fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(&decoy, &parent).unwrap();
        let decoy_tmp = decoy.join("cache").join(".victim.1.2.tmp");
        fs::write(&decoy_tmp, b"not ours").unwrap();
        set_mtime(&decoy_tmp, Duration::from_secs(3600));

        let k = CacheKey::new(&[("swap", "1")]);
        let held = c.lock(&k, Duration::from_millis(10)).unwrap();
        assert!(matches!(held, Lock::Held(_)));
        c.write(&k, &entry(&k)).unwrap();
        drop(held);
        let name = entry_name(k.as_str());
        assert!(moved.join("cache").join(&name).is_file());
        assert!(moved.join("cache").join(lock_name(k.as_str())).is_file());
        assert!(!decoy.join("cache").join(&name).exists());
        assert!(!decoy.join("cache").join(lock_name(k.as_str())).exists());
        assert!(c.read(&k).unwrap().is_some());
        // the sweep removed nothing in the decoy
        assert!(decoy_tmp.exists());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_fifo_entry_is_a_miss_at_once() {
        let d = tempdir("fifo");
        let c = Cache::open(&d).unwrap();
        let k = CacheKey::new(&[("fifo", "1")]);
        let p = d.join(entry_name(k.as_str()));
        rustix::fs::mkfifoat(rustix::fs::CWD, &p, Mode::from_raw_mode(0o600)).unwrap();
        let t = Instant::now();
        let e = c.read(&k).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(1));
        assert!(e.contains("FIFO"), "{e}");
        // and a write replaces it
        c.write(&k, &entry(&k)).unwrap();
        assert!(c.read(&k).unwrap().is_some());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refuses_a_file_and_creates_missing_parents_private() {
        let d = tempdir("parents");
        let deep = d.join("a").join("b");
        Cache::open(&deep).unwrap();
        let mode = fs::metadata(d.join("a")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let f = d.join("file");
        fs::write(&f, b"").unwrap();
        let e = Cache::open(&f).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        fs::set_permissions(&deep, fs::Permissions::from_mode(0o711)).unwrap();
        let e = Cache::open(&deep).unwrap_err();
        assert!(e.to_string().contains("(want 0700)"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }

    /// Given expired entries, stale locks and temporary files next to live
    /// ones, when the cache is swept, then only the dead ones go, and only
    /// up to the budget per sweep.
    #[test]
    fn sweep_removes_expired_entries_and_stale_files_only() {
        let d = tempdir("sweep");
        let c = Cache::open(&d).unwrap();
        let now = SystemTime::now();
        let t = unix(now);
        let old = Duration::from_secs(3600);

        let live = CacheKey::new(&[("live", "")]);
        c.write(&live, &expiring(&live, t + 3600)).unwrap();
        let _ = c.lock(&live, Duration::ZERO).unwrap();
        set_mtime(&d.join(lock_name(live.as_str())), old);
        // just expired, inside the grace: kept
        let recent = CacheKey::new(&[("recent", "")]);
        c.write(&recent, &expiring(&recent, t - 10)).unwrap();
        // expired and its key locked by a refresher: kept
        let busy = CacheKey::new(&[("busy", "")]);
        c.write(&busy, &expiring(&busy, t - 7200)).unwrap();
        let held = c.lock(&busy, Duration::ZERO).unwrap();
        assert!(matches!(held, Lock::Held(_)));
        // expired, with an old unlocked lock file: both go
        let dead = CacheKey::new(&[("dead", "")]);
        c.write(&dead, &expiring(&dead, t - 7200)).unwrap();
        drop(c.lock(&dead, Duration::ZERO).unwrap());
        set_mtime(&d.join(lock_name(dead.as_str())), old);
        // a lock whose entry is gone: old goes, young stays
        let orphan = CacheKey::new(&[("orphan", "")]);
        drop(c.lock(&orphan, Duration::ZERO).unwrap());
        set_mtime(&d.join(lock_name(orphan.as_str())), old);
        let young = CacheKey::new(&[("young", "")]);
        drop(c.lock(&young, Duration::ZERO).unwrap());
        // a corrupt entry, old: goes
        let junk = CacheKey::new(&[("junk", "")]);
        let junk_path = d.join(entry_name(junk.as_str()));
        fs::write(&junk_path, b"{").unwrap();
        fs::set_permissions(&junk_path, fs::Permissions::from_mode(0o600)).unwrap();
        set_mtime(&junk_path, old);
        // temporary files: old goes, young stays; foreign names stay
        fs::write(d.join(".x.1.2.tmp"), b"").unwrap();
        set_mtime(&d.join(".x.1.2.tmp"), old);
        fs::write(d.join(".y.1.2.tmp"), b"").unwrap();
        fs::write(d.join("README"), b"").unwrap();
        set_mtime(&d.join("README"), old);

        assert_eq!(c.sweep(now, 1000), 4);
        let exists = |n: String| d.join(n).exists();
        assert!(exists(entry_name(live.as_str())) && exists(lock_name(live.as_str())));
        assert!(exists(entry_name(recent.as_str())));
        assert!(exists(entry_name(busy.as_str())) && exists(lock_name(busy.as_str())));
        assert!(!exists(entry_name(dead.as_str())) && !exists(lock_name(dead.as_str())));
        assert!(!exists(lock_name(orphan.as_str())) && exists(lock_name(young.as_str())));
        assert!(!junk_path.exists());
        assert!(!exists(".x.1.2.tmp".into()) && exists(".y.1.2.tmp".into()));
        assert!(exists("README".into()));
        assert!(c.read(&live).unwrap().is_some());
        drop(held);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn sweep_is_bounded_per_run_and_drains_over_runs() {
        let d = tempdir("bounded");
        let c = Cache::open(&d).unwrap();
        let now = SystemTime::now();
        for i in 0..300 {
            let k = CacheKey::new(&[("n", &i.to_string())]);
            c.write_entry(&k, &expiring(&k, unix(now) - 7200)).unwrap();
        }
        assert_eq!(c.sweep(now, 100), 100);
        let mut runs = 1;
        while c.sweep(now, 100) > 0 {
            runs += 1;
            assert!(runs < 50, "the sweep does not drain");
        }
        assert_eq!(fs::read_dir(&d).unwrap().count(), 0);
        fs::remove_dir_all(&d).unwrap();
    }

    /// A lock file removed by a sweep between a waiter's open and its lock
    /// is not a lock: the waiter takes the file that is there now.
    #[test]
    fn a_lock_on_a_swept_lock_file_is_retaken() {
        let d = tempdir("relock");
        let c = Cache::open(&d).unwrap();
        let k = CacheKey::new(&[("relock", "")]);
        let first = c.lock(&k, Duration::ZERO).unwrap();
        let Lock::Held(f1) = first else {
            panic!("not held")
        };
        let m1 = f1.metadata().unwrap();
        // the name now points at another file: the held one is stale
        fs::remove_file(d.join(lock_name(k.as_str()))).unwrap();
        let second = c.lock(&k, Duration::from_millis(100)).unwrap();
        let Lock::Held(f2) = second else {
            panic!("a stale lock blocked a new holder")
        };
        let m2 = f2.metadata().unwrap();
        assert_ne!(m1.ino(), m2.ino());
        assert!(c.same_file(&lock_name(k.as_str()), &m2));
        fs::remove_dir_all(&d).unwrap();
    }
}
