//! What the CLI integration tests share: run the `config`/`match` entry
//! point in process, and write plugin scripts.

#![allow(dead_code)] // each test binary uses its own subset

use std::ffi::OsString;
use std::fs;
use std::path::Path;

use kubelet_config::cli::run_with;

pub struct Run {
    pub code: i32,
    pub out: String,
    pub err: String,
}

/// `pullcred config|match ...`, in process, with its exit code and output.
pub fn run(args: &[&str]) -> Run {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_with(args, &mut out, &mut err);
    Run {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// An executable `/bin/sh` script at `path`.
pub fn write_script(path: &Path, body: &str) {
    fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }
}
