//! Link settings for the `pullcred` binary: non-PIE, and the hit path's
//! functions placed together. Both are about the cache hit, which is most
//! of what the kubelet ever runs: one exec per pull that misses its cache,
//! and on a hit almost all the cost is process start-up and page faults.
//!
//! **Non-PIE** unless `PULLCRED_PIE=1`. A position-independent build makes
//! the dynamic loader apply ~20,000 relocations to the SDKs' tables at
//! every exec, dirtying their pages: measured on the development machine,
//! the PIE build's hit peaks at 5.3 MiB RSS against 4.7 MiB for this one,
//! and starts slower. The cost is ASLR for the executable's own image
//! (libraries, heap and stack stay randomised). pullcred lives for about a
//! millisecond, forbids `unsafe` in its own code, and reads only the
//! kubelet's request and TLS-authenticated cloud APIs. Where policy
//! requires PIE, build with `PULLCRED_PIE=1 cargo build --release`.
//!
//! **Hit-path ordering** (`provider/hit-path.order`, made by
//! `bench/symbol_order.py`): the few hundred functions a cache hit runs are
//! spread over the 7 MiB `.text`, and the kernel maps 64 KiB around each
//! page fault in a file mapping, so a hit mapped ~2.5 MiB of code to run
//! ~0.5 MiB of it. rust-lld's `--symbol-ordering-file` puts them together
//! (peak RSS on a hit 6.2 → 3.9 MiB, same speed). A name the linker does
//! not find is skipped without a warning, so a stale list costs memory,
//! never a build. The static build (`release/static.sh`) has symbol hashes
//! of its own and reads `provider/hit-path-static.order` instead
//! (`bench/symbol_order.py --static`). Only where the linker is rust-lld (the default for
//! x86_64-unknown-linux-gnu since Rust 1.90) and no `-C linker` override
//! is set; `PULLCRED_NO_SYMBOL_ORDER=1` turns it off.
fn main() {
    println!("cargo:rerun-if-env-changed=PULLCRED_PIE");
    println!("cargo:rerun-if-env-changed=PULLCRED_NO_SYMBOL_ORDER");
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let on = |k: &str| {
        let v = env(k);
        v == "1" || v.eq_ignore_ascii_case("true")
    };
    let linux = env("CARGO_CFG_TARGET_OS") == "linux";
    if linux && !on("PULLCRED_PIE") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    let default_lld = env("TARGET") == "x86_64-unknown-linux-gnu"
        && !env("CARGO_ENCODED_RUSTFLAGS").contains("linker")
        && std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_none();
    // The static build (release/static.sh: `+crt-static`, its own target
    // directory) has other symbol hashes, so a list of its own.
    let crt_static = env("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static");
    let order_file = if crt_static {
        "hit-path-static.order"
    } else {
        "hit-path.order"
    };
    let order = std::path::Path::new(&env("CARGO_MANIFEST_DIR")).join(order_file);
    println!("cargo:rerun-if-changed={}", order.display());
    // Identical code folding: generic instances that compile to the same
    // machine code are kept once (-0.17 MiB). `all`, not `safe`: rustc emits
    // no address-significance table, so `safe` folds nothing, and Rust makes
    // no promise that distinct functions have distinct addresses (pullcred
    // never compares function pointers).
    if default_lld {
        println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
    }
    // bench/symbol_order.py: the link map of an unordered build, to name
    // the functions a traced hit ran (the binary itself is stripped).
    println!("cargo:rerun-if-env-changed=PULLCRED_LINK_MAP");
    let map = env("PULLCRED_LINK_MAP");
    if default_lld && !map.is_empty() {
        println!("cargo:rustc-link-arg-bins=-Wl,-Map={map},--no-demangle");
    }
    if default_lld && !on("PULLCRED_NO_SYMBOL_ORDER") && order.is_file() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
