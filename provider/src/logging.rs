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
