//! Service-account tokens (KEP-4412): the claims that decide whose cache
//! entry a request gets, and the identity its annotations ask for.
#![no_main]
use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use pullcred::secret::Secret;
use pullcred::sources::aws::session_name;
use pullcred::workload::{WorkloadSettings, read_claims, resolve};

fuzz_target!(|input: (&str, &str, &str)| {
    let (token, key, value) = input;
    let _ = read_claims(token);
    let _ = session_name(key, value);
    let image =
        pullcred::image::ImageRef::parse("123456789012.dkr.ecr.us-west-2.amazonaws.com/app")
            .expect("a valid image");
    let route = pullcred::sources::route_by_host(&image, &Default::default()).expect("an ECR host");
    let rules = route.pod_rules().expect("ECR takes a pod's identity");
    let mut annotations = BTreeMap::new();
    annotations.insert(key.to_string(), value.to_string());
    let t = Secret::new(token);
    let _ = resolve(
        rules,
        Some(&t),
        &annotations,
        &WorkloadSettings::default(),
        0,
    );
});
