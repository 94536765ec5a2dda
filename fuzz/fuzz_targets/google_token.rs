//! Google token endpoint / metadata server answers, and RFC 3339 expiries.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = 1_800_000_000;
    if let Ok((token, expires_at)) = pullcred::sources::google::gcp::parse_token_response(data, now)
    {
        assert!(!token.is_empty());
        assert!(expires_at >= now);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = pullcred::time::parse_rfc3339(s);
    }
});
