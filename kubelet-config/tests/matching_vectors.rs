//! Every case of tests/vectors/kubelet-matching.json (restated from the
//! kubelet's pkg/credentialprovider/keyring_test.go, see its "source" line).

use kubelet_config::matching::{auth_key_matches, glob_matches, is_docker_hub_image};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/vectors/kubelet-matching.json"
    )))
    .expect("vector file is JSON")
}

fn triples(v: &Value, key: &str) -> Vec<(String, String, bool)> {
    let list = v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is a list"));
    assert!(!list.is_empty(), "{key} has cases");
    list.iter()
        .map(|c| {
            (
                c[0].as_str().expect("string").to_string(),
                c[1].as_str().expect("string").to_string(),
                c[2].as_bool().expect("bool"),
            )
        })
        .collect()
}

#[test]
fn vector_file_names_its_source() {
    let v = vectors();
    assert!(
        v["source"]
            .as_str()
            .is_some_and(|s| s.contains("keyring_test.go"))
    );
}

#[test]
fn match_images_vectors() {
    for (glob, image, want) in triples(&vectors(), "matchImages") {
        // Given a glob and an image, when matched, then the verdict is the kubelet's.
        assert_eq!(
            glob_matches(&glob, &image),
            Ok(want),
            "glob {glob:?} image {image:?}"
        );
    }
}

#[test]
fn auth_key_vectors() {
    for (key, image, want) in triples(&vectors(), "authKeys") {
        assert_eq!(
            auth_key_matches(&key, &image),
            want,
            "key {key:?} image {image:?}"
        );
    }
}

#[test]
fn docker_hub_vectors() {
    let v = vectors();
    let list = v["dockerHubImage"].as_array().expect("list");
    assert!(!list.is_empty());
    for c in list {
        let image = c[0].as_str().expect("string");
        let want = c[1].as_bool().expect("bool");
        assert_eq!(is_docker_hub_image(image), want, "image {image:?}");
    }
}
