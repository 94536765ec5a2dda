//! `pullcred config ...` and `pullcred match ...` (work in progress).

use std::ffi::OsString;

/// Runs `config ...` or `match ...`; `args` are everything after the program
/// name. Prints reports to stdout and errors to stderr; returns the exit code
/// (0 ok, 1 findings or errors, 2 usage).
pub fn run(args: Vec<OsString>) -> i32 {
    let _ = args;
    eprintln!("pullcred: config and match subcommands are not built yet");
    2
}
