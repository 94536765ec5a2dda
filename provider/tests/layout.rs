//! The layout's promises, checked on the source text (see README "Layout"):
//!
//! 1. No import cycle between the provider's modules. A module may use its
//!    ancestors (a source's files use `super::`), and an ancestor its
//!    children; any other cycle fails.
//! 2. No code outside a source's directory names a type that directory
//!    declares: the flow, the pipeline, `doctor` and the CLI reach a source
//!    only through the `Source`/`Route` traits, and `sources/mod.rs` names
//!    each source once, in its list.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src`, by module path (`sources::gcp::jwt`).
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = src_dir();
    let mut files = Vec::new();
    walk(&root, &mut files);
    let mut out = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&root).unwrap().with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if matches!(
            parts.last().map(String::as_str),
            Some("mod" | "lib" | "main")
        ) {
            parts.pop();
        }
        let name = parts.join("::");
        out.insert(name, code_of(&std::fs::read_to_string(&f).unwrap()));
    }
    out
}

/// The file without comments and without its `#[cfg(test)]` modules.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if t == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|n| n.trim_start().starts_with("mod "))
        {
            break;
        }
        let code = match t.find("//") {
            Some(i) => &t[..i],
            None => t,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Paths a file names from `prefix` on (`crate::`, `super::`), with
/// `{a, b::c}` groups expanded to their first segments.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue;
        }
        let mut segs = Vec::new();
        let mut s = rest;
        loop {
            let n = s.find(|c: char| !is_ident(c)).unwrap_or(s.len());
            if n == 0 {
                break;
            }
            segs.push(s[..n].to_string());
            s = &s[n..];
            match s.strip_prefix("::") {
                Some(r) => s = r,
                None => break,
            }
        }
        if s.starts_with('{') {
            let end = s.find('}').unwrap_or(s.len());
            for item in s[1..end].split(',') {
                let first: String = item.trim().chars().take_while(|c| is_ident(*c)).collect();
                if !first.is_empty() {
                    let mut p = segs.clone();
                    p.push(first);
                    out.push(p);
                }
            }
        } else if !segs.is_empty() {
            out.push(segs);
        }
    }
    out
}

/// The longest module prefix of `path`.
fn resolve(path: &[String], known: &BTreeSet<String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| known.contains(m))
}

fn is_ancestor(a: &str, of: &str) -> bool {
    a.is_empty() || of.starts_with(&format!("{a}::"))
}

fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules();
    let known: BTreeSet<String> = mods.keys().cloned().collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, code) in &mods {
        let mut targets = Vec::new();
        for p in paths_after(code, "crate::") {
            targets.extend(resolve(&p, &known));
        }
        let parent: Vec<String> = m.split("::").map(str::to_string).collect();
        let parent = &parent[..parent.len().saturating_sub(1)];
        for p in paths_after(code, "super::") {
            let mut full = parent.to_vec();
            full.extend(p);
            targets.extend(resolve(&full, &known));
        }
        // A parent reaches its children (`mod x;`, then `x::f()`).
        let prefix = if m.is_empty() {
            String::new()
        } else {
            format!("{m}::")
        };
        targets.extend(
            known
                .iter()
                .filter(|k| {
                    k.strip_prefix(&prefix)
                        .is_some_and(|rest| !rest.is_empty() && !rest.contains("::"))
                })
                .cloned(),
        );
        let set = graph.entry(m.clone()).or_default();
        for t in targets {
            // A module may use itself and its ancestors.
            if t != *m && !is_ancestor(&t, m) {
                set.insert(t);
            }
        }
    }
    graph
}

/// One cycle through `graph`, if there is any.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for t in graph.get(n).into_iter().flatten() {
            match state.get(t.as_str()).copied().unwrap_or(0) {
                1 => {
                    let i = stack.iter().position(|s| s == t).unwrap();
                    let mut c = stack[i..].to_vec();
                    c.push(t.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(t, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0
            && let Some(c) = visit(n, graph, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_import_cycles_between_modules() {
    let graph = edges();
    assert!(graph.len() > 10, "found only {:?}", graph.keys());
    if let Some(c) = find_cycle(&graph) {
        panic!("import cycle: {}", c.join(" -> "));
    }
}

#[test]
fn the_checker_sees_a_cycle_and_groups() {
    let code = code_of("use crate::{a, b::c};\nfn f() { crate::d::e(); }\n// crate::z\n");
    let got = paths_after(&code, "crate::");
    // A group names modules by its items' first segments.
    assert_eq!(got, [vec!["a"], vec!["b"], vec!["d", "e"]]);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("x".into()).or_default().insert("y".into());
    g.entry("y".into()).or_default().insert("x".into());
    assert!(find_cycle(&g).is_some());
    assert!(is_ancestor("sources", "sources::gcp::jwt"));
    assert!(!is_ancestor("sources::gcp", "sources::gcpx"));
}

/// The source directory a module belongs to (`sources::aws::sdk` is in
/// `aws`), if any.
fn source_dir(module: &str) -> Option<&str> {
    let rest = module.strip_prefix("sources::")?;
    let dir = rest.split("::").next()?;
    // Files directly under `sources/` that are not directories of a source.
    (!matches!(dir, "registry_check" | "registry_check_disabled")).then_some(dir)
}

/// Public type names (`struct`, `enum`, `trait`, `type`) a file declares:
/// a private one cannot be named elsewhere.
fn declared_types(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for kw in ["pub struct ", "pub enum ", "pub trait ", "pub type "] {
        let mut rest = code;
        while let Some(i) = rest.find(kw) {
            let before = rest[..i].chars().next_back();
            rest = &rest[i + kw.len()..];
            if before.is_some_and(is_ident) {
                continue;
            }
            let name: String = rest.chars().take_while(|c| is_ident(*c)).collect();
            if name.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
                out.insert(name);
            }
        }
    }
    out
}

/// Whether `code`, outside its string literals, names the identifier `name`.
fn names_ident(code: &str, name: &str) -> bool {
    let code = without_strings(code);
    code.match_indices(name).any(|(i, _)| {
        !code[..i].chars().next_back().is_some_and(is_ident)
            && !code[i + name.len()..].chars().next().is_some_and(is_ident)
    })
}

/// Files outside a source's directory that name a type only that directory
/// declares. `sources/mod.rs` may name sources only in its lists.
fn source_type_leaks(mods: &BTreeMap<String, String>) -> Vec<String> {
    let mut by_dir: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut elsewhere: BTreeSet<String> = BTreeSet::new();
    for (m, code) in mods {
        match source_dir(m) {
            Some(d) => by_dir.entry(d).or_default().extend(declared_types(code)),
            None => elsewhere.extend(declared_types(code)),
        }
    }
    let list: BTreeSet<&str> = mods
        .get("sources")
        .map(|code| {
            // The lists: the cloud sources, the configured ones (with and
            // without namespace-scoped credentials), and the mirror map
            // asked first.
            let regions = [
                "fn by_host(",
                "fn statics(",
                "fn node_sources(",
                "fn node_statics(",
                "pub fn route(",
            ]
            .iter()
            .filter_map(|f| {
                let start = code.find(f)?;
                let end = code[start..].find("\n}").map_or(code.len(), |e| start + e);
                Some(&code[start..end])
            });
            let mut names = BTreeSet::new();
            for region in regions {
                for d in by_dir.keys() {
                    for t in &by_dir[d] {
                        if names_ident(region, t) {
                            names.insert(t.as_str());
                        }
                    }
                }
            }
            names
        })
        .unwrap_or_default();
    let mut leaks = Vec::new();
    for (m, code) in mods {
        let here = source_dir(m);
        for (dir, types) in &by_dir {
            if here == Some(*dir) {
                continue;
            }
            for t in types {
                // A name also declared outside the directory is not its own.
                let shared = elsewhere.contains(t)
                    || by_dir.iter().any(|(d, ts)| d != dir && ts.contains(t));
                if shared || (m == "sources" && list.contains(t.as_str())) {
                    continue;
                }
                if names_ident(code, t) {
                    leaks.push(format!("{m} names {dir}'s {t}"));
                }
            }
        }
    }
    leaks
}

/// `code` with the text of its string literals blanked.
fn without_strings(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let (mut in_str, mut escaped) = (false, false);
    let mut prev = ' ';
    for c in code.chars() {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
                out.push(c);
            }
        } else {
            // A char literal `'"'` does not open a string.
            if c == '"' && prev != '\'' {
                in_str = true;
            }
            out.push(c);
        }
        prev = c;
    }
    out
}

#[test]
fn no_source_specific_types_outside_their_directory() {
    let mods = modules();
    let leaks = source_type_leaks(&mods);
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}

#[test]
fn the_checker_sees_a_leak() {
    let mods: BTreeMap<String, String> = [
        (
            "sources::aws".to_string(),
            "pub struct EcrRegistry;".to_string(),
        ),
        ("run".to_string(), "fn f(r: EcrRegistry) {}".to_string()),
        ("doctor".to_string(), "fn g(r: EcrRegistryX) {}".to_string()),
    ]
    .into();
    assert_eq!(source_type_leaks(&mods), ["run names aws's EcrRegistry"]);
}
