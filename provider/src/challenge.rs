//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1): the registry's answer to
//! an anonymous `GET /v2/` says where and for which service to get a token.
//!
//! A header may carry several challenges (`Basic realm="a", Bearer realm="b"`);
//! parameter values are tokens or quoted strings, which may hold commas,
//! spaces and backslash escapes. Scheme and parameter names are
//! case-insensitive. Pure functions on strings. Used by the ACR exchange, the
//! static-credential registry check and `pullcred doctor`.

/// One challenge: its scheme and parameters, names lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a registry's Bearer challenge asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bearer {
    pub realm: String,
    pub service: String,
}

/// Parses every challenge in a header value.
pub fn parse(header: &str) -> Result<Vec<Challenge>, String> {
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip(|b| b == b',' || is_space(b));
        if p.done() {
            break;
        }
        let scheme = p.token();
        if scheme.is_empty() {
            return Err(format!(
                "unexpected {:?} where a scheme was expected",
                p.rest_char()
            ));
        }
        let mut ch = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
        };
        p.skip(is_space);
        if p.token68() {
            // `Scheme token68` (Negotiate, Basic credentials): no parameters.
            out.push(ch);
            continue;
        }
        // auth-params: name = value, separated by commas, until the next scheme.
        loop {
            let save = p.i;
            p.skip(|b| b == b',' || is_space(b));
            let name = p.token();
            p.skip(is_space);
            if name.is_empty() || !p.eat(b'=') {
                // not a parameter: a new challenge (or a token68) starts here
                p.i = save;
                break;
            }
            p.skip(is_space);
            let value = if p.eat(b'"') {
                p.quoted()?
            } else {
                let v = p.token();
                if v.is_empty() {
                    return Err(format!("parameter {name:?} has no value"));
                }
                v.to_string()
            };
            ch.params.push((name.to_ascii_lowercase(), value));
            p.skip(is_space);
            if !p.done() && p.s[p.i] != b',' {
                return Err(format!(
                    "unexpected {:?} after parameter {name:?}",
                    p.rest_char()
                ));
            }
        }
        out.push(ch);
    }
    Ok(out)
}

/// The Bearer challenge's realm and service, both required.
pub fn bearer(header: &str) -> Result<Bearer, String> {
    let all = parse(header)?;
    let Some(b) = all.iter().find(|c| c.scheme == "bearer") else {
        let schemes: Vec<&str> = all.iter().map(|c| c.scheme.as_str()).collect();
        return Err(format!(
            "no Bearer challenge in WWW-Authenticate (schemes: {})",
            if schemes.is_empty() {
                "none".to_string()
            } else {
                schemes.join(", ")
            }
        ));
    };
    let get = |name: &str| match b.param(name) {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => Err(format!("the Bearer challenge has no {name}")),
    };
    Ok(Bearer {
        realm: get("realm")?,
        service: get("service")?,
    })
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// RFC 9110 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while !self.done() && f(self.s[self.i]) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if !self.done() && self.s[self.i] == b {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn token(&mut self) -> &'a str {
        let start = self.i;
        // Unquoted values in the wild include '/' and ':' (realm=https://...).
        self.skip(|b| is_tchar(b) || b == b'/' || b == b':');
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or("")
    }

    /// Consumes a token68 (`1*( ALPHA / DIGIT / "-._~+/" ) *"="`) if one,
    /// and not an auth-param, starts here.
    fn token68(&mut self) -> bool {
        let t68 = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
        let rest = &self.s[self.i..];
        let body = rest.iter().take_while(|b| t68(**b)).count();
        let pad = rest[body..].iter().take_while(|b| **b == b'=').count();
        let end = body + pad;
        // A token68 is followed by the end or a comma; `name = value` is not.
        let after = rest[end..].iter().find(|b| !is_space(**b));
        let is = body > 0 && matches!(after, None | Some(b','));
        if is {
            self.i += end;
        }
        is
    }

    fn quoted(&mut self) -> Result<String, String> {
        let mut v = Vec::new();
        while !self.done() {
            let b = self.s[self.i];
            self.i += 1;
            match b {
                b'"' => return Ok(String::from_utf8_lossy(&v).into_owned()),
                b'\\' if !self.done() => {
                    v.push(self.s[self.i]);
                    self.i += 1;
                }
                _ => v.push(b),
            }
        }
        Err("unterminated quoted string".into())
    }

    fn rest_char(&self) -> char {
        std::str::from_utf8(&self.s[self.i..])
            .ok()
            .and_then(|s| s.chars().next())
            .unwrap_or('?')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(realm: &str, service: &str) -> Bearer {
        Bearer {
            realm: realm.into(),
            service: service.into(),
        }
    }

    #[test]
    fn docker_hub_and_basic() {
        let all =
            parse(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#)
                .unwrap();
        assert_eq!(all[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(all[0].param("scope"), None);
        let all = parse(r#"Basic  Realm = "Registry Realm" "#).unwrap();
        assert_eq!(
            (all[0].scheme.as_str(), all[0].param("realm")),
            ("basic", Some("Registry Realm"))
        );
    }

    #[test]
    fn acr_challenge_quoted() {
        assert_eq!(
            bearer(
                r#"Bearer realm="https://myreg.azurecr.io/oauth2/token",service="myreg.azurecr.io""#
            ),
            Ok(b(
                "https://myreg.azurecr.io/oauth2/token",
                "myreg.azurecr.io"
            ))
        );
    }

    #[test]
    fn unquoted_values_including_the_last_one() {
        // The anchor's parser mishandles an unquoted last value.
        assert_eq!(
            bearer("Bearer realm=https://r.azurecr.io/oauth2/token,service=r.azurecr.io"),
            Ok(b("https://r.azurecr.io/oauth2/token", "r.azurecr.io"))
        );
        assert_eq!(
            bearer("Bearer service=r.azurecr.io, realm=\"https://r.azurecr.io/oauth2/token\""),
            Ok(b("https://r.azurecr.io/oauth2/token", "r.azurecr.io"))
        );
    }

    #[test]
    fn commas_spaces_and_escapes_inside_quotes() {
        let c = bearer(r#"Bearer realm = "https://x/t?a=1,b=2" , service="svc \"q\", x", scope="repository:a:pull,push""#)
            .unwrap();
        assert_eq!(c, b("https://x/t?a=1,b=2", r#"svc "q", x"#));
    }

    #[test]
    fn case_insensitive_scheme_and_names() {
        assert_eq!(bearer("BEARER Realm=\"r\", SERVICE=s"), Ok(b("r", "s")));
    }

    #[test]
    fn several_challenges_in_one_header() {
        let all = parse(r#"Basic realm="Registry, basic", Bearer realm="https://r/t",service="r", Negotiate abc=="#).unwrap();
        let schemes: Vec<&str> = all.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["basic", "bearer", "negotiate"]);
        assert_eq!(all[0].param("realm"), Some("Registry, basic"));
        assert_eq!(
            bearer(r#"Basic realm="x", Bearer realm="https://r/t",service="r""#),
            Ok(b("https://r/t", "r"))
        );
    }

    #[test]
    fn missing_parameters_and_schemes() {
        assert_eq!(
            bearer(r#"Bearer realm="https://r/t""#),
            Err("the Bearer challenge has no service".into())
        );
        assert_eq!(
            bearer(r#"Bearer service="r""#),
            Err("the Bearer challenge has no realm".into())
        );
        assert_eq!(
            bearer(r#"Bearer realm="",service=r"#),
            Err("the Bearer challenge has no realm".into())
        );
        assert_eq!(
            bearer("Bearer"),
            Err("the Bearer challenge has no realm".into())
        );
        let e = bearer(r#"Basic realm="Registry""#).unwrap_err();
        assert!(
            e.contains("no Bearer challenge") && e.contains("basic"),
            "{e}"
        );
        assert!(bearer("").unwrap_err().contains("none"));
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        for bad in [
            r#"Bearer realm="unterminated"#,
            "Bearer realm=,service=x",
            "Bearer realm=\"a\" junk",
            "=x",
            "Bearer realm=é",
        ] {
            assert!(bearer(bad).is_err(), "{bad}");
        }
    }
}
