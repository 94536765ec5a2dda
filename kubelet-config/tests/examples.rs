//! Golden files: the configs in kubelet-config/examples/ are what
//! `pullcred config generate` writes. Regenerate them with
//! `UPDATE_EXAMPLES=1 cargo test -p kubelet-config --test examples`.

use std::path::PathBuf;

use kubelet_config::cli::run_with;
use kubelet_config::generate::{build, examples, render_yaml};

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples")
}

#[test]
fn examples_are_in_sync_with_generate() {
    let update = std::env::var_os("UPDATE_EXAMPLES").is_some();
    let mut stale = Vec::new();
    for (name, opts) in examples() {
        let want = render_yaml(
            &build(&opts).expect("example options are valid"),
            &opts.command_line(),
        );
        let path = examples_dir().join(name);
        if update {
            std::fs::write(&path, &want).expect("write example");
            continue;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "kubelet-config/examples/{{{}}} differ from what `pullcred config generate` writes; \
         regenerate with: UPDATE_EXAMPLES=1 cargo test -p kubelet-config --test examples",
        stale.join(",")
    );
}

#[test]
fn the_cli_writes_the_same_bytes_as_the_examples() {
    for (name, opts) in examples() {
        // The header's command line, run through the CLI, gives the file back.
        let line = opts.command_line();
        let args: Vec<std::ffi::OsString> = line
            .strip_prefix("pullcred ")
            .expect("header starts with pullcred")
            .split(' ')
            .map(Into::into)
            .collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(
            run_with(args, &mut out, &mut err),
            0,
            "{name}: {}",
            String::from_utf8_lossy(&err)
        );
        let want = std::fs::read_to_string(examples_dir().join(name)).unwrap_or_default();
        assert_eq!(String::from_utf8(out).unwrap(), want, "{name}");
    }
}

#[test]
fn every_example_validates_without_findings() {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for (name, _) in examples() {
        let path = examples_dir().join(name);
        let code = run_with(
            vec![
                "config".into(),
                "validate".into(),
                path.into_os_string(),
                "--strict".into(),
            ],
            &mut out,
            &mut err,
        );
        assert_eq!(code, 0, "{name}: {}", String::from_utf8_lossy(&out));
    }
}
