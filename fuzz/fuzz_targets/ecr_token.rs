//! ECR's authorizationToken (base64 of user:password) and expiry.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, i64)| {
    let (token, secs) = input;
    let expiry = aws_smithy_types::DateTime::from_secs(secs);
    if let Ok(f) = pullcred::sources::aws::decode(Some(token), Some(&expiry)) {
        assert!(!f.username.is_empty() && !f.password.is_empty());
    }
});
