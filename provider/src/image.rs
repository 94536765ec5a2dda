//! Image references, parsed and normalised the way the kubelet does before it
//! execs a provider (`nginx` becomes `docker.io/library/nginx`).
//!
//! The kubelet sends the repository without tag or digest; people running
//! `pullcred` by hand type either, so both are accepted and kept apart.
//! The grammar is the distribution project's reference grammar.

const DOCKER_HUB: &str = "docker.io";
const MAX_NAME_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Host, with `:port` when the reference has one, e.g. `registry:5000`.
    pub registry: String,
    /// The path after the registry, e.g. `library/nginx`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageError {
    pub image: String,
    pub why: &'static str,
}

impl std::fmt::Display for ImageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "image {:?} does not parse: {}",
            shorten(&self.image),
            self.why
        )
    }
}

impl std::error::Error for ImageError {}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(120) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

impl ImageRef {
    pub fn parse(input: &str) -> Result<ImageRef, ImageError> {
        let err = |why| ImageError {
            image: input.to_string(),
            why,
        };
        if input.is_empty() {
            return Err(err("empty"));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("contains whitespace or control characters"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                if !valid_digest(d) {
                    return Err(err("invalid digest"));
                }
                (r, Some(d.to_string()))
            }
            None => (input, None),
        };
        // A tag is a ':' after the last '/', so a registry port is not a tag.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                if !valid_tag(t) {
                    return Err(err("invalid tag"));
                }
                (&rest[..last_slash + i], Some(t.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(err("no repository name"));
        }
        let (registry, repository) = split_registry(name);
        if !valid_registry(registry) {
            return Err(err("invalid registry host"));
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        if repository.is_empty() || !repository.split('/').all(valid_path_component) {
            return Err(err(
                "invalid repository path (lowercase letters, digits and . _ __ - separators)",
            ));
        }
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(err("repository name longer than 255 characters"));
        }
        Ok(ImageRef {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository`: the string the kubelet sends.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The registry host without its port.
    pub fn host(&self) -> &str {
        host_of(&self.registry)
    }

    pub fn port(&self) -> Option<&str> {
        let host = host_of(&self.registry);
        self.registry[host.len()..].strip_prefix(':')
    }
}

fn host_of(registry: &str) -> &str {
    if registry.starts_with('[') {
        match registry.find(']') {
            Some(i) => &registry[..=i],
            None => registry,
        }
    } else {
        registry.split(':').next().unwrap_or(registry)
    }
}

fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            if first == "index.docker.io" {
                (DOCKER_HUB, rest)
            } else {
                (first, rest)
            }
        }
        _ => (DOCKER_HUB, name),
    }
}

fn valid_registry(reg: &str) -> bool {
    let (host, port) = if let Some(rest) = reg.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return false;
        };
        if inner.is_empty()
            || !inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return false;
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (None, Some(p)),
                None => return false,
            },
        }
    } else {
        match reg.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(reg), None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    match host {
        None => true,
        Some(h) => !h.is_empty() && h.split('.').all(valid_host_label),
    }
}

fn valid_host_label(l: &str) -> bool {
    let b = l.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_lower_alnum(b[0]) || !is_lower_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_lower_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_lower_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// `algorithm:hex`, algorithm `[a-z0-9]+([+._-][a-z0-9]+)*`, hex at least 32 chars;
/// sha256 must have exactly 64 and sha512 exactly 128.
fn valid_digest(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else {
        return false;
    };
    let alg_ok = !alg.is_empty()
        && alg.split(['+', '.', '_', '-']).all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    let hex_ok = hex.len() >= 32
        && hex
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    let len_ok = match alg {
        "sha256" => hex.len() == 64,
        "sha512" => hex.len() == 128,
        _ => true,
    };
    alg_ok && hex_ok && len_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn normalises_like_the_kubelet() {
        assert_eq!(p("nginx").name(), "docker.io/library/nginx");
        assert_eq!(p("library/nginx").name(), "docker.io/library/nginx");
        assert_eq!(p("foo/bar").name(), "docker.io/foo/bar");
        assert_eq!(
            p("docker.io/library/nginx").name(),
            "docker.io/library/nginx"
        );
        assert_eq!(p("docker.io/nginx").name(), "docker.io/library/nginx");
        assert_eq!(p("index.docker.io/foo/bar").name(), "docker.io/foo/bar");
        assert_eq!(p("localhost/foo").registry, "localhost");
        assert_eq!(p("localhost:5000/foo").registry, "localhost:5000");
    }

    #[test]
    fn keeps_ports_tags_and_digests_apart() {
        let d = "sha256:".to_string() + &"a".repeat(64);
        let r = p(&format!("registry.example.com:5000/team/app:1.2.3@{d}"));
        assert_eq!(r.registry, "registry.example.com:5000");
        assert_eq!(r.host(), "registry.example.com");
        assert_eq!(r.port(), Some("5000"));
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("1.2.3"));
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        let r = p("123456789012.dkr.ecr.us-west-2.amazonaws.com/team/app");
        assert_eq!(r.registry, "123456789012.dkr.ecr.us-west-2.amazonaws.com");
        assert_eq!(r.port(), None);
        assert_eq!(r.tag, None);
        let r = p("[::1]:5000/app");
        assert_eq!(r.host(), "[::1]");
        assert_eq!(r.port(), Some("5000"));
    }

    #[test]
    fn rejects_what_does_not_parse() {
        for bad in [
            "",
            " ",
            "UPPER/Case",
            "a.io/UPPER",
            "a.io/",
            "a.io//b",
            "a.io/b/",
            "a.io/-b",
            "a.io/b..c",
            "a.io:port/b",
            "a.io:123456/b",
            "-a.io/b",
            "a-.io/b",
            "a..io/b",
            "a.io/b:",
            "a.io/b:-tag",
            "a.io/b@sha256:abc",
            "a.io/b@md5",
            "a.io/b c",
            "a.io/b\n",
            "[zz]/b",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should not parse");
        }
        let long = format!("a.io/{}", "b".repeat(300));
        assert!(ImageRef::parse(&long).is_err());
    }

    #[test]
    fn error_names_the_image_and_reason() {
        let e = ImageRef::parse("a.io/B").unwrap_err();
        assert!(e.to_string().contains("a.io/B"));
        assert!(e.to_string().contains("repository path"));
    }
}
