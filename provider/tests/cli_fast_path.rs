//! The kubelet's invocation is parsed without clap (`cli::fast`, for the
//! cost of a cache hit); clap parses everything else. Where the fast path
//! answers, it must give exactly what clap gives: same flags, same
//! variables, same delimiters, same defaults, same value checks.
//!
//! clap reads the process environment, so each case runs in a child: this
//! test binary again, with the case's environment, running `one_case`.

use std::ffi::OsString;

const VARS: &[&str] = &[
    "PULLCRED_CACHE_DIR",
    "PULLCRED_NO_CACHE",
    "PULLCRED_DOCKER_CONFIG",
    "PULLCRED_AWS_SECRETS",
    "PULLCRED_STATIC_CACHE_DURATION",
    "PULLCRED_NO_REGISTRY_CHECK",
    "PULLCRED_TIMEOUT",
    "PULLCRED_MIRRORS",
    "PULLCRED_ACR_MIRRORS",
    "PULLCRED_AZURE_CONFIG",
    "PULLCRED_SERVICE_ACCOUNT_FALLBACK",
    "AWS_ECR_ROLE_ARN",
    "PULLCRED_ACCEPT_IRSA_ROLE_ARN",
    "PULLCRED_GOOGLE_AUDIENCE",
    "PULLCRED_GOOGLE_SERVICE_ACCOUNT",
    "PULLCRED_REFRESH_JITTER",
    "PULLCRED_CONFIG",
    "PULLCRED_METRICS_FILE",
];

/// (arguments, environment, whether the fast path must answer).
type Case = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    bool,
);

const ROLE: &str = "arn:aws:iam::123456789012:role/puller";

const CASES: &[Case] = &[
    // What kubelet configs pass: nothing, a few flags, variables.
    (&[], &[], true),
    (&["--cache-dir", "/run/pc", "--timeout", "30s"], &[], true),
    (
        &["--cache-dir=/run/pc", "--no-cache", "--no-registry-check"],
        &[],
        true,
    ),
    (
        &[],
        &[("PULLCRED_NO_CACHE", "false"), ("PULLCRED_TIMEOUT", "5s")],
        true,
    ),
    (
        &[],
        &[
            ("PULLCRED_NO_CACHE", "yes"),
            ("PULLCRED_NO_REGISTRY_CHECK", "On"),
        ],
        true,
    ),
    (
        &[
            "--docker-config",
            "/etc/a.json:/etc/b.json",
            "--docker-config",
            "/etc/c.json",
        ],
        &[],
        true,
    ),
    (
        &[],
        &[("PULLCRED_DOCKER_CONFIG", "/etc/a.json:/etc/b.json")],
        true,
    ),
    (&["--timeout", "7s"], &[("PULLCRED_TIMEOUT", "5s")], true),
    (
        &["--aws-secret", "r.example=sec1,q.example=sec2"],
        &[],
        true,
    ),
    (&[], &[("PULLCRED_AWS_SECRETS", "r.example=sec1")], true),
    (
        &[
            "--mirror",
            "docker.io=123456789012.dkr.ecr.us-east-1.amazonaws.com/hub",
        ],
        &[],
        true,
    ),
    (
        &[],
        &[(
            "PULLCRED_MIRRORS",
            "docker.io=123456789012.dkr.ecr.us-east-1.amazonaws.com/hub,,",
        )],
        true,
    ),
    (
        &[],
        &[("PULLCRED_ACR_MIRRORS", "docker.io=x.azurecr.io/hub")],
        true,
    ),
    (
        &[
            "--service-account-fallback",
            "node",
            "--accept-irsa-role-annotation",
        ],
        &[],
        true,
    ),
    (&["--ecr-role-arn", ROLE], &[], true),
    (
        &[],
        &[
            ("AWS_ECR_ROLE_ARN", ROLE),
            ("PULLCRED_SERVICE_ACCOUNT_FALLBACK", "none"),
        ],
        true,
    ),
    (
        &[
            "--google-audience",
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k",
            "--google-service-account=sa@p.iam.gserviceaccount.com",
        ],
        &[],
        true,
    ),
    (
        &["--refresh-jitter", "0.5", "--static-cache-duration", "90s"],
        &[("PULLCRED_REFRESH_JITTER", "0")],
        true,
    ),
    (
        &[
            "--config",
            "/etc/pullcred/config.yaml",
            "--metrics-file",
            "/var/lib/ne/pullcred.prom",
        ],
        &[],
        true,
    ),
    (
        &["--azure-config", "none"],
        &[("PULLCRED_STATIC_CACHE_DURATION", "720m")],
        true,
    ),
    // Left to clap: subcommands, help, odd or wrong input.
    (&["get-credentials"], &[], false),
    (&["--help"], &[], false),
    (&["--version"], &[], false),
    (&["--cache-dir"], &[], false),
    (&["--cache-dir", "/a", "--cache-dir", "/b"], &[], false),
    (&["--no-cache=true"], &[], false),
    (&["--no-cache", "--no-cache"], &[], false),
    (&["--timeout", "99s"], &[], false),
    (&[], &[("PULLCRED_TIMEOUT", "0s")], false),
    (&[], &[("PULLCRED_NO_CACHE", "maybe")], false),
    (&[], &[("PULLCRED_CACHE_DIR", "")], false),
    (&["--mirror", "nonsense"], &[], false),
    (&["--service-account-fallback", "NODE"], &[], false),
    (&["--ecr-role-arn", "not-an-arn"], &[], false),
    (&[], &[("PULLCRED_REFRESH_JITTER", "2")], false),
    (&["--docker-config", "/etc/a.json::/etc/b.json"], &[], false),
    (&["--cache-dir", "-x"], &[], false),
    (&["--unknown"], &[], false),
    (&["-h"], &[], false),
    (&["--", "--cache-dir", "/x"], &[], false),
    (&["doctor", "registry.example/app:1"], &[], false),
];

const CASE_VAR: &str = "PULLCRED_TEST_FAST_PATH_CASE";

#[test]
fn the_fast_path_agrees_with_clap() {
    // The table names exactly clap's global flags, in order, with the same
    // variables and kinds.
    let (ours, clap) = pullcred::cli::fast_path_tables();
    assert_eq!(ours, clap);

    let me = std::env::current_exe().unwrap();
    for (i, (args, env, _)) in CASES.iter().enumerate() {
        let mut child = std::process::Command::new(&me);
        child.args(["--exact", "one_case", "--nocapture", "--test-threads=1"]);
        for v in VARS {
            child.env_remove(v);
        }
        child.envs(env.iter().copied()).env(CASE_VAR, i.to_string());
        let out = child.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("case checked"),
            "args {args:?} env {env:?}:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// One case, in a child started by the test above; nothing otherwise.
#[test]
fn one_case() {
    let Some(i) = std::env::var(CASE_VAR)
        .ok()
        .and_then(|i| i.parse::<usize>().ok())
    else {
        return;
    };
    let (args, _, must_answer) = CASES[i];
    let argv: Vec<OsString> = std::iter::once("pullcred")
        .chain(args.iter().copied())
        .map(OsString::from)
        .collect();
    let (fast, clap) = pullcred::cli::fast_path_check(&argv);
    assert_eq!(
        fast.is_some(),
        must_answer,
        "fast path {fast:?}, clap {clap:?}"
    );
    if let Some(f) = fast {
        assert_eq!(Ok(f), clap);
    }
    println!("case checked");
}
