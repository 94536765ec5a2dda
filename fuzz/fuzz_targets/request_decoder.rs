//! The kubelet request decoder: any bytes on stdin.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = pullcred::protocol::decode_request(data) {
        assert!(!r.image.is_empty());
        assert!(pullcred::protocol::API_VERSIONS.contains(&r.api_version.as_str()));
    }
});
