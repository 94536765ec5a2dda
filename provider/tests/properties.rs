//! Property tests: the image parser and the kubelet's glob matcher agree with
//! the kubelet's rules (as restated in tests/vectors/kubelet-matching.json) on
//! generated inputs.

use proptest::prelude::*;
use pullcred::image::ImageRef;
use pullcred::sources::aws::parse_ecr_host;

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?"
}

fn host() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(label(), 2..5)
}

fn path_component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,6}([._-][a-z0-9]{1,6})?"
}

fn path() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(path_component(), 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any well-formed reference parses, and its parts come back unchanged.
    #[test]
    fn well_formed_references_round_trip(
        h in host(), port in prop::option::of(1u16..65535), p in path(),
        tag in prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        digest in prop::option::of("[0-9a-f]{64}"),
    ) {
        let registry = match port { Some(n) => format!("{}:{n}", h.join(".")), None => h.join(".") };
        let repo = p.join("/");
        let mut s = format!("{registry}/{repo}");
        if let Some(t) = &tag { s.push(':'); s.push_str(t); }
        if let Some(d) = &digest { s.push_str("@sha256:"); s.push_str(d); }
        let img = ImageRef::parse(&s).unwrap();
        prop_assert_eq!(&img.registry, &registry);
        prop_assert_eq!(&img.repository, &repo);
        prop_assert_eq!(img.tag.as_deref(), tag.as_deref());
        prop_assert_eq!(img.digest.map(|d| d[7..].to_string()), digest);
    }

    /// Whatever parses re-parses to the same normalised name; nothing panics.
    #[test]
    fn parser_is_total_and_idempotent(s in "\\PC{0,80}") {
        if let Ok(img) = ImageRef::parse(&s) {
            prop_assert_eq!(ImageRef::parse(&img.name()).unwrap().name(), img.name());
        }
    }

    /// kubelet rule: a glob equal to the image host matches; each label may be
    /// replaced by `*` or `prefix*`; one label more or fewer never matches.
    #[test]
    fn glob_labels_match_like_the_kubelet(h in host(), p in path(), stars in prop::collection::vec(0u8..3, 5)) {
        let image = format!("{}/{}", h.join("."), p.join("/"));
        let glob: Vec<String> = h.iter().zip(&stars).map(|(l, s)| match s {
            0 => l.clone(),
            1 => "*".to_string(),
            _ => format!("{}*", &l[..1]),
        }).collect();
        prop_assert!(kubelet_config::matching::glob_matches(&glob.join("."), &image).unwrap());
        let longer = format!("x.{}", glob.join("."));
        prop_assert!(!kubelet_config::matching::glob_matches(&longer, &image).unwrap());
        let shorter = glob[1..].join(".");
        prop_assert!(!kubelet_config::matching::glob_matches(&shorter, &image).unwrap());
    }

    /// kubelet rule: ports must be equal, and a missing port is not a wildcard.
    #[test]
    fn ports_must_be_equal(h in host(), a in 1u16..65535, b in 1u16..65535) {
        let host = h.join(".");
        let image = format!("{host}:{a}/x");
        prop_assert_eq!(kubelet_config::matching::glob_matches(&format!("{host}:{b}"), &image).unwrap(), a == b);
        prop_assert!(!kubelet_config::matching::glob_matches(&host, &image).unwrap());
    }

    /// kubelet rule: the image path must start with the glob path (a plain
    /// string prefix, not segment-aware).
    #[test]
    fn path_is_a_string_prefix(h in host(), p in path(), cut in 0usize..20) {
        let full = p.join("/");
        let cut = cut.min(full.len());
        let image = format!("{}/{full}", h.join("."));
        let glob = format!("{}/{}", h.join("."), &full[..cut]);
        prop_assert!(kubelet_config::matching::glob_matches(&glob, &image).unwrap());
        let other = format!("{}/zz{}", h.join("."), &full);
        prop_assert!(!kubelet_config::matching::glob_matches(&other, &image).unwrap());
    }

    /// ECR hosts: the region always comes back from the host, and a suffix
    /// label more makes it a look-alike.
    #[test]
    fn ecr_region_from_host(acct in "[0-9]{12}", region in "(us|eu|ap|sa|ca|me|af)-(east|west|north|south|central)-[1-9]", evil in label()) {
        let host = format!("{acct}.dkr.ecr.{region}.amazonaws.com");
        prop_assert_eq!(parse_ecr_host(&host).unwrap().region, region);
        let look_alike = format!("{host}.{evil}");
        prop_assert!(parse_ecr_host(&look_alike).is_none());
    }
}

/// Inputs the fuzzers found (fuzz/RESULTS.md), kept as regressions.
#[test]
fn fuzz_regressions() {
    // glob_matcher: a scheme-prefixed key is normalised before matching.
    let odd = "https:///////////////////uy";
    let _ = kubelet_config::matching::glob_matches(odd, odd);
    assert!(!kubelet_config::matching::auth_key_matches(odd, odd));
    // glob_matcher: an escape that decodes to a control character never matches
    // as an auth key, as in the kubelet (Go refuses the re-parsed key).
    let esc = "prefix.ix///////////uya.kubern%1e12t1";
    assert!(!kubelet_config::matching::auth_key_matches(esc, esc));
    // dockerconfig: whitespace or control characters inside a key are not a key.
    let doc = br#"{"auths": {"htter.io/v1 /":{"auth": "dTpw"}, "o/v%1a": {"auth": "dTpw"}, "harbor.example.com/proj":{"username": "r", "password": "t"}}}"#;
    let entries = pullcred::sources::dockerconfig::parse(doc).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].key, "harbor.example.com/proj");
}
