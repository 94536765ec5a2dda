//! [`Counters`] as the Prometheus text exposition format (version 0.0.4,
//! <https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format>):
//! `# HELP` and `# TYPE` before each family, one sample a line, label values
//! quoted with `\\`, `"` and newline escaped, `+Inf` for the last bucket.
//! No timestamps: node_exporter's textfile collector refuses them.
//!
//! A pure function of the counters and `now`.

use std::fmt::Write;

use super::counters::{BUCKETS, Counters, ErrorClass, Outcome, UpstreamResult};

/// The metrics file's text.
pub fn render(c: &Counters, now: i64) -> String {
    let mut out = String::with_capacity(4096);
    let w = &mut out;

    family(
        w,
        "pullcred_execs_total",
        "counter",
        "Credential requests pullcred answered or failed, by outcome (hit, miss, stale_served, error).",
    );
    for o in Outcome::ALL {
        let n = c.execs.get(o.name()).copied().unwrap_or(0);
        sample(w, "pullcred_execs_total", &[("outcome", o.name())], n);
    }

    family(
        w,
        "pullcred_upstream_calls_total",
        "counter",
        "Fetches from a source (each with the source's own retries inside), by source and result class (ok, refused, throttled, 5xx, network, other, config).",
    );
    for (source, results) in &c.upstream {
        for r in UpstreamResult::ALL {
            let n = results.get(r.name()).copied().unwrap_or(0);
            sample(
                w,
                "pullcred_upstream_calls_total",
                &[("source", source), ("result", r.name())],
                n,
            );
        }
    }

    family(
        w,
        "pullcred_exec_duration_seconds",
        "histogram",
        "Time from the start of an exec to its answer or error, in seconds.",
    );
    let h = &c.duration;
    for (bound, n) in BUCKETS.iter().zip(h.cumulative()) {
        sample(
            w,
            "pullcred_exec_duration_seconds_bucket",
            &[("le", &float(*bound))],
            n,
        );
    }
    sample(
        w,
        "pullcred_exec_duration_seconds_bucket",
        &[("le", "+Inf")],
        h.count,
    );
    sample(w, "pullcred_exec_duration_seconds_sum", &[], float(h.sum));
    sample(w, "pullcred_exec_duration_seconds_count", &[], h.count);

    let earliest = c.earliest_expiry();
    family(
        w,
        "pullcred_token_expiry_seconds",
        "gauge",
        "Seconds from when this file was written until the earliest expiry of the source's tokens pullcred stored in its cache and that had not expired.",
    );
    for (source, at) in &earliest {
        sample(
            w,
            "pullcred_token_expiry_seconds",
            &[("source", source)],
            at - now,
        );
    }
    family(
        w,
        "pullcred_token_expiry_timestamp_seconds",
        "gauge",
        "Unix time of the earliest expiry of the source's cached tokens (compare with time(): the file is rewritten only when pullcred runs).",
    );
    for (source, at) in &earliest {
        sample(
            w,
            "pullcred_token_expiry_timestamp_seconds",
            &[("source", source)],
            at,
        );
    }

    family(
        w,
        "pullcred_last_error_timestamp_seconds",
        "gauge",
        "Unix time of the last failed fetch from the source, by class (refused, unavailable, config).",
    );
    for (source, classes) in &c.last_error {
        for class in ErrorClass::ALL {
            if let Some(at) = classes.get(class.name()) {
                sample(
                    w,
                    "pullcred_last_error_timestamp_seconds",
                    &[("source", source), ("class", class.name())],
                    at,
                );
            }
        }
    }

    family(
        w,
        "pullcred_metrics_resets_total",
        "counter",
        "Times the counters file in the cache directory was unusable (corrupt, another format, wrong owner or mode) and the counters started again from zero.",
    );
    sample(w, "pullcred_metrics_resets_total", &[], c.resets);
    family(
        w,
        "pullcred_metrics_deferred_total",
        "counter",
        "Execs whose counter update found the counters lock busy, was left as a pending file and was added by a later exec.",
    );
    sample(w, "pullcred_metrics_deferred_total", &[], c.deferred);
    out
}

fn family(w: &mut String, name: &str, kind: &str, help: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(w, "# HELP {name} {help}");
    let _ = writeln!(w, "# TYPE {name} {kind}");
}

fn sample(w: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    w.push_str(name);
    if !labels.is_empty() {
        w.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                w.push(',');
            }
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = write!(w, "{k}=\"{v}\"");
        }
        w.push('}');
    }
    let _ = writeln!(w, " {value}");
}

/// A float as Go's `strconv.FormatFloat(f, 'g', -1, 64)` would accept it
/// back: Rust's shortest round-trip form, never an exponent.
fn float(f: f64) -> String {
    if f.is_finite() {
        format!("{f}")
    } else {
        "0".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::super::counters::{Fetch, Observation, Stored};
    use super::*;

    #[test]
    fn renders_every_family_with_help_and_type() {
        let mut c = Counters::default();
        c.apply(&Observation {
            outcome: Outcome::Miss,
            duration_secs: 0.2,
            at: 100,
            fetches: vec![Fetch {
                source: "ecr".into(),
                result: UpstreamResult::Throttled,
                error: Some(ErrorClass::Unavailable),
            }],
            stored: vec![Stored {
                source: "ecr".into(),
                key: "0123456789abcdef".into(),
                expires_at: 4_000,
            }],
        });
        let text = render(&c, 400);
        for line in [
            "# TYPE pullcred_execs_total counter",
            "pullcred_execs_total{outcome=\"miss\"} 1",
            "pullcred_execs_total{outcome=\"hit\"} 0",
            "pullcred_upstream_calls_total{source=\"ecr\",result=\"throttled\"} 1",
            "pullcred_upstream_calls_total{source=\"ecr\",result=\"5xx\"} 0",
            "# TYPE pullcred_exec_duration_seconds histogram",
            "pullcred_exec_duration_seconds_bucket{le=\"0.001\"} 0",
            "pullcred_exec_duration_seconds_bucket{le=\"0.25\"} 1",
            "pullcred_exec_duration_seconds_bucket{le=\"+Inf\"} 1",
            "pullcred_exec_duration_seconds_sum 0.2",
            "pullcred_exec_duration_seconds_count 1",
            "pullcred_token_expiry_seconds{source=\"ecr\"} 3600",
            "pullcred_token_expiry_timestamp_seconds{source=\"ecr\"} 4000",
            "pullcred_last_error_timestamp_seconds{source=\"ecr\",class=\"unavailable\"} 100",
            "pullcred_metrics_resets_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        // every sample's family has HELP and TYPE before it
        let mut typed = Vec::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                typed.push(rest.split(' ').next().unwrap().to_string());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(typed.iter().any(|t| name.starts_with(t.as_str())), "{l}");
            }
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut w = String::new();
        sample(&mut w, "m", &[("a", "x\"y\\z\nw")], 1);
        assert_eq!(w, "m{a=\"x\\\"y\\\\z\\nw\"} 1\n");
        assert_eq!(float(0.0025), "0.0025");
        assert_eq!(float(30.0), "30");
    }
}
