//! The files: `<cache dir>/metrics/` (0700) holds `counters.json` (0600),
//! `lock` and, now and then, `pending.*.json`; the operator's metrics file
//! (0644) is replaced by rename.
//!
//! - One exec's update is a read-modify-write of `counters.json` under an
//!   exclusive flock(2) on `lock`, waited for at most [`LOCK_WAIT`] (and
//!   never past the run's deadline). An exec that does not get it in time
//!   leaves its observation as `pending.<pid>.<nanos>.json` (written whole,
//!   then renamed) and goes; the next lock holder adds it. So no exec waits
//!   more than a few milliseconds, and none is lost.
//! - Every file is written to a temporary name in its own directory and
//!   renamed over the old one: a reader (node_exporter, another exec) sees
//!   the old file or the new one, never part of one. No fsync: these are
//!   counters, and `/run/pullcred` is tmpfs; a file a crash leaves torn is
//!   reset with a warning and counted.
//! - Paths inside the cache directory go through a checked directory handle
//!   (`openat`), as the cache's own files do; `counters.json` is read with
//!   [`crate::private_file`] (0600, ours, no symlink).

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::counters::{Counters, Observation};
use super::render;
use crate::private_file::{self, Limits, PrivateFileError};

/// The longest an exec waits for the counters lock.
pub const LOCK_WAIT: Duration = Duration::from_millis(20);
/// The counters file is a few KiB; anything much larger is not ours.
const MAX_COUNTERS_BYTES: u64 = 1 << 20;
const MAX_PENDING_BYTES: u64 = 64 * 1024;
/// Pending files added per exec, at most (the rest wait for the next).
const MAX_FOLDED: usize = 256;
/// Temporary files older than this were left by a killed writer.
const STALE_TMP: Duration = Duration::from_secs(60);

const SUBDIR: &str = "metrics";
const COUNTERS: &str = "counters.json";
const LOCK: &str = "lock";

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Adds `obs` to the counters in `cache_dir` and rewrites `metrics_file`,
/// waiting at most `wait` for the lock. Best effort: failures are warnings.
pub fn record(cache_dir: &Path, metrics_file: &Path, obs: &Observation, wait: Duration) {
    let dir = match open_dir(cache_dir) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("metrics: {e}; not counting this exec");
            return;
        }
    };
    let shown = cache_dir.join(SUBDIR);
    let (held, own) = match lock(&dir, wait) {
        Ok(Some(l)) => (l, Some(obs)),
        Ok(None) => {
            // Busy: leave the observation for the next holder, and take the
            // lock once more in case the holder has just let go.
            if let Err(e) = write_pending(&dir, obs) {
                tracing::warn!("metrics: {}: {e}; not counting this exec", shown.display());
                return;
            }
            tracing::debug!("metrics: counters lock busy; update left pending");
            match lock(&dir, Duration::ZERO) {
                Ok(Some(l)) => (l, None),
                _ => return,
            }
        }
        Err(e) => {
            tracing::warn!("metrics: {}: {e}; not counting this exec", shown.display());
            return;
        }
    };
    update(&dir, &shown, own, metrics_file);
    drop(held);
}

/// Under the lock: read, fold pending files, add `own`, write both files.
fn update(dir: &OwnedFd, shown: &Path, own: Option<&Observation>, metrics_file: &Path) {
    let mut counters = load(dir, shown);
    let folded = fold_pending(dir, &mut counters);
    if let Some(obs) = own {
        counters.apply(obs);
    }
    let now = crate::time::now_unix();
    counters.prune(now);
    let body = serde_json::to_vec(&counters).expect("counters serialise");
    if let Err(e) = write_at(dir, COUNTERS, &body, 0o600) {
        tracing::warn!(
            "metrics: {}: {e}; counters not saved",
            shown.join(COUNTERS).display()
        );
        return;
    }
    for name in folded {
        let _ = rustix::fs::unlinkat(dir, &name, AtFlags::empty());
    }
    if let Err(e) = write_metrics_file(metrics_file, &render::render(&counters, now)) {
        tracing::warn!("metrics: {}: {e}", metrics_file.display());
    }
}

/// The counters, or fresh ones (with the reset counted) if the file is
/// unusable. A missing file is a first run, not a reset.
fn load(dir: &OwnedFd, shown: &Path) -> Counters {
    let why =
        match private_file::open_regular_at(dir, COUNTERS, Limits::private(MAX_COUNTERS_BYTES)) {
            Ok(bytes) => match serde_json::from_slice::<Counters>(&bytes) {
                Ok(c) => match c.invalid() {
                    None => return c,
                    Some(why) => why.to_string(),
                },
                Err(_) => "corrupt".to_string(),
            },
            Err(PrivateFileError::Missing) => return Counters::default(),
            Err(e) => e.to_string(),
        };
    tracing::warn!(
        "metrics: {}: {why}; starting the counters again (pullcred_metrics_resets_total)",
        shown.join(COUNTERS).display()
    );
    Counters {
        resets: 1,
        ..Counters::default()
    }
}

/// Adds the pending observations (at most [`MAX_FOLDED`]) and returns their
/// names, to remove once the counters are saved. Also removes temporary
/// files killed writers left.
fn fold_pending(dir: &OwnedFd, counters: &mut Counters) -> Vec<String> {
    let Ok(listing) = rustix::fs::Dir::read_from(dir) else {
        return Vec::new();
    };
    let mut folded = Vec::new();
    for entry in listing.filter_map(Result::ok) {
        let Ok(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name.starts_with('.') && name.ends_with(".tmp") {
            if older_than(dir, &name, STALE_TMP) {
                let _ = rustix::fs::unlinkat(dir, &name, AtFlags::empty());
            }
            continue;
        }
        if !(name.starts_with("pending.") && name.ends_with(".json")) {
            continue;
        }
        if folded.len() >= MAX_FOLDED {
            break;
        }
        match private_file::open_regular_at(dir, &name, Limits::private(MAX_PENDING_BYTES))
            .ok()
            .and_then(|b| serde_json::from_slice::<Observation>(&b).ok())
        {
            Some(obs) => {
                counters.apply(&obs);
                counters.deferred = counters.deferred.saturating_add(1);
            }
            None => tracing::warn!("metrics: ignoring unusable pending update {name}"),
        }
        folded.push(name);
    }
    folded
}

fn write_pending(dir: &OwnedFd, obs: &Observation) -> std::io::Result<()> {
    let name = format!("pending.{}.{}.json", std::process::id(), nanos());
    let body = serde_json::to_vec(obs).map_err(std::io::Error::other)?;
    write_at(dir, &name, &body, 0o600)
}

/// Opens `<cache_dir>/metrics`, creating both 0700 if missing, and checks
/// each through its handle: a directory, ours, closed to others.
fn open_dir(cache_dir: &Path) -> Result<OwnedFd, String> {
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", cache_dir.display());
    let cache = match rustix::fs::open(cache_dir, DIR_FLAGS, Mode::empty()) {
        Err(Errno::NOENT) => {
            // Creates it as the cache does (0700, parents 0700), and checks it.
            crate::cache::Cache::open(cache_dir).map_err(|e| e.to_string())?;
            rustix::fs::open(cache_dir, DIR_FLAGS, Mode::empty())
        }
        other => other,
    }
    .map_err(|e| at(&e))?;
    check_dir(&cache).map_err(|e| at(&e))?;
    let sub = match rustix::fs::openat(&cache, SUBDIR, DIR_FLAGS, Mode::empty()) {
        Err(Errno::NOENT) => {
            match rustix::fs::mkdirat(&cache, SUBDIR, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(at(&e)),
            }
            rustix::fs::openat(&cache, SUBDIR, DIR_FLAGS, Mode::empty())
        }
        other => other,
    };
    let shown = cache_dir.join(SUBDIR);
    let sub = sub.map_err(|e| format!("{}: {e}", shown.display()))?;
    check_dir(&sub).map_err(|e| format!("{}: {e}", shown.display()))?;
    Ok(sub)
}

fn check_dir(fd: &OwnedFd) -> Result<(), String> {
    let f = File::from(fd.try_clone().map_err(|e| e.to_string())?);
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if !meta.is_dir() {
        return Err("is not a directory".into());
    }
    private_file::check_owner_mode(&meta, 0o700).map_err(|e| e.to_string())
}

/// The counters lock, waited for at most `wait`; `None` if still busy.
fn lock(dir: &OwnedFd, wait: Duration) -> std::io::Result<Option<File>> {
    let (file, _) = private_file::open_lock_at(dir, LOCK)?;
    let held = private_file::lock_within(
        &file,
        wait,
        Duration::from_micros(250),
        Duration::from_millis(2),
    )?;
    Ok(held.then_some(file))
}

/// Writes `name` in `dir` whole: a temporary file, then a rename over it.
fn write_at(dir: impl AsFd, name: &str, body: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = dir.as_fd();
    let tmp = format!(".{name}.{}.{}.tmp", std::process::id(), nanos());
    let fd = rustix::fs::openat(
        dir,
        &tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )?;
    let result = (|| {
        // whatever the umask
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
        File::from(fd).write_all(body)?;
        rustix::fs::renameat(dir, &tmp, dir, name)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir, &tmp, AtFlags::empty());
    }
    result
}

/// The operator's metrics file, 0644 (it holds no secret), replaced whole.
fn write_metrics_file(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| std::io::Error::other("not a file name"))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = rustix::fs::open(
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    write_at(&dir, name, text.as_bytes(), 0o644)
}

fn older_than(dir: &OwnedFd, name: &str, min: Duration) -> bool {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        #[allow(clippy::unnecessary_cast)]
        Ok(st) => crate::time::now_unix().saturating_sub(st.st_mtime as i64) > min.as_secs() as i64,
        Err(_) => false,
    }
}

fn nanos() -> u32 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}
