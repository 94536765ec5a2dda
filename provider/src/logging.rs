//! Logs go to stderr, which the kubelet copies into its own log and events.
//!
//! The level comes from `PULLCRED_LOG` in the directive syntax of tracing's
//! `EnvFilter` (`debug`, `pullcred=trace`, `warn,pullcred::http=debug`),
//! default `warn`, so a healthy exec prints nothing. Lines look like the
//! `fmt` layer's without time or colour: `  WARN pullcred::run: message key=value`.
//!
//! The subscriber is our own, a few dozen lines: `tracing-subscriber`'s
//! registry alone allocated and wrote a 32 KiB slab table on every exec, an
//! eighth of a cache hit's page faults, for spans pullcred does not use.
//! Only pullcred's own events are ever printed. Third-party crates (the AWS
//! SDK, hyper, rustls) are silenced whatever the filter says: even their
//! warnings can carry a raw HTTP response, body included, in `Debug` form, and
//! a body can hold a token. What they report reaches the user through our own
//! error line instead.

use std::fmt::Write as _;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber, span};

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

/// A parsed `PULLCRED_LOG`: a default level and per-target levels.
#[derive(Debug, Clone, PartialEq)]
struct Filter {
    default: LevelFilter,
    /// (target prefix, level); the longest prefix matching a target decides.
    targets: Vec<(String, LevelFilter)>,
}

fn parse_level(s: &str) -> Option<LevelFilter> {
    Some(match s.to_ascii_lowercase().as_str() {
        "off" | "0" => LevelFilter::OFF,
        "error" | "1" => LevelFilter::ERROR,
        "warn" | "2" => LevelFilter::WARN,
        "info" | "3" => LevelFilter::INFO,
        "debug" | "4" => LevelFilter::DEBUG,
        "trace" | "5" => LevelFilter::TRACE,
        _ => return None,
    })
}

impl Filter {
    /// `EnvFilter`'s directives without span and field selectors, which
    /// pullcred's events do not carry: comma-separated `LEVEL`, `TARGET` (all
    /// levels) or `TARGET=LEVEL`. A target is a module path prefix.
    fn parse(spec: &str) -> Option<Filter> {
        let mut f = Filter {
            default: LevelFilter::OFF,
            targets: Vec::new(),
        };
        for d in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let (target, level) = match d.split_once('=') {
                Some((t, l)) => (t.trim(), parse_level(l.trim())?),
                None => match parse_level(d) {
                    Some(l) => {
                        f.default = l;
                        continue;
                    }
                    None => (d, LevelFilter::TRACE),
                },
            };
            let path_like = target.split("::").all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
            if !path_like {
                return None;
            }
            f.targets.push((target.to_string(), level));
        }
        Some(f)
    }

    fn level_for(&self, target: &str) -> LevelFilter {
        self.targets
            .iter()
            .filter(|(t, _)| {
                target
                    .strip_prefix(t.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
            })
            .max_by_key(|(t, _)| t.len())
            .map_or(self.default, |(_, l)| *l)
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        let t = meta.target();
        // Ours only, whatever the filter says (see the module comment).
        let ours = t.starts_with("pullcred") || t.starts_with("kubelet_config");
        ours && meta.is_event() && self.level_for(t) >= *meta.level()
    }

    fn max_level(&self) -> LevelFilter {
        self.targets
            .iter()
            .map(|(_, l)| *l)
            .fold(self.default, LevelFilter::max)
    }
}

/// Writes each enabled event as one line on stderr; keeps no spans.
struct Stderr(Filter);

impl Subscriber for Stderr {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.0.enabled(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        self.0.enabled(meta)
    }
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.0.max_level())
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
    fn event(&self, event: &Event<'_>) {
        let line = format_event(event);
        // One write: lines of concurrent threads do not interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// `LEVEL target: message key=value ...`, the message first.
fn format_event(event: &Event<'_>) -> String {
    struct Fields {
        message: String,
        rest: String,
    }
    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                let _ = write!(self.message, "{value:?}");
            } else {
                let _ = write!(self.rest, " {}={value:?}", field.name());
            }
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "message" {
                self.message.push_str(value);
            } else {
                let _ = write!(self.rest, " {}={value:?}", field.name());
            }
        }
    }
    let meta = event.metadata();
    let mut f = Fields {
        message: String::new(),
        rest: String::new(),
    };
    event.record(&mut f);
    let mut line = format!(
        "{:>5} {}: {}{}",
        meta.level(),
        meta.target(),
        f.message,
        f.rest
    );
    if line.len() > MAX_LINE * 4 {
        line = clip(&line, MAX_LINE * 4).into_owned();
    }
    line.push('\n');
    line
}

pub fn init() {
    let spec = std::env::var(ENV).unwrap_or_default();
    let (filter, bad) = if spec.trim().is_empty() {
        (None, false)
    } else {
        let f = Filter::parse(&spec);
        let bad = f.is_none();
        (f, bad)
    };
    let filter = filter.unwrap_or(Filter {
        default: LevelFilter::WARN,
        targets: Vec::new(),
    });
    let _ = tracing::subscriber::set_global_default(Stderr(filter));
    if bad {
        tracing::warn!(
            "{ENV}={:?} is not a valid filter; using \"warn\"",
            echo(&spec)
        );
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

    fn levels(spec: &str, target: &str) -> Option<LevelFilter> {
        Filter::parse(spec).map(|f| f.level_for(target))
    }

    #[test]
    fn filter_directives_follow_env_filter() {
        // A bare level applies to every target.
        assert_eq!(levels("debug", "pullcred::run"), Some(LevelFilter::DEBUG));
        assert_eq!(levels("WARN", "pullcred"), Some(LevelFilter::WARN));
        // TARGET=LEVEL; the longest matching module prefix decides.
        let spec = "warn,pullcred::http=trace,pullcred=info";
        assert_eq!(levels(spec, "pullcred::http"), Some(LevelFilter::TRACE));
        assert_eq!(
            levels(spec, "pullcred::http::retry"),
            Some(LevelFilter::TRACE)
        );
        assert_eq!(levels(spec, "pullcred::httpx"), Some(LevelFilter::INFO));
        assert_eq!(levels(spec, "pullcred::run"), Some(LevelFilter::INFO));
        assert_eq!(levels(spec, "kubelet_config"), Some(LevelFilter::WARN));
        // A bare target means all its levels; other targets are off.
        assert_eq!(
            levels("pullcred::cache", "pullcred::cache"),
            Some(LevelFilter::TRACE)
        );
        assert_eq!(
            levels("pullcred::cache", "pullcred::run"),
            Some(LevelFilter::OFF)
        );
        assert_eq!(
            levels("pullcred=4", "pullcred::run"),
            Some(LevelFilter::DEBUG)
        );
        assert_eq!(levels(" debug , ", "pullcred"), Some(LevelFilter::DEBUG));
        // Not a filter: the caller falls back to "warn" and says so.
        for bad in [
            "pullcred=loud",
            "pullcred[span]=debug",
            "a b",
            "=debug",
            "pullcred::=debug",
        ] {
            assert_eq!(Filter::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn third_party_events_are_never_enabled() {
        static AWS: tracing::callsite::DefaultCallsite =
            tracing::callsite::DefaultCallsite::new(&AWS_META);
        static AWS_META: Metadata<'static> = tracing::metadata!(
            name: "x",
            target: "aws_smithy_runtime::client",
            level: tracing::Level::ERROR,
            fields: &[],
            callsite: &AWS,
            kind: tracing::metadata::Kind::EVENT,
        );
        let all = Filter::parse("trace").unwrap();
        assert!(!all.enabled(&AWS_META));
        assert_eq!(all.max_level(), LevelFilter::TRACE);
    }
}
