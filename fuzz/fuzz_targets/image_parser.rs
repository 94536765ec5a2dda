//! The image reference parser: a parsed name re-parses to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(img) = pullcred::image::ImageRef::parse(s) {
        let again = pullcred::image::ImageRef::parse(&img.name()).expect("a normalised name parses");
        assert_eq!(again.name(), img.name());
        assert!(img.name().len() <= 255);
    }
});
