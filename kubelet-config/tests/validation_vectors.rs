//! Every case of tests/vectors/kubelet-config-validation.json (restated from
//! the kubelet's pkg/credentialprovider/plugin/config_test.go, see its
//! "source" line). Each case's "change" text is mapped to an edit of the base
//! config below; a case without a mapping fails the test.

use kubelet_config::validate::{Severity, ValidateOptions, validate_text};
use serde_json::{Value, json};

fn base() -> Value {
    json!({
        "apiVersion": "kubelet.config.k8s.io/v1",
        "kind": "CredentialProviderConfig",
        "providers": [{
            "name": "foobar",
            "matchImages": ["foobar.registry.io"],
            "defaultCacheDuration": "1m",
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1alpha1"
        }]
    })
}

fn v1_with_tokens(token: Value) -> Value {
    let mut c = base();
    c["providers"][0]["apiVersion"] = json!("credentialprovider.kubelet.k8s.io/v1");
    c["providers"][0]["tokenAttributes"] = token;
    c
}

fn token() -> Value {
    json!({"serviceAccountTokenAudience": "audience", "cacheType": "ServiceAccount", "requireServiceAccount": true})
}

fn with_token(edit: impl FnOnce(&mut Value)) -> Value {
    let mut t = token();
    edit(&mut t);
    v1_with_tokens(t)
}

/// The config for a case, and whether the service account token gate is on.
/// Some cases expand to several configs (e.g. "required or optional").
fn configs_for(change: &str) -> Vec<(Value, bool)> {
    let p = |edit: &dyn Fn(&mut Value)| {
        let mut c = base();
        edit(&mut c["providers"][0]);
        vec![(c, true)]
    };
    match change {
        "no providers at all" => {
            let mut c = base();
            c["providers"] = json!([]);
            vec![(c, true)]
        }
        "matchImages: []" => p(&|v| v["matchImages"] = json!([])),
        "defaultCacheDuration missing" => p(&|v| {
            v.as_object_mut().unwrap().remove("defaultCacheDuration");
        }),
        "name: foo/../bar" => p(&|v| v["name"] = json!("foo/../bar")),
        "name: ." => p(&|v| v["name"] = json!(".")),
        "name: .." => p(&|v| v["name"] = json!("..")),
        "name: 'foo bar'" => p(&|v| v["name"] = json!("foo bar")),
        "two providers named foobar" => {
            let mut c = base();
            let first = c["providers"][0].clone();
            c["providers"].as_array_mut().unwrap().push(first);
            vec![(c, true)]
        }
        "apiVersion: ''" => p(&|v| v["apiVersion"] = json!("")),
        "apiVersion: credentialprovider.kubelet.k8s.io/v1alpha0" => {
            p(&|v| v["apiVersion"] = json!("credentialprovider.kubelet.k8s.io/v1alpha0"))
        }
        "defaultCacheDuration: -1m" => p(&|v| v["defaultCacheDuration"] = json!("-1m")),
        "matchImages: ['%invalid%']" => p(&|v| v["matchImages"] = json!(["%invalid%"])),
        "none (base case)" => vec![(base(), true)],
        "tokenAttributes set, feature gate KubeletServiceAccountTokenForCredentialProviders off" => {
            let mut c = base();
            c["providers"][0]["tokenAttributes"] = token();
            vec![(c.clone(), false), (v1_with_tokens(token()), false)]
        }
        "gate on, apiVersion v1, tokenAttributes without serviceAccountTokenAudience" => {
            vec![(
                with_token(|t| {
                    t.as_object_mut()
                        .unwrap()
                        .remove("serviceAccountTokenAudience");
                }),
                true,
            )]
        }
        "gate on, v1, tokenAttributes without cacheType" => {
            vec![(
                with_token(|t| {
                    t.as_object_mut().unwrap().remove("cacheType");
                }),
                true,
            )]
        }
        "gate on, v1, cacheType: invalid-cache-type" => {
            vec![(
                with_token(|t| t["cacheType"] = json!("invalid-cache-type")),
                true,
            )]
        }
        "gate on, v1, requireServiceAccount missing" => {
            vec![(
                with_token(|t| {
                    t.as_object_mut().unwrap().remove("requireServiceAccount");
                }),
                true,
            )]
        }
        "gate on, v1, annotation key 'cantendwithadash-' in required or optional list" => vec![
            (
                with_token(|t| {
                    t["requiredServiceAccountAnnotationKeys"] = json!(["cantendwithadash-"])
                }),
                true,
            ),
            (
                with_token(|t| {
                    t["optionalServiceAccountAnnotationKeys"] = json!(["cantendwithadash-"])
                }),
                true,
            ),
        ],
        "gate on, v1, the same key twice in one list" => vec![
            (
                with_token(|t| {
                    t["requiredServiceAccountAnnotationKeys"] =
                        json!(["now-with-dashes/simple-1", "now-with-dashes/simple-1"])
                }),
                true,
            ),
            (
                with_token(|t| {
                    t["optionalServiceAccountAnnotationKeys"] =
                        json!(["now-with-dashes/simple-1", "now-with-dashes/simple-1"])
                }),
                true,
            ),
        ],
        "gate on, v1, required [now-with-dashes/simple-1, .../simple-2], optional [.../simple-2, .../simple-3]" =>
        {
            vec![(
                with_token(|t| {
                    t["requiredServiceAccountAnnotationKeys"] =
                        json!(["now-with-dashes/simple-1", "now-with-dashes/simple-2"]);
                    t["optionalServiceAccountAnnotationKeys"] =
                        json!(["now-with-dashes/simple-2", "now-with-dashes/simple-3"]);
                }),
                true,
            )]
        }
        "gate on, v1, requireServiceAccount: false with requiredServiceAccountAnnotationKeys set" =>
        {
            vec![(
                with_token(|t| {
                    t["requireServiceAccount"] = json!(false);
                    t["requiredServiceAccountAnnotationKeys"] = json!(["now-with-dashes/simple-1"]);
                }),
                true,
            )]
        }
        "gate on, v1, cacheType Token, requireServiceAccount true, required [simple-1, simple-2], optional [simple-3]" =>
        {
            vec![(
                with_token(|t| {
                    t["cacheType"] = json!("Token");
                    t["requiredServiceAccountAnnotationKeys"] =
                        json!(["now-with-dashes/simple-1", "now-with-dashes/simple-2"]);
                    t["optionalServiceAccountAnnotationKeys"] = json!(["now-with-dashes/simple-3"]);
                }),
                true,
            )]
        }
        "gate on, tokenAttributes with apiVersion v1alpha1 or v1beta1" => ["v1alpha1", "v1beta1"]
            .iter()
            .map(|v| {
                let mut c = v1_with_tokens(token());
                c["providers"][0]["apiVersion"] =
                    json!(format!("credentialprovider.kubelet.k8s.io/{v}"));
                (c, true)
            })
            .collect(),
        "an unknown field in a provider" => p(&|v| v["unknownField"] = json!("x")),
        "kind: WrongKind" => {
            let mut c = base();
            c["kind"] = json!("WrongKind");
            vec![(c, true)]
        }
        other => panic!("no mapping for vector case {other:?}"),
    }
}

#[test]
fn every_validation_vector() {
    let file: Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/vectors/kubelet-config-validation.json"
    )))
    .expect("vector file is JSON");
    assert!(
        file["source"]
            .as_str()
            .is_some_and(|s| s.contains("config_test.go"))
    );
    let cases = file["cases"].as_array().expect("cases");
    assert!(cases.len() >= 26);
    for case in cases {
        let change = case["change"].as_str().expect("change");
        let valid = case["valid"].as_bool().expect("valid");
        let field = case["field"].as_str();
        for (config, gate) in configs_for(change) {
            let json_text = serde_json::to_string_pretty(&config).unwrap();
            // The same document through the YAML reader (JSON is flow YAML).
            let yaml_text = format!("# as YAML\n{json_text}\n");
            for text in [&json_text, &yaml_text] {
                let opts = ValidateOptions {
                    service_account_token_gate: gate,
                    bin_dir: None,
                };
                let (_, findings) = validate_text(text, &opts);
                let errors: Vec<_> = findings
                    .iter()
                    .filter(|f| f.severity == Severity::Error)
                    .collect();
                if valid {
                    assert!(
                        errors.is_empty(),
                        "{change}: expected valid, got {errors:#?}"
                    );
                } else {
                    assert!(!errors.is_empty(), "{change}: expected an error");
                    if let Some(field) = field {
                        assert!(
                            errors.iter().any(|f| f.field == field),
                            "{change}: no error on {field}: {errors:#?}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn every_finding_is_reported_not_only_the_first() {
    let mut c = base();
    c["providers"][0]["name"] = json!("foo bar");
    c["providers"][0]["matchImages"] = json!(["%invalid%", "ok.io", "%zz"]);
    c["providers"][0]["defaultCacheDuration"] = json!("-1m");
    c["providers"][0]["extra"] = json!(1);
    let (_, findings) = validate_text(&c.to_string(), &ValidateOptions::default());
    let fields: Vec<&str> = findings.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "providers.extra",
            "providers.name",
            "providers.matchImages",
            "providers.matchImages",
            "providers.defaultCacheDuration"
        ]
    );
}
