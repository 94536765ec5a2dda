//! dockerconfigjson documents: entries that parse have normalised keys that
//! normalise to themselves.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = pullcred::sources::dockerconfig::parse(data) {
        for e in entries {
            assert_eq!(pullcred::sources::dockerconfig::normalize_key(&e.key).as_deref(), Some(e.key.as_str()));
        }
    }
});
