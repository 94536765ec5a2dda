//! The moment of answering: exit codes, the watchdog and the one write of
//! the response, in one place. The watchdog ends the process when the
//! deadline has passed, unless the response is being written: the only
//! process-global state besides start-up settings, and private to this file.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Usage errors (bad flags, a terminal on stdin): exit 2.
pub const USAGE: u8 = 2;

/// Set once the response is being written, so the watchdog never cuts it.
static RESPONDING: AtomicBool = AtomicBool::new(false);

/// Starts a thread that ends the process one second after `timeout`, so no
/// bug, blocking file, stuck DNS lookup or stopped lock holder can hang the
/// kubelet's pull. Started once per process, before the first wait (the
/// cache lock, the network); the hit path before it cannot block.
pub fn start_watchdog(timeout: Duration) {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    let budget = timeout.min(crate::deadline::MAX) + Duration::from_secs(1);
    let spawned = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            std::thread::sleep(budget);
            if !RESPONDING.load(Ordering::SeqCst) {
                eprintln!(
                    "pullcred: deadline of {}s exceeded; giving up",
                    budget.as_secs()
                );
                std::process::exit(1);
            }
        });
    if let Err(e) = spawned {
        tracing::debug!("no watchdog thread: {e}");
    }
}

/// Writes the response JSON and a newline to stdout; from here on the
/// watchdog does not cut the run. Exit 0, or 1 if stdout fails.
///
/// Straight to the descriptor: `std::io::stdout()` would first allocate
/// its line buffer, for one write.
pub fn respond(json: &str) -> ExitCode {
    RESPONDING.store(true, Ordering::SeqCst);
    let out = rustix::stdio::stdout();
    match write_all(out, json.as_bytes()).and_then(|()| write_all(out, b"\n")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format_args!("writing the response to stdout: {e}")),
    }
}

fn write_all(fd: std::os::fd::BorrowedFd<'_>, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// One line on stderr, nothing on stdout, exit 1.
pub fn fail(line: impl std::fmt::Display) -> ExitCode {
    eprintln!("pullcred: {line}");
    ExitCode::FAILURE
}

/// What a command-line parse error becomes: `--help` and `--version` print
/// and exit 0; anything else is one line (the first of clap's message, after
/// `prefix`), like every other error, since the kubelet logs it as is: exit 2.
pub fn parse_error(e: &clap::Error, prefix: &str) -> ExitCode {
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("invalid arguments");
    usage(format_args!(
        "{prefix}{}",
        first.trim_start_matches("error: ")
    ))
}

/// One line on stderr, exit 2.
pub fn usage(line: impl std::fmt::Display) -> ExitCode {
    eprintln!("pullcred: {line}");
    ExitCode::from(USAGE)
}
