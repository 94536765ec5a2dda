//! The kubelet's matchImages / auth-key matcher: glob and image split at the
//! first newline. Never panics; an exact host always matches itself.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let (glob, image) = s.split_once('\n').unwrap_or((s, s));
    let _ = kubelet_config::matching::glob_matches(glob, image);
    let _ = kubelet_config::matching::auth_key_matches(glob, image);
    let _ = kubelet_config::matching::is_docker_hub_image(image);
    // An auth key is normalised (scheme, /v1/ and /v2/ dropped) before it is
    // matched, so only a plain key must match itself as a glob does. (The
    // first version of this check forgot the scheme: fuzz/artifacts crash-391f66...)
    // Percent-escapes are decoded on the way, as the kubelet's Go does, and a
    // decoded control character then fails to parse: no escapes either
    // (crash-4f1142..., where the kubelet would not match either).
    let plain = !image.contains("://")
        && !image.contains("/v1/")
        && !image.contains("/v2/")
        && !image.contains('%');
    if plain && let Ok(true) = kubelet_config::matching::glob_matches(image, image) {
        assert!(kubelet_config::matching::auth_key_matches(image, image), "{image:?}");
    }
});
