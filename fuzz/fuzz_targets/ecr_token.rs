//! ECR's authorizationToken (base64 of user:password) and expiry.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, i64)| {
    let (token, secs) = input;
    if let Ok(f) = pullcred::sources::aws::decode_ecr_token(Some(token), Some(secs)) {
        assert!(!f.username.is_empty() && !f.password.is_empty());
    }
});
