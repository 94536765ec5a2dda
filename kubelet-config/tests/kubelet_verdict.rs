//! `config validate` and `match --fetch` give the kubelet's verdict (issue
//! #15, section 2). Each test names the kubelet source it restates:
//! pkg/credentialprovider/plugin/config.go (reading, decoding, validation),
//! pkg/credentialprovider/plugin/plugin.go (registration, service account
//! annotations), staging/src/k8s.io/kubelet/config/v1beta1 and v1alpha1
//! types.go (no `tokenAttributes` there), apimachinery's
//! pkg/api/validate/content (qualified names, DNS-1123 subdomains).

use std::fs;
use std::path::Path;

use kubelet_config::validate::{Finding, Severity, ValidateOptions, validate_text};

mod common;

use common::{p, run, write_script};

/// A config of one provider named `name`, for `*.gcr.io`.
fn config(config_version: &str, name: &str, extra: &str) -> String {
    format!(
        "apiVersion: kubelet.config.k8s.io/{config_version}
kind: CredentialProviderConfig
providers:
  - name: {name}
    matchImages: [\"*.gcr.io\"]
    defaultCacheDuration: \"45m\"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
{extra}"
    )
}

const TOKEN_ATTRIBUTES: &str = "    tokenAttributes:
      serviceAccountTokenAudience: pullcred
      cacheType: ServiceAccount
      requireServiceAccount: true
      optionalServiceAccountAnnotationKeys: [\"iam.gke.io/enable-wi-image-pull\"]
";

fn findings(text: &str) -> Vec<Finding> {
    validate_text(text, &ValidateOptions::default()).1
}

fn errors(text: &str) -> Vec<Finding> {
    findings(text)
        .into_iter()
        .filter(|f| f.severity == Severity::Error)
        .collect()
}

// Given a provider with tokenAttributes in a file of config v1beta1 or
// v1alpha1, when it is validated, then strict decoding fails on an unknown
// field at the tokenAttributes line (the older Go types have no such field);
// the same provider in a v1 file is valid.
#[test]
fn token_attributes_is_an_unknown_field_in_older_config_versions() {
    assert!(errors(&config("v1", "pullcred", TOKEN_ATTRIBUTES)).is_empty());
    for version in ["v1beta1", "v1alpha1"] {
        let text = config(version, "pullcred", TOKEN_ATTRIBUTES);
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{version}: {errs:#?}");
        let e = &errs[0];
        assert_eq!(e.field, "providers.tokenAttributes", "{version}");
        assert!(e.why.contains("unknown field"), "{version}: {}", e.why);
        let line = e.line.expect("a line number") as usize;
        let at = text.lines().nth(line - 1).unwrap();
        assert!(
            at.contains("tokenAttributes:"),
            "{version}: line {line} is {at:?}"
        );
        // The same through the JSON reader.
        let (config, _) = validate_text(&text, &ValidateOptions::default());
        let mut json: serde_json::Value =
            serde_json::to_value(config.unwrap()).expect("config serialises");
        json["providers"][0]["tokenAttributes"] = serde_json::json!({
            "serviceAccountTokenAudience": "pullcred", "cacheType": "ServiceAccount",
            "requireServiceAccount": true});
        let errs = errors(&json.to_string());
        assert!(
            errs.iter()
                .any(|f| f.field == "providers.tokenAttributes" && f.why.contains("unknown field")),
            "{version} JSON: {errs:#?}"
        );
    }
}

// Given --bin-dir, when the directory or a plugin in it is missing, a
// directory, or not executable, then validate fails (exit 1) with an error,
// as the kubelet's registration does; an executable plugin is clean; without
// --bin-dir nothing about plugins is said.
#[cfg(unix)]
#[test]
fn registration_failures_are_errors() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    fs::write(&file, config("v1", "pullcred", "")).unwrap();
    let bin = dir.path().join("bin");

    let r = run(&["config", "validate", p(&file), "--bin-dir", p(&bin)]);
    assert_eq!(r.code, 1, "bin dir missing: {}", r.out);
    assert!(r.out.contains("did not exist"), "{}", r.out);
    assert!(!r.out.contains("warning: plugin"), "{}", r.out);
    assert!(r.out.contains("1 error(s)"), "{}", r.out);

    fs::create_dir(&bin).unwrap();
    let r = run(&["config", "validate", p(&file), "--bin-dir", p(&bin)]);
    assert_eq!(r.code, 1, "plugin missing: {}", r.out);
    assert!(
        r.out
            .contains("provider \"pullcred\": providers.name: plugin binary executable"),
        "{}",
        r.out
    );

    fs::create_dir(bin.join("pullcred")).unwrap();
    let r = run(&["config", "validate", p(&file), "--bin-dir", p(&bin)]);
    assert_eq!(r.code, 1, "plugin is a directory: {}", r.out);
    assert!(r.out.contains("is a directory"), "{}", r.out);
    fs::remove_dir(bin.join("pullcred")).unwrap();

    write_script(&bin.join("pullcred"), "exit 0\n");
    fs::set_permissions(bin.join("pullcred"), fs::Permissions::from_mode(0o644)).unwrap();
    let r = run(&["config", "validate", p(&file), "--bin-dir", p(&bin)]);
    assert_eq!(r.code, 1, "plugin not executable: {}", r.out);
    assert!(r.out.contains("not executable"), "{}", r.out);
    assert!(!r.out.contains(": warning:"), "{}", r.out);

    fs::set_permissions(bin.join("pullcred"), fs::Permissions::from_mode(0o755)).unwrap();
    let r = run(&[
        "config",
        "validate",
        p(&file),
        "--bin-dir",
        p(&bin),
        "--strict",
    ]);
    assert_eq!(r.code, 0, "executable plugin: {}", r.out);

    let r = run(&["config", "validate", p(&file), "--strict"]);
    assert_eq!(r.code, 0, "no --bin-dir: {}", r.out);
    assert!(r.out.contains("0 error(s), 0 warning(s)"), "{}", r.out);
}

fn with_keys(required: &[&str], optional: &[&str]) -> String {
    let list = |keys: &[&str]| {
        keys.iter()
            .map(|k| format!("{k:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    config(
        "v1",
        "pullcred",
        &format!(
            "    tokenAttributes:
      serviceAccountTokenAudience: pullcred
      cacheType: ServiceAccount
      requireServiceAccount: true
      requiredServiceAccountAnnotationKeys: [{}]
      optionalServiceAccountAnnotationKeys: [\"iam.gke.io/enable-wi-image-pull\", {}]
",
            list(required),
            list(optional)
        ),
    )
    .replace(", ]", "]")
}

// Given annotation keys in tokenAttributes, when validated, then each is a
// qualified name after lower-casing, with a DNS-1123 subdomain prefix of at
// most 253 characters and no per-label limit.
#[test]
fn annotation_keys_are_qualified_names_after_lower_casing() {
    let label64 = "a".repeat(64);
    let long_label_prefix = format!("{label64}.example.com/role");
    let prefix253 = format!("{}.com/x", "a".repeat(249));
    let prefix254 = format!("{}.com/x", "a".repeat(250));
    let name63 = format!("example.com/{}", "n".repeat(63));
    let name64 = format!("example.com/{}", "n".repeat(64));
    for ok in [
        "Example.COM/Role-Arn",
        "EKS.AMAZONAWS.COM/ECR-ROLE-ARN",
        long_label_prefix.as_str(),
        prefix253.as_str(),
        name63.as_str(),
        "Simple_Name.1",
    ] {
        for (req, opt) in [(vec![ok], vec![]), (vec![], vec![ok])] {
            let errs = errors(&with_keys(&req, &opt));
            assert!(errs.is_empty(), "{ok:?} should be valid: {errs:#?}");
        }
    }
    for bad in [
        prefix254.as_str(),
        name64.as_str(),
        "cantendwithadash-",
        "Example.COM/",
        "/role",
        "a/b/c",
        "exa_mple.com/x",
        "-example.com/x",
    ] {
        for (req, opt) in [(vec![bad], vec![]), (vec![], vec![bad])] {
            let errs = errors(&with_keys(&req, &opt));
            assert!(
                errs.iter()
                    .any(|f| f.field.starts_with("providers.tokenAttributes.")
                        && f.why.contains("Invalid value")),
                "{bad:?} should be invalid: {errs:#?}"
            );
        }
    }
}

// Given a config directory, when it is read, then subdirectories are skipped
// (even `sub.yaml`), a file named exactly `.json` is read, upper-case
// extensions are skipped, and files come in byte order of their names.
#[test]
fn directory_mode_reads_what_the_kubelet_reads() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(".json"), config("v1", "dot-json", "")).unwrap();
    fs::write(dir.path().join("b.yml"), config("v1", "b", "")).unwrap();
    fs::write(dir.path().join("a.yaml"), config("v1", "a", "")).unwrap();
    fs::write(dir.path().join("c.YAML"), "not read").unwrap();
    fs::write(dir.path().join("d.Json"), "not read").unwrap();
    fs::create_dir(dir.path().join("sub.yaml")).unwrap();
    fs::write(dir.path().join("sub.yaml").join("inner.yaml"), "not read").unwrap();
    fs::create_dir(dir.path().join("conf.d.json")).unwrap();
    let r = run(&[
        "config",
        "validate",
        p(dir.path()),
        "--format",
        "json",
        "--strict",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    let doc: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    let names: Vec<String> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            Path::new(f.as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(names, [".json", "a.yaml", "b.yml"]);
    assert_eq!(doc["errors"], 0, "{}", r.out);
    assert_eq!(doc["warnings"], 0, "{}", r.out);
}

// Given a YAML file with a second document, when validated, then the first
// document is what counts (the second is never read, even when it would be
// invalid), and a warning names the line where the second one starts.
#[test]
fn a_second_yaml_document_is_ignored_with_a_warning() {
    let first = config("v1", "pullcred", "");
    let text = format!("{first}---\napiVersion: v0\nproviders: 12\nnot: [valid\n");
    let all = findings(&text);
    let errs: Vec<_> = all
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    assert!(errs.is_empty(), "{errs:#?}");
    let warnings: Vec<_> = all
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .collect();
    assert_eq!(warnings.len(), 1, "{all:#?}");
    let second_line = first.lines().count() as u64 + 1;
    assert_eq!(warnings[0].line, Some(second_line));
    assert!(
        warnings[0].why.contains("second YAML document"),
        "{}",
        warnings[0].why
    );
    let (config, _) = validate_text(&text, &ValidateOptions::default());
    assert_eq!(config.unwrap().providers[0].name, "pullcred");

    // Markers that open and close one document, and trailing comments, are
    // not a second document.
    let framed = format!("# head\n---\n{first}...\n# the end\n");
    assert!(findings(&framed).is_empty(), "{:#?}", findings(&framed));
    // A first document ended by `...`, then another one.
    let ended = format!("{first}...\n---\nkind: Other\n");
    let w: Vec<_> = findings(&ended)
        .into_iter()
        .filter(|f| f.severity == Severity::Warning)
        .collect();
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(w[0].line, Some(second_line + 1));
    // Through the CLI: valid (exit 0), the warning fails --strict.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    fs::write(&file, &text).unwrap();
    let r = run(&["config", "validate", p(&file)]);
    assert_eq!(r.code, 0, "{}", r.out);
    assert!(
        r.out.contains(&format!(
            "{}:{second_line}: warning: a second YAML document",
            file.display()
        )),
        "{}",
        r.out
    );
    assert_eq!(run(&["config", "validate", p(&file), "--strict"]).code, 1);
}

/// A plugin that records its stdin in `request.json` next to the config and
/// answers with one key.
fn fetch_setup(token_attributes: &str) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let record = dir.path().join("request.json");
    write_script(
        &bin.join("pullcred"),
        &format!(
            "cat > '{}'\necho '{{\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"kind\":\"CredentialProviderResponse\",\"cacheKeyType\":\"Image\",\"auth\":{{\"*.gcr.io\":{{\"username\":\"u\",\"password\":\"p\"}}}}}}'\n",
            record.display()
        ),
    );
    let file = dir.path().join("config.yaml");
    fs::write(&file, config("v1", "pullcred", token_attributes)).unwrap();
    fs::write(dir.path().join("token"), "sa-token-value-0123\n").unwrap();
    let (c, b) = (file.display().to_string(), bin.display().to_string());
    (dir, c, b)
}

/// `match us.gcr.io/proj/app --fetch` with a token file and the service
/// account's annotations, as the kubelet would run the plugin.
fn match_fetch(config: &str, bin: &str, token: &Path, annotations: &[&str]) -> common::Run {
    let mut args = vec![
        "match",
        "us.gcr.io/proj/app",
        "--config",
        config,
        "--bin-dir",
        bin,
        "--fetch",
        "--service-account-token-file",
        p(token),
    ];
    for a in annotations {
        args.push("--service-account-annotation");
        args.push(a);
    }
    run(&args)
}

// Given a tokenAttributes provider, when match --fetch runs it, then only the
// annotation keys tokenAttributes lists reach the plugin; when a required
// key is missing, the plugin is not run and the output says so.
#[test]
fn match_fetch_passes_only_listed_annotations_and_honours_required_ones() {
    let ta = "    tokenAttributes:
      serviceAccountTokenAudience: pullcred
      cacheType: ServiceAccount
      requireServiceAccount: true
      requiredServiceAccountAnnotationKeys: [\"example.com/required\"]
      optionalServiceAccountAnnotationKeys: [\"iam.gke.io/enable-wi-image-pull\", \"example.com/absent\"]
";
    let (dir, config, bin) = fetch_setup(ta);
    let token = dir.path().join("token");
    let record = dir.path().join("request.json");
    let fetch = |annotations: &[&str]| match_fetch(&config, &bin, &token, annotations);

    let r = fetch(&[
        "example.com/required=yes",
        "iam.gke.io/enable-wi-image-pull=true",
        "example.com/unlisted=do-not-pass",
    ]);
    assert_eq!(r.code, 0, "out: {}\nerr: {}", r.out, r.err);
    let sent: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&record).unwrap()).unwrap();
    assert_eq!(
        sent["serviceAccountAnnotations"],
        serde_json::json!({"example.com/required": "yes", "iam.gke.io/enable-wi-image-pull": "true"})
    );
    assert_eq!(sent["serviceAccountToken"], "sa-token-value-0123");
    assert!(r.out.contains("\"example.com/unlisted\""), "{}", r.out);
    assert!(!r.out.contains("sa-token-value") && !r.err.contains("sa-token-value"));

    // A required key missing: the plugin never runs.
    fs::remove_file(&record).unwrap();
    let r = fetch(&["iam.gke.io/enable-wi-image-pull=true"]);
    assert_eq!(r.code, 1, "out: {}\nerr: {}", r.out, r.err);
    assert!(!record.exists(), "the plugin ran");
    assert!(
        r.out.contains("not run") && r.out.contains("\"example.com/required\""),
        "{}",
        r.out
    );
    // Keys are exact: a differently cased key is not the required one.
    let r = fetch(&["Example.com/required=yes"]);
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(!record.exists(), "the plugin ran");

    // No listed annotation on the service account: the field is omitted.
    let (dir, config, bin) = fetch_setup(TOKEN_ATTRIBUTES);
    let r = match_fetch(
        &config,
        &bin,
        &dir.path().join("token"),
        &["example.com/other=x"],
    );
    assert_eq!(r.code, 0, "out: {}\nerr: {}", r.out, r.err);
    let sent: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("request.json")).unwrap())
            .unwrap();
    assert!(sent.get("serviceAccountAnnotations").is_none(), "{sent}");
    assert_eq!(sent["serviceAccountToken"], "sa-token-value-0123");
}

// Given a provider whose --docker-config file (or PULLCRED_DOCKER_CONFIG) has
// a path-scoped key not ending in `/`, when validated, then a warning names
// the key and the trailing-`/` form, never a credential.
#[test]
fn docker_config_keys_that_are_bare_prefixes_warn() {
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("docker.json");
    fs::write(
        &docker,
        r#"{"auths":{
            "registry.example.com/dockerhub-cache":{"username":"robot","password":"s3cret-pass-1"},
            "https://harbor.example.com/v2/team-a":{"auth":"dTpzM2NyZXQtcGFzcy0y"},
            "registry.example.com/confined/":{"username":"u","password":"s3cret-pass-3"},
            "docker.io":{"username":"u","password":"s3cret-pass-4"}}}"#,
    )
    .unwrap();
    let file = dir.path().join("c.yaml");
    for extra in [
        format!(
            "    args: [\"get-credentials\", \"--docker-config\", \"{}\"]\n",
            docker.display()
        ),
        format!(
            "    args: [\"get-credentials\", \"--docker-config={}\"]\n",
            docker.display()
        ),
        format!(
            "    env: [{{name: PULLCRED_DOCKER_CONFIG, value: \"/nonexistent/x.json:{}\"}}]\n",
            docker.display()
        ),
    ] {
        fs::write(&file, config("v1", "pullcred", &extra)).unwrap();
        let r = run(&["config", "validate", p(&file)]);
        assert_eq!(r.code, 0, "{}", r.out);
        let warnings: Vec<&str> = r.out.lines().filter(|l| l.contains("warning:")).collect();
        assert_eq!(warnings.len(), 2, "{}", r.out);
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("\"registry.example.com/dockerhub-cache\"")
                    && w.contains("\"registry.example.com/dockerhub-cache/\"")),
            "{}",
            r.out
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("\"harbor.example.com/team-a/\"")),
            "{}",
            r.out
        );
        assert!(!r.out.contains("s3cret") && !r.err.contains("s3cret"));
        assert!(!r.out.contains("dTpzM2NyZXQtcGFzcy0y"));
        assert_eq!(run(&["config", "validate", p(&file), "--strict"]).code, 1);
    }
}
