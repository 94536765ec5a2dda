//! WWW-Authenticate challenges: any header value.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let _ = pullcred::challenge::bearer(s);
    for c in pullcred::challenge::parse(s).unwrap_or_default() {
        assert!(!c.scheme.is_empty());
        assert_eq!(c.scheme, c.scheme.to_ascii_lowercase());
    }
});
