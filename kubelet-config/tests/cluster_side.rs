//! `config generate` for the cluster side of KEP-4412: the RBAC that lets
//! the kubelets request service-account tokens for an audience, the keyless
//! sources (vault, exchange) and EKS Pod Identity, and the pullcred config
//! skeleton they read. Golden files in tests/cluster_side/; regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p kubelet-config --test cluster_side`.

mod common;

use std::path::PathBuf;

use common::{Run, p, run};
use kubelet_config::validate::{ValidateOptions, validate_text};

fn golden(name: &str, have: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cluster_side")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, have).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        have, want,
        "{name} differs; regenerate with UPDATE_GOLDEN=1 cargo test -p kubelet-config --test cluster_side"
    );
}

/// The kubelet's validation of a generated config: no findings at all.
fn validates_cleanly(text: &str) {
    let (decoded, findings) = validate_text(text, &ValidateOptions::default());
    assert!(decoded.is_some(), "{text}");
    assert!(findings.is_empty(), "{findings:#?}\n{text}");
}

/// A pullcred config as `pullcred config validate` sees it: no errors, no
/// warnings, mode 0600.
fn pullcred_config_validates(path: &std::path::Path) {
    let r = run(&["config", "validate", p(path)]);
    assert_eq!(r.code, 0, "{}\n{}", r.out, r.err);
    assert!(r.out.contains("0 error(s), 0 warning(s)"), "{}", r.out);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

/// `config generate ARGS --pullcred-config-out FILE` in a fresh directory:
/// exit 0; the kubelet config validates cleanly and matches golden
/// `kubelet`; the pullcred config validates and matches golden `pullcred`.
/// Returns the run and the directory, which holds the file while it lives.
fn generate_with_pullcred_config(
    args: &[&str],
    kubelet: &str,
    pullcred: &str,
) -> (Run, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("pullcred.yaml");
    let mut all = vec!["config", "generate"];
    all.extend_from_slice(args);
    all.extend(["--pullcred-config-out", p(&cfg)]);
    let r = run(&all);
    assert_eq!(r.code, 0, "{}", r.err);
    validates_cleanly(&r.out);
    golden(kubelet, &r.out);
    golden(pullcred, &std::fs::read_to_string(&cfg).unwrap());
    pullcred_config_validates(&cfg);
    (r, dir)
}

#[test]
fn token_audience_writes_the_node_rbac() {
    // Given a generic registry whose tokens carry the audience registry.example.com
    let dir = tempfile::tempdir().unwrap();
    let rbac = dir.path().join("rbac.yaml");
    // When generate runs with --rbac-out
    let r = run(&[
        "config",
        "generate",
        "--cloud",
        "generic",
        "--registry",
        "registry.example.com",
        "--token-audience",
        "registry.example.com",
        "--rbac-out",
        p(&rbac),
    ]);
    // Then the kubelet config is unchanged by it and validates, and the RBAC
    // is a ClusterRole + ClusterRoleBinding for group system:nodes
    assert_eq!(r.code, 0, "{}", r.err);
    validates_cleanly(&r.out);
    assert!(!r.out.contains("request-serviceaccounts-token-audience"));
    assert!(r.err.is_empty(), "{}", r.err);
    let text = std::fs::read_to_string(&rbac).unwrap();
    golden("rbac-cluster.yaml", &text);
    // Without --rbac-out, a note says what is missing (stderr only).
    let r = run(&[
        "config",
        "generate",
        "--cloud",
        "generic",
        "--registry",
        "registry.example.com",
        "--token-audience",
        "registry.example.com",
    ]);
    assert_eq!(r.code, 0);
    assert!(r.err.contains("--rbac-out"), "{}", r.err);
    validates_cleanly(&r.out);
}

#[test]
fn rbac_restricted_to_service_accounts_is_namespaced() {
    let dir = tempfile::tempdir().unwrap();
    let rbac = dir.path().join("rbac.yaml");
    let r = run(&[
        "config",
        "generate",
        "--cloud",
        "azure",
        "--token-audience",
        "api://AzureADTokenExchange",
        "--rbac-out",
        p(&rbac),
        "--rbac-service-account",
        "team-b/puller",
        "--rbac-service-account",
        "team-a/z-builder",
        "--rbac-service-account",
        "team-a/builder",
        "--rbac-service-account",
        "team-a/builder",
    ]);
    assert_eq!(r.code, 0, "{}", r.err);
    golden(
        "rbac-service-accounts.yaml",
        &std::fs::read_to_string(&rbac).unwrap(),
    );
    for bad in ["puller", "Team/x", "a/b/c", "/x", "ns/"] {
        let r = run(&[
            "config",
            "generate",
            "--cloud",
            "aws",
            "--token-audience",
            "a",
            "--rbac-out",
            p(&rbac),
            "--rbac-service-account",
            bad,
        ]);
        assert_eq!(r.code, 2, "{bad}");
        assert!(r.err.contains("NAMESPACE/NAME"), "{bad}: {}", r.err);
    }
    // --rbac-out needs a token audience (clap's usage error).
    let r = run(&[
        "config",
        "generate",
        "--cloud",
        "aws",
        "--rbac-out",
        p(&rbac),
    ]);
    assert_eq!(r.code, 2);
}

#[test]
fn eks_pod_identity() {
    // Given the EKS Pod Identity audience for ECR
    let (r, _dir) = generate_with_pullcred_config(
        &[
            "--cloud",
            "aws",
            "--token-audience",
            "pods.eks.amazonaws.com",
        ],
        "eks-pod-identity.yaml",
        "eks-pod-identity.pullcred.yaml",
    );
    // Then tokenAttributes carry that audience, cacheType ServiceAccount,
    // the ECR globs, and the entry reads the pullcred config
    assert!(
        r.out
            .contains("serviceAccountTokenAudience: \"pods.eks.amazonaws.com\"")
    );
    assert!(r.out.contains("cacheType: \"ServiceAccount\""));
    assert!(r.out.contains("\"*.dkr.ecr.*.amazonaws.com\""));
    assert!(
        r.out
            .contains("- \"--config\"\n      - \"/etc/pullcred/config.yaml\"")
    );
}

#[test]
fn vault() {
    let (r, _dir) = generate_with_pullcred_config(
        &[
            "--cloud",
            "vault",
            "--registry",
            "registry.example.com",
            "--registry",
            "harbor.example.com:8443/team",
            "--token-audience",
            "vault",
        ],
        "vault.yaml",
        "vault.pullcred.yaml",
    );
    assert!(r.out.contains("requireServiceAccount: true"));
    assert!(r.out.contains("\"pullcred.dev/vault-role\""));
    // The header's command line gives the same config back.
    let line = r
        .out
        .lines()
        .next()
        .unwrap()
        .strip_prefix("# Generated by: pullcred ")
        .unwrap();
    let args: Vec<&str> = line.split(' ').collect();
    let again = run(&args);
    assert_eq!(again.out, r.out);
}

#[test]
fn exchange_with_a_cloud() {
    generate_with_pullcred_config(
        &[
            "--cloud",
            "exchange,gcp",
            "--registry",
            "example.jfrog.io",
            "--token-audience",
            "https://example.jfrog.io",
        ],
        "exchange-gcp.yaml",
        "exchange.pullcred.yaml",
    );
    // The note says where the config goes when no file is asked for.
    let r = run(&[
        "config",
        "generate",
        "--cloud",
        "exchange",
        "--registry",
        "example.jfrog.io",
        "--token-audience",
        "a",
    ]);
    assert!(r.err.contains("--pullcred-config-out"), "{}", r.err);
}

#[test]
fn keyless_needs_what_it_uses() {
    for (args, want) in [
        (
            &["--cloud", "vault", "--registry", "r.example.com"][..],
            "needs --token-audience",
        ),
        (
            &["--cloud", "vault", "--token-audience", "a"][..],
            "needs at least one --registry",
        ),
        (
            &[
                "--cloud",
                "vault,generic",
                "--registry",
                "r.example.com",
                "--token-audience",
                "a",
            ][..],
            "generic and vault",
        ),
        (
            &[
                "--cloud",
                "vault,exchange",
                "--registry",
                "r.example.com",
                "--token-audience",
                "a",
            ][..],
            "vault and exchange",
        ),
        (&["--cloud", "nosuch"][..], "vault, exchange"),
        (
            &["--cloud", "gcp", "--pullcred-config-out", "/nonexistent/x"][..],
            "need no pullcred config",
        ),
    ] {
        let mut all = vec!["config", "generate"];
        all.extend_from_slice(args);
        let r = run(&all);
        assert_eq!(r.code, 2, "{args:?}");
        assert!(r.err.contains(want), "{args:?}: {}", r.err);
        assert!(r.out.is_empty());
    }
}
