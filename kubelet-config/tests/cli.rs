//! The `config validate`, `config generate` and `match` entry point, run on
//! real files in fresh temporary directories.

use std::fs;

mod common;

use common::{p, run, write_script};

fn provider(name: &str, globs: &str, duration: &str) -> String {
    format!(
        "apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: {name}
    matchImages: [{globs}]
    defaultCacheDuration: \"{duration}\"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
"
    )
}

#[test]
fn directory_mode_reads_sorted_matching_files_and_finds_cross_file_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("b.yml"),
        provider("shared", "\"b.io\"", "5m"),
    )
    .unwrap();
    fs::write(dir.path().join("a.json"), r#"{"apiVersion":"kubelet.config.k8s.io/v1","kind":"CredentialProviderConfig","providers":[{"name":"shared","matchImages":["a.io"],"defaultCacheDuration":"5m","apiVersion":"credentialprovider.kubelet.k8s.io/v1"}]}"#).unwrap();
    fs::write(
        dir.path().join("c.yaml"),
        provider("other", "\"c.io\"", "5m"),
    )
    .unwrap();
    fs::write(dir.path().join("notes.txt"), "not a config").unwrap();
    fs::write(
        dir.path().join("d.YAML"),
        "not read: extensions are case-sensitive",
    )
    .unwrap();
    let r = run(&["config", "validate", p(dir.path()), "--format", "json"]);
    assert_eq!(r.code, 1, "{}", r.out);
    let doc: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    let files: Vec<String> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    let names: Vec<&str> = files
        .iter()
        .map(|f| f.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(names, ["a.json", "b.yml", "c.yaml"]);
    assert_eq!(doc["errors"], 1);
    let f = &doc["findings"][0];
    assert_eq!(f["field"], "providers.name");
    assert!(f["file"].as_str().unwrap().ends_with("b.yml"));
    assert!(f["why"].as_str().unwrap().contains("Duplicate value"));
    assert!(f["why"].as_str().unwrap().contains("a.json"));
}

#[test]
fn empty_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("README"), "x").unwrap();
    let r = run(&["config", "validate", p(dir.path())]);
    assert_eq!(r.code, 1);
    assert!(
        r.out.contains("no *.json, *.yaml or *.yml file"),
        "{}",
        r.out
    );
}

#[test]
fn bad_yaml_is_reported_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    fs::write(&file, "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: [unclosed\n").unwrap();
    let r = run(&["config", "validate", p(&file)]);
    assert_eq!(r.code, 1);
    let first = r.out.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("{}:4: ", file.display())),
        "{first}"
    );
    assert!(first.contains("invalid YAML"), "{first}");
}

#[test]
fn every_finding_is_one_line_with_file_provider_field_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    let text =
        provider("foo bar", "\"%invalid%\", \"*.ecr.*.amazonaws.com\"", "-1m") + "    unknown: 1\n";
    fs::write(&file, text).unwrap();
    let r = run(&["config", "validate", p(&file)]);
    assert_eq!(r.code, 1);
    let lines: Vec<&str> = r.out.lines().collect();
    let f = file.display();
    assert_eq!(
        lines[0],
        format!(
            "{f}:8: provider \"foo bar\": providers.unknown: strict decoding error: unknown field"
        )
    );
    assert!(
        lines[1].starts_with(&format!("{f}: provider \"foo bar\": providers.name: ")),
        "{}",
        lines[1]
    );
    assert!(lines[2].starts_with(&format!(
        "{f}: provider \"foo bar\": providers.matchImages: Invalid value: \"%invalid%\""
    )));
    assert!(
        lines[3].contains("providers.matchImages: warning: \"*.ecr.*.amazonaws.com\""),
        "{}",
        lines[3]
    );
    assert!(
        lines[4].contains("providers.defaultCacheDuration: Invalid value"),
        "{}",
        lines[4]
    );
    assert!(
        lines[5].ends_with("4 error(s), 1 warning(s)"),
        "{}",
        lines[5]
    );
}

#[test]
fn warnings_beyond_the_kubelet_and_strict() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let file = dir.path().join("c.yaml");
    fs::write(&file, provider("pullcred", "\"*.gcr.io\"", "2h")).unwrap();
    write_script(&bin.join("pullcred"), "exit 0\n");
    let r = run(&["config", "validate", p(&file), "--bin-dir", p(&bin)]);
    assert_eq!(r.code, 0, "{}", r.out);
    assert!(
        r.out.contains("exceeds the 1h0m0s life of a gcp token"),
        "{}",
        r.out
    );
    let r = run(&[
        "config",
        "validate",
        p(&file),
        "--bin-dir",
        p(&bin),
        "--strict",
    ]);
    assert_eq!(r.code, 1);
    // A shorter duration: clean.
    fs::write(&file, provider("pullcred", "\"*.gcr.io\"", "45m")).unwrap();
    let r = run(&[
        "config",
        "validate",
        p(&file),
        "--bin-dir",
        p(&bin),
        "--strict",
    ]);
    assert_eq!(r.code, 0, "{}", r.out);
}

#[test]
fn feature_gate_off_forbids_token_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    let out = run(&[
        "config",
        "generate",
        "--cloud",
        "aws",
        "--token-audience",
        "sts.amazonaws.com",
    ]);
    fs::write(&file, out.out).unwrap();
    assert_eq!(run(&["config", "validate", p(&file)]).code, 0);
    let r = run(&[
        "config",
        "validate",
        p(&file),
        "--feature-gates",
        "KubeletServiceAccountTokenForCredentialProviders=false",
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.out.contains("providers.tokenAttributes: Forbidden"),
        "{}",
        r.out
    );
}

#[test]
fn a_ten_megabyte_file_is_read_and_a_larger_than_16_mib_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    let mut text = provider("pullcred", "\"*.gcr.io\"", "45m");
    let pad = format!("# {}\n", "x".repeat(98));
    while text.len() < 10 * 1000 * 1000 {
        text.push_str(&pad);
    }
    fs::write(&big, &text).unwrap();
    let started = std::time::Instant::now();
    let r = run(&["config", "validate", p(&big)]);
    assert_eq!(r.code, 0, "{}", r.out);
    assert!(started.elapsed().as_secs() < 60);
    let huge = dir.path().join("huge.yaml");
    let f = fs::File::create(&huge).unwrap();
    f.set_len(17 * 1024 * 1024).unwrap();
    let r = run(&["config", "validate", p(&huge)]);
    assert_eq!(r.code, 1);
    assert!(
        r.out.contains("over the 16777216-byte (16 MiB) limit"),
        "{}",
        r.out
    );
}

#[cfg(unix)]
#[test]
fn a_symlink_loop_in_a_directory_is_a_finding_not_a_hang() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    symlink("loop-b.yaml", dir.path().join("loop-a.yaml")).unwrap();
    symlink("loop-a.yaml", dir.path().join("loop-b.yaml")).unwrap();
    symlink(".", dir.path().join("self.d")).unwrap();
    fs::write(
        dir.path().join("ok.yaml"),
        provider("pullcred", "\"*.gcr.io\"", "45m"),
    )
    .unwrap();
    let r = run(&["config", "validate", p(dir.path())]);
    assert_eq!(r.code, 1, "{}", r.out);
    assert_eq!(r.out.matches("symlink loop").count(), 2, "{}", r.out);
    assert!(r.out.contains("1 file(s), 1 provider(s)"), "{}", r.out);
    // The loop named directly.
    let r = run(&["config", "validate", p(&dir.path().join("loop-a.yaml"))]);
    assert_eq!(r.code, 1);
    assert!(r.out.contains("symlink loop"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["config", "validate"]).code, 2);
    assert_eq!(run(&["config", "generate", "--cloud", "mars"]).code, 2);
    assert_eq!(run(&["config", "generate", "--cloud", "generic"]).code, 2);
    assert_eq!(run(&["match"]).code, 2);
    let r = run(&["config", "--help"]);
    assert_eq!(r.code, 0);
    assert!(r.out.contains("validate"));
}

#[test]
fn generate_generic_and_json() {
    let r = run(&[
        "config",
        "generate",
        "--cloud",
        "generic",
        "--registry",
        "reg.example.com/team",
        "--docker-hub",
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.err);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(
        v["providers"][0]["matchImages"],
        serde_json::json!(["reg.example.com/team", "docker.io"])
    );
    assert_eq!(v["providers"][0]["defaultCacheDuration"], "5m");
}

fn match_setup(script: &str) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    write_script(&bin.join("fake"), script);
    // The kubelet registers every provider of the config, so each needs its
    // plugin in the bin dir.
    write_script(&bin.join("other"), "exit 1\n");
    let config = dir.path().join("config.yaml");
    let fake = "providers:
  - name: fake
    matchImages: [\"docker.io\", \"*.example.com\"]
    defaultCacheDuration: \"5m\"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    args: [\"--flag\"]
    env: [{name: FAKE_ENV, value: from-config}]
";
    let text = provider("other", "\"*.gcr.io\"", "5m").replace("providers:\n", fake);
    fs::write(&config, text).unwrap();
    let (c, b) = (config.display().to_string(), bin.display().to_string());
    (dir, c, b)
}

#[test]
fn match_names_the_provider_and_why() {
    let (_dir, config, _) = match_setup("exit 1\n");
    let r = run(&["match", "nginx:1.27", "--config", &config]);
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    assert!(
        r.out
            .contains("image: docker.io/library/nginx (from \"nginx:1.27\")"),
        "{}",
        r.out
    );
    assert!(r.out.contains("provider \"fake\""), "{}", r.out);
    assert!(
        r.out
            .contains("runs: matchImages \"docker.io\" matches docker.io/library/nginx"),
        "{}",
        r.out
    );
    assert!(r.out.contains("provider \"other\""));
    assert!(r.out.contains("skipped: no matchImages glob matches"));
    let r = run(&["match", "quay.io/foo/bar", "--config", &config]);
    assert_eq!(r.code, 1);
    assert!(r.out.contains("no provider runs"));
}

#[test]
fn match_fetch_runs_the_plugin_like_the_kubelet_and_masks_the_password() {
    // The plugin checks its argument, environment and stdin, then answers.
    let script = r#"read -r line
case "$line" in *'"image":"docker.io/library/nginx"'*'"kind":"CredentialProviderRequest"'*) ;; *) echo "bad request: $line" >&2; exit 3;; esac
[ "$1" = "--flag" ] || exit 4
[ "$FAKE_ENV" = "from-config" ] || exit 5
echo "note on stderr" >&2
echo '{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Registry","cacheDuration":"6h0m0s","auth":{"index.docker.io":{"username":"u0","password":"fallback-secret"},"docker.io":{"username":"u1","password":"s3cret-value"},"*.io":{"username":"u2","password":"other-secret"}}}'
"#;
    let (_dir, config, bin) = match_setup(script);
    let r = run(&[
        "match",
        "nginx",
        "--config",
        &config,
        "--bin-dir",
        &bin,
        "--fetch",
    ]);
    assert_eq!(r.code, 0, "out: {}\nerr: {}", r.out, r.err);
    assert!(!r.out.contains("s3cret") && !r.err.contains("s3cret"));
    assert!(r.out.contains("password **** (12 chars)"), "{}", r.out);
    assert!(
        r.out.contains(
            "kubelet uses: \"docker.io\" (first of the matching keys in reverse lexical order)"
        ),
        "{}",
        r.out
    );
    assert!(r.out.contains("then tries: \"*.io\""), "{}", r.out);
    assert!(r.err.contains("note on stderr"));
}

#[test]
fn match_fetch_docker_hub_fallback_and_failures() {
    let script = r#"cat >/dev/null
echo '{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Image","auth":{"index.docker.io":{"username":"u","password":"p"}}}'
"#;
    let (_dir, config, bin) = match_setup(script);
    let r = run(&[
        "match",
        "nginx",
        "--config",
        &config,
        "--bin-dir",
        &bin,
        "--fetch",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    assert!(
        r.out.contains(
            "kubelet uses: \"index.docker.io\" (Docker Hub fallback key index.docker.io)"
        ),
        "{}",
        r.out
    );
    assert!(
        r.out
            .contains("cacheDuration (none: defaultCacheDuration 5m)"),
        "{}",
        r.out
    );

    // An unknown field in the response: the kubelet drops it.
    let (_dir, config, bin) = match_setup(
        "echo '{\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"kind\":\"CredentialProviderResponse\",\"cacheKeyType\":\"Image\",\"auth\":{},\"extra\":1}'\n",
    );
    let r = run(&[
        "match",
        "nginx",
        "--config",
        &config,
        "--bin-dir",
        &bin,
        "--fetch",
    ]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("unknown field"), "{}", r.err);

    // A plugin that hangs is killed at the timeout.
    let (_dir, config, bin) = match_setup("exec sleep 30\n");
    let started = std::time::Instant::now();
    let r = run(&[
        "match",
        "nginx",
        "--config",
        &config,
        "--bin-dir",
        &bin,
        "--fetch",
        "--timeout-secs",
        "1",
    ]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("killed after"), "{}", r.err);
    assert!(started.elapsed().as_secs() < 20);
}
