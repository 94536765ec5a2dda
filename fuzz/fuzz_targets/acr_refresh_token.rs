//! ACR refresh tokens: the JWT payload whose `exp` sets the cache's refresh point.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let _ = pullcred::sources::acr::azure::jwt::claims(s);
    let _ = pullcred::sources::acr::azure::jwt::expiry(s);
    let _ = pullcred::sources::acr::azure::jwt::string_claim(s, "tid");
});
