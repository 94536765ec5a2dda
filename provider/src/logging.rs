//! Logs go to stderr, which the kubelet copies into its own log and events.
//!
//! The level comes from `PULLCRED_LOG` in tracing's filter syntax (`debug`,
//! `pullcred=trace`, ...), default `warn`, so a healthy exec prints nothing.
//! Only pullcred's own events are ever printed. Third-party crates (the AWS
//! SDK, hyper, rustls) are silenced whatever the filter says: even their
//! warnings can carry a raw HTTP response, body included, in `Debug` form, and
//! a body can hold a token. What they report reaches the user through our own
//! error line instead.

use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::prelude::*;

pub const ENV: &str = "PULLCRED_LOG";

/// The most of any one piece of request text (an annotation, a claim, a
/// host) that a log or error line repeats.
pub const MAX_ECHO: usize = 200;
/// The longest error line pullcred prints, whatever it holds.
pub const MAX_LINE: usize = 1024;

/// `s` cut to `max` characters, saying how much was left out: a pod author's
/// megabyte annotation must not become a megabyte line in the kubelet's log.
pub fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => std::borrow::Cow::Borrowed(s),
        Some((i, _)) => {
            std::borrow::Cow::Owned(format!("{}...({} more bytes)", &s[..i], s.len() - i))
        }
    }
}

/// [`clip`] at [`MAX_ECHO`], for request text inside a line.
pub fn echo(s: &str) -> std::borrow::Cow<'_, str> {
    clip(s, MAX_ECHO)
}

pub fn init() {
    let spec = std::env::var(ENV).unwrap_or_default();
    let spec = if spec.trim().is_empty() {
        "warn".to_string()
    } else {
        spec
    };
    let (filter, bad) = match EnvFilter::try_new(&spec) {
        Ok(f) => (f, false),
        Err(_) => (EnvFilter::new("warn"), true),
    };
    let ours = filter_fn(|meta| {
        let t = meta.target();
        t.starts_with("pullcred") || t.starts_with("kubelet_config")
    });
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_target(true)
        .with_filter(filter.and(ours));
    let _ = tracing_subscriber::registry().with(layer).try_init();
    if bad {
        tracing::warn!("{ENV}={spec:?} is not a valid filter; using \"warn\"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_text_and_cuts_long_text_on_a_char_boundary() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "abc...(1 more bytes)");
        assert_eq!(clip("ééé", 1), "é...(4 more bytes)");
        let long = "x".repeat(1 << 20);
        assert!(echo(&long).len() < MAX_ECHO + 40);
    }
}
