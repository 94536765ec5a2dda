//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1), as registries send them:
//! `Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`.
//!
//! Values may be quoted (with `\` escapes and commas inside) or bare tokens;
//! a header may carry several challenges; parameters may be missing.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercased: `bearer`, `basic`.
    pub scheme: String,
    /// Parameter names lowercased; values as sent, unquoted.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses every challenge in a header value. Malformed tails are dropped;
/// what parsed before them is kept.
pub fn parse(header: &str) -> Vec<Challenge> {
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        p.skip_ws_and_commas();
        let Some(scheme) = p.token() else { break };
        let mut ch = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: BTreeMap::new(),
        };
        loop {
            p.skip_ws();
            let save = p.i;
            // token68 (e.g. `Negotiate abc==`) or a name=value pair
            let Some(name) = p.token() else { break };
            p.skip_ws();
            if !p.eat(b'=') {
                // not a parameter: this is the next challenge's scheme
                p.i = save;
                break;
            }
            p.skip_ws();
            let value = if p.peek() == Some(b'"') {
                match p.quoted() {
                    Some(v) => Some(v),
                    None => break, // unterminated: drop it
                }
            } else {
                p.token()
            };
            let Some(value) = value else {
                // `name=` with nothing after: keep it empty
                ch.params.entry(name.to_ascii_lowercase()).or_default();
                p.skip_ws();
                if !p.eat(b',') {
                    break;
                }
                continue;
            };
            ch.params.entry(name.to_ascii_lowercase()).or_insert(value);
            p.skip_ws();
            if !p.eat(b',') {
                break;
            }
        }
        out.push(ch);
        if p.i >= p.s.len() {
            break;
        }
        // Guard against no progress on garbage.
        if p.token_start_invalid() {
            p.i += 1;
        }
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn skip_ws_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    fn token_start_invalid(&self) -> bool {
        self.peek().is_some_and(|b| !is_tchar(b))
    }

    /// An RFC 9110 token (with `/` and `:`, which bare realm URLs use).
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn quoted(&mut self) -> Option<String> {
        debug_assert_eq!(self.peek(), Some(b'"'));
        self.i += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => return Some(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        None // unterminated
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(h: &str) -> Challenge {
        let v = parse(h);
        assert_eq!(v.len(), 1, "{h}: {v:?}");
        v.into_iter().next().unwrap()
    }

    #[test]
    fn docker_hub_bearer() {
        let c = one(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#);
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(c.param("scope"), None);
    }

    #[test]
    fn unquoted_values() {
        // the value the existing Azure provider's parser gets wrong
        let c = one("Bearer realm=https://myreg.azurecr.io/oauth2/token,service=myreg.azurecr.io");
        assert_eq!(
            c.param("realm"),
            Some("https://myreg.azurecr.io/oauth2/token")
        );
        assert_eq!(c.param("service"), Some("myreg.azurecr.io"));
    }

    #[test]
    fn commas_and_escapes_inside_quotes() {
        let c = one(
            r#"Bearer realm="https://r/t",scope="repository:a/b:pull,push",error="say \"hi\"""#,
        );
        assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));
        assert_eq!(c.param("error"), Some(r#"say "hi""#));
    }

    #[test]
    fn basic_and_spacing_and_case() {
        let c = one(r#"Basic  Realm = "Registry Realm" "#);
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.param("realm"), Some("Registry Realm"));
        let c = one("basic");
        assert_eq!(c.scheme, "basic");
        assert!(c.params.is_empty());
    }

    #[test]
    fn several_challenges() {
        let v = parse(r#"Basic realm="x", Bearer realm="https://a/token",service="s""#);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].scheme, "basic");
        assert_eq!(v[1].scheme, "bearer");
        assert_eq!(v[1].param("service"), Some("s"));
    }

    #[test]
    fn missing_and_malformed_parameters() {
        let c = one("Bearer service=s");
        assert_eq!(c.param("realm"), None);
        let c = one(r#"Bearer realm="unterminated"#);
        assert_eq!(c.param("realm"), None);
        let c = one("Bearer realm=,service=s");
        assert_eq!(c.param("realm"), Some(""));
        assert_eq!(c.param("service"), Some("s"));
        assert!(parse("").is_empty());
        assert!(parse("   ,, ").is_empty());
        // garbage never loops or panics
        for g in [
            "\"\"\"",
            "=,=,=",
            "Bearer ===",
            "Bearer realm=\"\\",
            "\u{0}\u{1}",
        ] {
            let _ = parse(g);
        }
    }
}
