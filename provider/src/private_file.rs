//! Reading the files pullcred trusts: credentials (docker configs, Google key
//! files, azure.json, client certificates, token files) and cache entries.
//!
//! Every such file is read the same way, so that no file can stall the run or
//! be swapped between its check and its use:
//! - opened once, `O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_NOCTTY` (a FIFO or a device
//!   opens at once instead of waiting for a writer), plus `O_NOFOLLOW` for a
//!   private file;
//! - checked with `fstat` on that same handle: a regular file, and for a
//!   private file owned by the user running pullcred and closed to others;
//! - size-limited, then read through that handle; never re-opened by path.
//!
//! Errors are one line and never quote the file's content; callers add the
//! path and what the file was for.

use std::fmt;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// How a file is checked before it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Anything larger is refused unread.
    pub max_bytes: u64,
    /// A file that holds a secret of the node's: not a symlink, owned by the
    /// user running pullcred, no permission bits for group or others. Not
    /// private (a projected service-account token, which the kubelet mounts
    /// through a `..data` symlink): symlinks are followed and anyone may own it.
    pub private: bool,
}

impl Limits {
    pub const fn private(max_bytes: u64) -> Limits {
        Limits {
            max_bytes,
            private: true,
        }
    }

    pub const fn shared(max_bytes: u64) -> Limits {
        Limits {
            max_bytes,
            private: false,
        }
    }
}

/// Why a file was not read. The text is one line, for after the path.
#[derive(Debug)]
pub enum PrivateFileError {
    /// Nothing at that path.
    Missing,
    /// A private file that is a symlink.
    Symlink,
    /// Not a regular file: `kind` says what it is ("a FIFO").
    NotRegular { kind: &'static str },
    /// A private file owned by someone else.
    Owner { uid: u32, euid: u32 },
    /// A private file (or directory) that others may use.
    Mode { mode: u32, want: u32 },
    /// Larger than the limit.
    TooLarge { max_bytes: u64 },
    /// The system refused an operation (`op` is "open", "stat" or "read").
    Io {
        op: &'static str,
        err: std::io::Error,
    },
}

impl PrivateFileError {
    /// A file that is there but unsafe to trust, as opposed to unreadable.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            PrivateFileError::Symlink
                | PrivateFileError::NotRegular { .. }
                | PrivateFileError::Owner { .. }
                | PrivateFileError::Mode { .. }
        )
    }
}

impl fmt::Display for PrivateFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrivateFileError::Missing => f.write_str("cannot read: no such file"),
            PrivateFileError::Symlink => f.write_str("refused: is a symlink"),
            PrivateFileError::NotRegular { kind } => {
                write!(f, "refused: is {kind}, not a regular file")
            }
            PrivateFileError::Owner { uid, euid } => write!(
                f,
                "refused: owned by uid {uid}, not by uid {euid} that runs pullcred"
            ),
            PrivateFileError::Mode { mode, want } => {
                let what = if mode & 0o022 != 0 {
                    "write"
                } else if mode & 0o044 != 0 {
                    "read"
                } else {
                    "search or execute"
                };
                write!(
                    f,
                    "refused: mode {mode:04o} lets other users {what} it (want {want:04o})"
                )
            }
            PrivateFileError::TooLarge { max_bytes } => {
                write!(f, "larger than {max_bytes} bytes")
            }
            PrivateFileError::Io { op, err } => write!(f, "cannot {op}: {err}"),
        }
    }
}

impl std::error::Error for PrivateFileError {}

/// Reads the file at `path` (relative paths from the working directory).
pub fn open_regular(path: &Path, limits: Limits) -> Result<Vec<u8>, PrivateFileError> {
    open_regular_at(rustix::fs::CWD, path, limits)
}

/// Reads `path` relative to the directory handle `dir`.
pub fn open_regular_at(
    dir: impl AsFd,
    path: impl AsRef<Path>,
    limits: Limits,
) -> Result<Vec<u8>, PrivateFileError> {
    let file = open_checked(dir, path.as_ref(), limits)?;
    read_through(file, limits.max_bytes)
}

/// Opens and checks a file as [`open_regular_at`] does, and hands back the
/// open handle and what `fstat` said of it, for a caller that needs both
/// (the cache compares inodes before it removes an entry).
pub fn open_checked(
    dir: impl AsFd,
    path: &Path,
    limits: Limits,
) -> Result<(File, Metadata), PrivateFileError> {
    let mut flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    if limits.private {
        flags |= OFlags::NOFOLLOW;
    }
    let fd = rustix::fs::openat(dir, path, flags, Mode::empty()).map_err(|e| match e {
        Errno::NOENT => PrivateFileError::Missing,
        Errno::LOOP if limits.private => PrivateFileError::Symlink,
        e => PrivateFileError::Io {
            op: "open",
            err: e.into(),
        },
    })?;
    let file = File::from(fd);
    let meta = file
        .metadata()
        .map_err(|err| PrivateFileError::Io { op: "stat", err })?;
    if !meta.is_file() {
        return Err(PrivateFileError::NotRegular {
            kind: kind_of(&meta),
        });
    }
    if limits.private {
        check_owner_mode(&meta, 0o600)?;
    }
    if meta.len() > limits.max_bytes {
        return Err(PrivateFileError::TooLarge {
            max_bytes: limits.max_bytes,
        });
    }
    Ok((file, meta))
}

/// Reads at most `max_bytes` through an already checked handle; a file
/// that grew past the limit since `fstat` is refused too.
pub fn read_through(
    (file, meta): (File, Metadata),
    max_bytes: u64,
) -> Result<Vec<u8>, PrivateFileError> {
    let mut buf = Vec::with_capacity(meta.len().min(max_bytes) as usize);
    file.take(max_bytes + 1)
        .read_to_end(&mut buf)
        .map_err(|err| PrivateFileError::Io { op: "read", err })?;
    if buf.len() as u64 > max_bytes {
        return Err(PrivateFileError::TooLarge { max_bytes });
    }
    Ok(buf)
}

/// The user running pullcred must own it, and group and others have no
/// permission bits on it; `want` is the mode named in the refusal.
pub fn check_owner_mode(meta: &Metadata, want: u32) -> Result<(), PrivateFileError> {
    let euid = rustix::process::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(PrivateFileError::Owner {
            uid: meta.uid(),
            euid,
        });
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(PrivateFileError::Mode { mode, want });
    }
    Ok(())
}

/// Opens (creating it 0600) the lock file `name` in the directory `dir`:
/// never through a symlink, never blocking, and only a regular file.
/// Both lock users (cache entries, metrics counters) open theirs this way.
pub fn open_lock_at(dir: impl AsFd, name: &str) -> std::io::Result<(File, Metadata)> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDWR
            | OFlags::CREATE
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK
            | OFlags::CLOEXEC
            | OFlags::NOCTTY,
        Mode::from_raw_mode(0o600),
    )?;
    let file = File::from(fd);
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other(format!(
            "is {}, not a regular file",
            kind_of(&meta)
        )));
    }
    Ok((file, meta))
}

/// Takes `file`'s exclusive flock, polling with a doubling pause (from
/// `first_pause`, at most `max_pause`) for at most `wait`: `false` when it
/// is still held by someone else then. A lock never blocks past `wait`.
pub fn lock_within(
    file: &File,
    wait: std::time::Duration,
    first_pause: std::time::Duration,
    max_pause: std::time::Duration,
) -> std::io::Result<bool> {
    let start = std::time::Instant::now();
    let mut pause = first_pause;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        let waited = start.elapsed();
        if waited >= wait {
            return Ok(false);
        }
        std::thread::sleep(pause.min(wait - waited));
        pause = (pause * 2).min(max_pause);
    }
}

/// What a non-regular file is, in words.
pub fn kind_of(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_symlink() {
        "a symlink"
    } else if t.is_file() {
        "a regular file"
    } else {
        "of an unknown type"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pullcred-pf-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn private_file(dir: &Path, name: &str, body: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    const LIMIT: Limits = Limits::private(1024);

    #[test]
    fn reads_a_private_regular_file() {
        let d = tempdir("ok");
        let p = private_file(&d, "f", b"hello");
        assert_eq!(open_regular(&p, LIMIT).unwrap(), b"hello");
        assert_eq!(open_regular(&p, Limits::shared(5)).unwrap(), b"hello");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let d = tempdir("fifo");
        let p = d.join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &p, Mode::from_raw_mode(0o600)).unwrap();
        for limits in [LIMIT, Limits::shared(1024)] {
            let t = Instant::now();
            let e = open_regular(&p, limits).unwrap_err();
            assert!(t.elapsed() < Duration::from_secs(1));
            assert!(matches!(e, PrivateFileError::NotRegular { .. }), "{e}");
            assert_eq!(e.to_string(), "refused: is a FIFO, not a regular file");
            assert!(e.is_refusal());
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_device_and_a_directory_are_refused() {
        let e = open_regular(Path::new("/dev/zero"), Limits::shared(1024)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "refused: is a character device, not a regular file"
        );
        let e = open_regular(Path::new("/dev/zero"), LIMIT).unwrap_err();
        assert!(matches!(e, PrivateFileError::NotRegular { .. }), "{e}");
        let d = tempdir("dir");
        let e = open_regular(&d, LIMIT).unwrap_err();
        assert_eq!(e.to_string(), "refused: is a directory, not a regular file");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_private_symlink_is_refused_a_shared_one_followed() {
        let d = tempdir("link");
        let real = private_file(&d, "real", b"token");
        let link = d.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = open_regular(&link, LIMIT).unwrap_err();
        assert!(matches!(e, PrivateFileError::Symlink), "{e}");
        assert_eq!(e.to_string(), "refused: is a symlink");
        // a projected service-account token is a symlink into `..data`
        assert_eq!(open_regular(&link, Limits::shared(64)).unwrap(), b"token");
        // and a symlink to a FIFO is still refused
        let fifo = d.join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o600)).unwrap();
        let link2 = d.join("link2");
        std::os::unix::fs::symlink(&fifo, &link2).unwrap();
        let e = open_regular(&link2, Limits::shared(64)).unwrap_err();
        assert!(matches!(e, PrivateFileError::NotRegular { .. }), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn too_big_is_refused_unread() {
        let d = tempdir("big");
        let p = private_file(&d, "big", &[b'x'; 1025]);
        let e = open_regular(&p, LIMIT).unwrap_err();
        assert_eq!(e.to_string(), "larger than 1024 bytes");
        assert!(!e.is_refusal());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn open_modes_are_refused_for_private_files_only() {
        let d = tempdir("mode");
        let p = private_file(&d, "f", b"secret-content");
        for (mode, word) in [(0o644, "read"), (0o620, "write"), (0o610, "execute")] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = open_regular(&p, LIMIT).unwrap_err().to_string();
            assert!(e.contains(word) && e.contains("(want 0600)"), "{e}");
            assert!(!e.contains("secret-content"));
            assert!(open_regular(&p, Limits::shared(64)).is_ok());
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn another_owner_is_refused() {
        let euid = rustix::process::geteuid();
        let p = if euid.is_root() {
            let d = tempdir("owner");
            let p = private_file(&d, "f", b"x");
            rustix::fs::chown(&p, Some(rustix::process::Uid::from_raw(65534)), None).unwrap();
            p
        } else {
            // not root: a root-owned file stands in for another user's
            PathBuf::from("/etc/hostname")
        };
        let e = open_regular(&p, Limits::private(1 << 20)).unwrap_err();
        assert!(matches!(e, PrivateFileError::Owner { .. }), "{e}");
        assert!(e.to_string().contains("not by uid"), "{e}");
        if euid.is_root() {
            std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
        }
    }

    #[test]
    fn missing_is_its_own_case() {
        let e = open_regular(Path::new("/nonexistent/pullcred"), LIMIT).unwrap_err();
        assert!(matches!(e, PrivateFileError::Missing));
        assert!(!e.is_refusal());
    }
}
