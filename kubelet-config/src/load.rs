//! Reading the config flag's target: one file, or (since Kubernetes 1.34) a
//! directory of them.
//!
//! Directory mode follows the kubelet (`readCredentialProviderConfig` in
//! pkg/credentialprovider/plugin/config.go): entries whose Go
//! `filepath.Ext` is `.json`, `.yaml` or `.yml` (case-sensitive, so a file
//! named exactly `.json` counts and `a.YAML` does not) and that are not
//! directories (a subdirectory named `sub.yaml` is skipped; as Go's
//! `DirEntry.IsDir`, a symlink is not a directory here), in lexicographic
//! order of their names; no such entry is an error. Entries are not recursed
//! into, so a symlink loop cannot make us spin: opening it fails at once
//! (`ELOOP`) and is reported for that entry, the other files still read.
//!
//! Files larger than [`MAX_FILE_BYTES`] (16 MiB) are refused before reading:
//! a kubelet config is a few kilobytes, and a huge file is a mistake (or a
//! device). Anything up to that size, such as a 10 MB file, is read.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The largest config file read.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The file name extensions the kubelet reads in directory mode.
pub const DIR_EXTENSIONS: [&str; 3] = ["json", "yaml", "yml"];

/// Why a path could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError {
    Io { path: PathBuf, source: io::Error },
    SymlinkLoop { path: PathBuf },
    TooLarge { path: PathBuf, size: u64 },
    NotAFile { path: PathBuf },
    NotUtf8 { path: PathBuf },
    EmptyDir { path: PathBuf },
}

impl LoadError {
    pub fn path(&self) -> &Path {
        match self {
            LoadError::Io { path, .. }
            | LoadError::SymlinkLoop { path }
            | LoadError::TooLarge { path, .. }
            | LoadError::NotAFile { path }
            | LoadError::NotUtf8 { path }
            | LoadError::EmptyDir { path } => path,
        }
    }

    /// The reason, without the path.
    pub fn reason(&self) -> String {
        match self {
            LoadError::Io { source, .. } => format!("cannot read: {source}"),
            LoadError::SymlinkLoop { .. } => "symlink loop (too many levels of symbolic links)".to_string(),
            LoadError::TooLarge { size, .. } => {
                format!("file is {size} bytes, over the {MAX_FILE_BYTES}-byte (16 MiB) limit")
            }
            LoadError::NotAFile { .. } => "not a regular file".to_string(),
            LoadError::NotUtf8 { .. } => "not UTF-8 text".to_string(),
            LoadError::EmptyDir { .. } => {
                "no *.json, *.yaml or *.yml file in the directory (the kubelet refuses an empty config directory)"
                    .to_string()
            }
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path().display(), self.reason())
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_error(path: &Path, source: io::Error) -> LoadError {
    // ELOOP: 40 on Linux, 62 on the BSDs and macOS.
    let is_loop = matches!(source.raw_os_error(), Some(40) if cfg!(target_os = "linux"))
        || matches!(source.raw_os_error(), Some(62) if cfg!(any(target_os = "macos", target_os = "freebsd")));
    if is_loop {
        LoadError::SymlinkLoop {
            path: path.to_path_buf(),
        }
    } else {
        LoadError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Reads one config file as text (a leading BOM dropped).
pub fn read_text(path: &Path) -> Result<String, LoadError> {
    let meta = fs::metadata(path).map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Err(LoadError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
        });
    }
    let file = fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow between stat and read: never read past the limit.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
        });
    }
    let mut text = String::from_utf8(bytes).map_err(|_| LoadError::NotUtf8 {
        path: path.to_path_buf(),
    })?;
    if text.starts_with('\u{feff}') {
        text.drain(..3);
    }
    Ok(text)
}

/// Go's `filepath.Ext` of a file name, without its dot: what follows the
/// last `.` (`.json` gives `json`; `a.tar.yaml` gives `yaml`).
fn go_ext(name: &[u8]) -> Option<&[u8]> {
    let dot = name.iter().rposition(|&b| b == b'.')?;
    Some(&name[dot + 1..])
}

/// What the config flag names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    File,
    Directory,
}

/// The files to read for a path: itself, or the matching entries of the
/// directory in the kubelet's order.
pub fn config_files(path: &Path) -> Result<(Mode, Vec<PathBuf>), LoadError> {
    let meta = fs::metadata(path).map_err(|e| io_error(path, e))?;
    if !meta.is_dir() {
        return Ok((Mode::File, vec![path.to_path_buf()]));
    }
    let mut names = Vec::new();
    for entry in fs::read_dir(path).map_err(|e| io_error(path, e))? {
        let entry = entry.map_err(|e| io_error(path, e))?;
        let name = entry.file_name();
        let wanted = go_ext(name.as_encoded_bytes())
            .is_some_and(|e| DIR_EXTENSIONS.iter().any(|x| x.as_bytes() == e));
        // Not followed: a symlink to a directory is kept (and then fails to
        // read, as in the kubelet).
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if wanted && !is_dir {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err(LoadError::EmptyDir {
            path: path.to_path_buf(),
        });
    }
    // Byte-wise order of the names, as Go's os.ReadDir.
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    Ok((
        Mode::Directory,
        names.into_iter().map(|n| path.join(n)).collect(),
    ))
}
/// The kubelet config files `files` (from [`config_files`]), each read and
/// decoded strictly as the kubelet would, in order: the configs that
/// decoded, and one line (`FILE: why`) for each file that did not.
pub fn decode_each(
    files: &[PathBuf],
) -> (
    Vec<(PathBuf, crate::config::CredentialProviderConfig)>,
    Vec<String>,
) {
    let mut configs = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        match read_text(file)
            .map_err(|e| e.reason())
            .and_then(|text| crate::config::decode_strict(&text))
        {
            Ok(c) => configs.push((file.clone(), c)),
            Err(e) => problems.push(format!("{}: {e}", file.display())),
        }
    }
    (configs, problems)
}
