//! The kubelet's image matching rules, restated.
//!
//! Three rules live here:
//! - [`glob_matches`]: does a provider's `matchImages` glob select an image?
//!   (the kubelet's `URLsMatchStr`);
//! - [`auth_key_matches`] and [`select_auth_keys`]: which keys of a
//!   `CredentialProviderResponse` `auth` map apply to an image;
//! - [`is_docker_hub_image`]: the Docker Hub fallback test.
//!
//! Both sides of a glob match are parsed as `https://` + the string, the way
//! Go's `net/url.Parse` does it (see [`parse_schemeless`]). The host is split
//! into host and port like Go's `net.SplitHostPort`; ports must be equal (a
//! missing port is not a wildcard); host labels (split on `.`) must be as many
//! on both sides and each glob label must match its image label under Go's
//! `path/filepath.Match` ([`path_match`]); finally the image path must start
//! with the glob path, as a plain string prefix.
//!
//! URL parsing follows the Go release the newest kubelets are built with
//! (Go 1.25.8 / 1.26.1 and later): a `[` anywhere but at the start of a host
//! is rejected, a bracketed host must be an IPv6 address, and a second `:` in
//! an unbracketed host is rejected. So character classes (`[a-z]`) cannot be
//! used in a host glob with such a kubelet; [`path_match`] still implements
//! them for completeness.

use std::fmt;
use std::net::Ipv6Addr;

/// Docker Hub's key in an `auth` map when no other key matches.
pub const DOCKER_HUB_FALLBACK_KEY: &str = "index.docker.io";

/// Which string of a match failed to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Side {
    /// A `matchImages` glob.
    Glob,
    /// The image being matched.
    Image,
    /// A key of a response's `auth` map.
    AuthKey,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Glob => "glob",
            Side::Image => "image",
            Side::AuthKey => "auth key",
        })
    }
}

/// Why a string failed to parse or match.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MatchErrorKind {
    /// An ASCII control character (Go: "invalid control character in URL").
    ControlCharacter,
    /// A `%` not followed by two hex digits, or an escape not allowed where
    /// it is (in a host only non-ASCII bytes may be escaped).
    InvalidEscape(String),
    /// A character Go does not accept in a host name (space, `{`, `|`, ...).
    InvalidHostCharacter(char),
    /// What follows the host is not `:` and digits.
    InvalidPort(String),
    /// `[` opens an IP literal that is never closed.
    MissingCloseBracket,
    /// A bracketed host that is not an IPv6 address, or a `[` that is not at
    /// the start of the host.
    InvalidIpLiteral(String),
    /// Characters not allowed in the `user@` part.
    InvalidUserinfo,
    /// A host label of the glob is not a well-formed `filepath.Match` pattern.
    BadPattern(String),
}

/// A string that could not be parsed as `https://` + itself, or a glob label
/// that is not a valid pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchError {
    input: String,
    side: Side,
    kind: MatchErrorKind,
}

impl MatchError {
    fn new(input: &str, side: Side, kind: MatchErrorKind) -> MatchError {
        MatchError {
            input: input.to_string(),
            side,
            kind,
        }
    }
    /// The string that failed, as given.
    pub fn input(&self) -> &str {
        &self.input
    }
    /// Which string it was.
    pub fn side(&self) -> Side {
        self.side
    }
    /// Why it failed.
    pub fn kind(&self) -> &MatchErrorKind {
        &self.kind
    }
}

impl fmt::Display for MatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = shorten(&self.input);
        match &self.kind {
            MatchErrorKind::BadPattern(label) => write!(
                f,
                "{} {shown:?}: host label {:?} is a malformed pattern",
                self.side,
                shorten(label)
            ),
            kind => {
                write!(
                    f,
                    "{} {shown:?} does not parse as URL \"https://{}\": ",
                    self.side,
                    shorten(&self.input)
                )?;
                match kind {
                    MatchErrorKind::ControlCharacter => {
                        f.write_str("invalid control character in URL")
                    }
                    MatchErrorKind::InvalidEscape(e) => write!(f, "invalid URL escape {e:?}"),
                    MatchErrorKind::InvalidHostCharacter(c) => {
                        write!(f, "invalid character {c:?} in host name")
                    }
                    MatchErrorKind::InvalidPort(p) => write!(f, "invalid port {p:?} after host"),
                    MatchErrorKind::MissingCloseBracket => f.write_str("missing ']' in host"),
                    MatchErrorKind::InvalidIpLiteral(h) => write!(f, "invalid IP-literal {h:?}"),
                    MatchErrorKind::InvalidUserinfo => f.write_str("invalid userinfo"),
                    MatchErrorKind::BadPattern(_) => unreachable!("handled above"),
                }
            }
        }
    }
}

impl std::error::Error for MatchError {}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// A string parsed as `https://` + itself, keeping what matching needs.
/// Host and path are unescaped, as Go's `URL.Host` and `URL.Path` are; they
/// are bytes because an escape may produce bytes that are not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemelessUrl {
    /// Host with its `:port`, e.g. `registry:5000` or `[::1]:5000`.
    pub host: Vec<u8>,
    /// Path, e.g. `/foo/bar`, or empty.
    pub path: Vec<u8>,
}

impl SchemelessUrl {
    /// The host split the way `net.SplitHostPort` would, falling back to the
    /// whole host and no port when it refuses (as the kubelet does).
    pub fn labels_and_port(&self) -> (Vec<&[u8]>, &[u8]) {
        let (host, port) = split_host_port(&self.host).unwrap_or((&self.host, b""));
        (host.split(|&b| b == b'.').collect(), port)
    }
}

/// Parses `https://` + `s` like Go's `url.Parse`, or says why Go would refuse.
pub fn parse_schemeless(s: &str, side: Side) -> Result<SchemelessUrl, MatchError> {
    parse_https(s, s, side)
}

/// Parses `https://` + `rest` (`shown` is used in errors).
fn parse_https(shown: &str, rest: &str, side: Side) -> Result<SchemelessUrl, MatchError> {
    let err = |kind| MatchError::new(shown, side, kind);
    if rest.bytes().any(|b| b < b' ' || b == 0x7f) {
        return Err(err(MatchErrorKind::ControlCharacter));
    }
    // Fragment first, then the query: neither takes part in matching, but an
    // invalid escape in the fragment fails the parse.
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (rest, None),
    };
    let rest = if rest.ends_with('?') && rest.matches('?').count() == 1 {
        &rest[..rest.len() - 1]
    } else {
        rest.split_once('?').map_or(rest, |(r, _)| r)
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host_part = match authority.rfind('@') {
        Some(i) => {
            let userinfo = &authority[..i];
            if !userinfo.chars().all(valid_userinfo_char) {
                return Err(err(MatchErrorKind::InvalidUserinfo));
            }
            unescape(userinfo, Mode::Other).map_err(err)?;
            &authority[i + 1..]
        }
        None => authority,
    };
    let host = parse_host(host_part).map_err(err)?;
    let path = unescape(path, Mode::Other).map_err(err)?;
    if let Some(f) = fragment {
        unescape(f, Mode::Other).map_err(err)?;
    }
    Ok(SchemelessUrl { host, path })
}

fn valid_userinfo_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._:~!$&'()*+,;=%@".contains(c)
}

/// Go's `parseHost` for an `https` URL.
fn parse_host(host: &str) -> Result<Vec<u8>, MatchErrorKind> {
    match host.rfind('[') {
        Some(0) => {
            let close = host.rfind(']').ok_or(MatchErrorKind::MissingCloseBracket)?;
            let colon_port = &host[close + 1..];
            if !valid_optional_port(colon_port) {
                return Err(MatchErrorKind::InvalidPort(colon_port.to_string()));
            }
            let inner = &host[1..close];
            let mut literal = match inner.find("%25") {
                Some(z) => {
                    let mut v = unescape(&inner[..z], Mode::Host)?;
                    v.extend(unescape(&inner[z..], Mode::Zone)?);
                    v
                }
                None => unescape(inner, Mode::Host)?,
            };
            if !is_ipv6_literal(&literal) {
                return Err(MatchErrorKind::InvalidIpLiteral(
                    String::from_utf8_lossy(&literal).into_owned(),
                ));
            }
            let mut out = Vec::with_capacity(literal.len() + colon_port.len() + 2);
            out.push(b'[');
            out.append(&mut literal);
            out.push(b']');
            out.extend_from_slice(colon_port.as_bytes());
            Ok(out)
        }
        Some(_) => Err(MatchErrorKind::InvalidIpLiteral(host.to_string())),
        None => {
            if let Some(i) = host.find(':') {
                let colon_port = &host[i..];
                if !valid_optional_port(colon_port) {
                    return Err(MatchErrorKind::InvalidPort(colon_port.to_string()));
                }
            }
            unescape(host, Mode::Host)
        }
    }
}

/// An IPv6 address, optionally with a non-empty `%zone`; not plain IPv4.
fn is_ipv6_literal(literal: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(literal) else {
        return false;
    };
    let addr = match text.split_once('%') {
        Some((_, "")) => return false,
        Some((a, _)) => a,
        None => text,
    };
    addr.parse::<Ipv6Addr>().is_ok()
}

fn valid_optional_port(p: &str) -> bool {
    p.is_empty() || (p.starts_with(':') && p[1..].bytes().all(|b| b.is_ascii_digit()))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Host,
    Zone,
    /// Path, fragment, userinfo: only the escapes are checked.
    Other,
}

/// Characters Go accepts unescaped in a host (below 0x80).
fn host_char_ok(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.~!$&'()*+,;=:[]<>\"".contains(&b)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Go's `unescape` for the modes that matter here.
fn unescape(s: &str, mode: Mode) -> Result<Vec<u8>, MatchErrorKind> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (hi, lo) = match (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                (Some(hi), Some(lo)) => (hi, lo),
                _ => {
                    let end = (i + 3).min(b.len());
                    return Err(MatchErrorKind::InvalidEscape(
                        String::from_utf8_lossy(&b[i..end]).into_owned(),
                    ));
                }
            };
            let escape = &s[i..i + 3];
            let v = hi << 4 | lo;
            let refused = match mode {
                Mode::Host => hi < 8 && escape != "%25",
                Mode::Zone => escape != "%25" && v != b' ' && v < 0x80 && !host_char_ok(v),
                Mode::Other => false,
            };
            if refused {
                return Err(MatchErrorKind::InvalidEscape(escape.to_string()));
            }
            out.push(v);
            i += 3;
        } else {
            if mode != Mode::Other && b[i] < 0x80 && !host_char_ok(b[i]) {
                return Err(MatchErrorKind::InvalidHostCharacter(b[i] as char));
            }
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Go's `net.SplitHostPort`: `None` when it would return an error.
fn split_host_port(hp: &[u8]) -> Option<(&[u8], &[u8])> {
    let last_colon = hp.iter().rposition(|&b| b == b':')?;
    let (host, after_open, after_close) = if hp.first() == Some(&b'[') {
        let close = hp.iter().position(|&b| b == b']')?;
        // The port colon must come right after the closing bracket.
        if close + 1 != last_colon {
            return None;
        }
        (&hp[1..close], 1, close + 1)
    } else {
        let host = &hp[..last_colon];
        if host.contains(&b':') {
            return None;
        }
        (host, 0, 0)
    };
    if hp[after_open..].contains(&b'[') || hp[after_close..].contains(&b']') {
        return None;
    }
    Some((host, &hp[last_colon + 1..]))
}

/// kubelet's `URLsMatchStr`: does `matchImages` glob `glob` match image
/// `image` (both without scheme)?
///
/// Err when either side fails to parse as URL(`"https://"` + s) the way Go's
/// `url.Parse` would reject it (e.g. `"%invalid%"`), or when a glob label the
/// comparison reaches is a malformed pattern.
pub fn glob_matches(glob: &str, image: &str) -> Result<bool, MatchError> {
    let g = parse_schemeless(glob, Side::Glob)?;
    let t = parse_schemeless(image, Side::Image)?;
    urls_match(glob, &g, &t)
}

fn urls_match(glob: &str, g: &SchemelessUrl, t: &SchemelessUrl) -> Result<bool, MatchError> {
    let (glob_labels, glob_port) = g.labels_and_port();
    let (image_labels, image_port) = t.labels_and_port();
    if glob_port != image_port
        || glob_labels.len() != image_labels.len()
        || !t.path.starts_with(&g.path)
    {
        return Ok(false);
    }
    for (pattern, label) in glob_labels.iter().zip(&image_labels) {
        match path_match(pattern, label) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(BadPattern) => {
                let label = String::from_utf8_lossy(pattern).into_owned();
                return Err(MatchError::new(
                    glob,
                    Side::Glob,
                    MatchErrorKind::BadPattern(label),
                ));
            }
        }
    }
    Ok(true)
}

/// The check the kubelet applies to a `matchImages` entry when it loads a
/// config: it must parse as URL(`"https://"` + glob).
pub fn validate_glob(glob: &str) -> Result<(), MatchError> {
    parse_schemeless(glob, Side::Glob).map(|_| ())
}

/// Beyond the kubelet: every host label of the glob is a well-formed pattern.
/// A malformed label makes every match attempt fail with an error.
pub fn check_glob_patterns(glob: &str) -> Result<(), MatchError> {
    let g = parse_schemeless(glob, Side::Glob)?;
    let (labels, _) = g.labels_and_port();
    for label in labels {
        if path_match(label, b"").is_err() {
            let label = String::from_utf8_lossy(label).into_owned();
            return Err(MatchError::new(
                glob,
                Side::Glob,
                MatchErrorKind::BadPattern(label),
            ));
        }
    }
    Ok(())
}

/// The schemeless key the kubelet files an `auth` entry under, or `None` when
/// the key does not parse (the kubelet logs and ignores such an entry).
///
/// `https://` is added when the key has neither `https://` nor `http://`;
/// a path starting `/v1/` or `/v2/` loses that prefix; a path of `/` (or
/// empty) is dropped; the key is then host + path.
pub fn normalize_auth_key(key: &str) -> Option<String> {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let url = parse_https(key, rest, Side::AuthKey).ok()?;
    let mut path: &[u8] = &url.path;
    if path.starts_with(b"/v2/") || path.starts_with(b"/v1/") {
        path = &path[3..];
    }
    let mut out = url.host;
    if !path.is_empty() && path != b"/" {
        out.extend_from_slice(path);
    }
    // An escape may have produced bytes that are not UTF-8; such a key can
    // never equal a real image's host, and Go would fail to re-parse most.
    String::from_utf8(out).ok()
}

/// kubelet keyring rule for a key in a `CredentialProviderResponse` `auth`
/// map: add `https://` when no scheme, strip a leading `/v1/` or `/v2/` path
/// prefix, drop a path of `/`, then glob-match against the image.
pub fn auth_key_matches(key: &str, image: &str) -> bool {
    normalize_auth_key(key).is_some_and(|k| glob_matches(&k, image).unwrap_or(false))
}

/// A one-line warning for a docker-config (or `auth`) key whose path does not
/// end at a `/`, or `None` when the key has no path or ends with `/`.
///
/// The kubelet compares a key's path with the image's as a plain string
/// prefix (`strings.HasPrefix(targetURL.Path, globURL.Path)` in `URLsMatch`,
/// pkg/credentialprovider/keyring.go; see [`glob_matches`]), so
/// `registry.example.com/dockerhub-cache` also matches
/// `registry.example.com/dockerhub-cache-attacker/x`. A trailing `/` is kept
/// by the kubelet's key parsing (only a path of exactly `/` is dropped, and a
/// leading `/v1/` or `/v2/`), so `registry.example.com/dockerhub-cache/`
/// matches only repositories under that path. The warning never holds
/// anything but the key.
pub fn path_key_prefix_warning(key: &str) -> Option<String> {
    let normalized = normalize_auth_key(key)?;
    let (host, path) = normalized.split_once('/')?;
    if path.is_empty() || path.ends_with('/') {
        return None;
    }
    let key = shorten(key);
    let (host, path) = (shorten(host), shorten(path));
    Some(format!(
        "key {key:?} is a plain string prefix to the kubelet: it also matches longer repository names \
         such as {host}/{path}-other/app; write it as \"{host}/{path}/\" to limit it to repositories under {path}/"
    ))
}

/// Which `auth` keys the kubelet would use for an image, and how it chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSelection<'a> {
    /// Matching keys (as given), in the order the kubelet tries them: reverse
    /// lexical order of their normalised form. Every one contributes
    /// credentials; the first is tried first.
    pub keys: Vec<&'a str>,
    /// True when no key matched and the Docker Hub fallback key was used.
    pub docker_hub_fallback: bool,
}

/// Applies the kubelet keyring lookup to the keys of an `auth` map.
pub fn select_auth_keys<'a, I>(keys: I, image: &str) -> AuthSelection<'a>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut normalized: Vec<(String, &'a str)> = keys
        .into_iter()
        .filter_map(|k| normalize_auth_key(k).map(|n| (n, k)))
        .collect();
    normalized.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(a.1)));
    let matched: Vec<&'a str> = normalized
        .iter()
        .filter(|(n, _)| glob_matches(n, image).unwrap_or(false))
        .map(|(_, k)| *k)
        .collect();
    if !matched.is_empty() {
        return AuthSelection {
            keys: matched,
            docker_hub_fallback: false,
        };
    }
    if is_docker_hub_image(image) {
        let fallback: Vec<&'a str> = normalized
            .iter()
            .filter(|(n, _)| n == DOCKER_HUB_FALLBACK_KEY)
            .map(|(_, k)| *k)
            .collect();
        if !fallback.is_empty() {
            return AuthSelection {
                keys: fallback,
                docker_hub_fallback: true,
            };
        }
    }
    AuthSelection {
        keys: Vec::new(),
        docker_hub_fallback: false,
    }
}

/// kubelet's "is this a Docker Hub image" check: a first path component that
/// is `docker.io` or `index.docker.io`, or that has no `.` or `:`, or a
/// single component.
pub fn is_docker_hub_image(image: &str) -> bool {
    let (first, rest) = match image.split_once('/') {
        Some((f, r)) => (f, Some(r)),
        None => (image, None),
    };
    if first.is_empty() {
        return false;
    }
    rest.is_none()
        || first == "docker.io"
        || first == "index.docker.io"
        || !first.contains(['.', ':'])
}

/// A `filepath.Match` pattern that is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPattern;

impl fmt::Display for BadPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("syntax error in pattern")
    }
}

impl std::error::Error for BadPattern {}

const SEPARATOR: u8 = b'/';

/// Go's `path/filepath.Match` on a Unix system: `*` matches any run of
/// non-`/` bytes (also none), `?` one non-`/` character, `[...]` a class
/// (ranges `a-z`, negation `[^...]`), `\` escapes the next character. Matching
/// is byte- and case-exact. A malformed pattern is an error; like Go, the
/// error can go unnoticed when the name fails to match before the malformed
/// part is reached by a successful path, but the rest is always checked
/// before reporting a mismatch.
pub fn path_match(pattern: &[u8], name: &[u8]) -> Result<bool, BadPattern> {
    let mut pattern = pattern;
    let mut name = name;
    'chunks: while !pattern.is_empty() {
        let (star, chunk, rest) = next_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing star takes everything left, unless it crosses a '/'.
            return Ok(!name.contains(&SEPARATOR));
        }
        let first = match_chunk(chunk, name);
        if let Ok(Some(left)) = first
            && (left.is_empty() || !pattern.is_empty())
        {
            name = left;
            continue;
        }
        let mut failure = first.err();
        if failure.is_none() && star {
            // Let the star swallow 1, 2, ... bytes, never a separator.
            let mut skip = 0;
            while skip < name.len() && name[skip] != SEPARATOR {
                skip += 1;
                match match_chunk(chunk, &name[skip..]) {
                    Ok(Some(left)) => {
                        if pattern.is_empty() && !left.is_empty() {
                            continue;
                        }
                        name = left;
                        continue 'chunks;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        // No match: still refuse a pattern whose remainder is malformed.
        while !pattern.is_empty() {
            let (_, chunk, rest) = next_chunk(pattern);
            pattern = rest;
            match_chunk(chunk, b"")?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Splits off leading stars and the chunk up to the next unescaped star
/// outside a class: (had stars, chunk, rest).
fn next_chunk(mut pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let mut star = false;
    while let [b'*', rest @ ..] = pattern {
        star = true;
        pattern = rest;
    }
    let mut in_class = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            // Skip the escaped byte.
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => in_class = true,
            b']' => in_class = false,
            b'*' if !in_class => break,
            _ => {}
        }
        i += 1;
    }
    (star, &pattern[..i], &pattern[i..])
}

/// Decodes one UTF-8 character; an invalid byte decodes as U+FFFD, length 1.
fn decode_char(s: &[u8]) -> (char, usize, bool) {
    let head = &s[..s.len().min(4)];
    let valid = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or(""),
    };
    match valid.chars().next() {
        Some(c) => (c, c.len_utf8(), true),
        None => (char::REPLACEMENT_CHARACTER, 1, false),
    }
}

/// Matches one chunk (no stars) at the start of `s`: `Ok(Some(rest))` on a
/// match, `Ok(None)` on a mismatch, `Err` when the chunk is malformed (the
/// whole chunk is parsed even after a mismatch, so errors are not missed).
fn match_chunk<'s>(mut chunk: &[u8], mut s: &'s [u8]) -> Result<Option<&'s [u8]>, BadPattern> {
    let mut failed = false;
    while let Some(&c) = chunk.first() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c {
            b'[' => {
                let mut ch = '\0';
                if !failed {
                    let (decoded, n, _) = decode_char(s);
                    ch = decoded;
                    s = &s[n..];
                }
                chunk = &chunk[1..];
                let negated = chunk.first() == Some(&b'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut ranges = 0;
                loop {
                    if chunk.first() == Some(&b']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = class_char(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk.first() == Some(&b'-') {
                        let (h, rest) = class_char(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= ch && ch <= hi {
                        matched = true;
                    }
                    ranges += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            b'?' => {
                if !failed {
                    if s[0] == SEPARATOR {
                        failed = true;
                    }
                    let (_, n, _) = decode_char(s);
                    s = &s[n..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                if c == b'\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return Err(BadPattern);
                    }
                }
                if !failed {
                    if chunk[0] != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    Ok(if failed { None } else { Some(s) })
}

/// One (possibly escaped) character of a class; the class must go on after it.
fn class_char(chunk: &[u8]) -> Result<(char, &[u8]), BadPattern> {
    let mut chunk = chunk;
    match chunk.first() {
        None | Some(b'-') | Some(b']') => return Err(BadPattern),
        Some(b'\\') => {
            chunk = &chunk[1..];
            if chunk.is_empty() {
                return Err(BadPattern);
            }
        }
        Some(_) => {}
    }
    let (c, n, valid) = decode_char(chunk);
    let rest = &chunk[n..];
    if !valid || rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((c, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> Result<bool, BadPattern> {
        path_match(p.as_bytes(), n.as_bytes())
    }

    // Cases from Go's path/filepath match tests, restated.
    #[test]
    fn path_match_semantics() {
        let cases: &[(&str, &str, Result<bool, BadPattern>)] = &[
            ("abc", "abc", Ok(true)),
            ("*", "abc", Ok(true)),
            ("*c", "abc", Ok(true)),
            ("a*", "a", Ok(true)),
            ("a*", "abc", Ok(true)),
            ("a*", "ab/c", Ok(false)),
            ("a*/b", "abc/b", Ok(true)),
            ("a*/b", "a/c/b", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Ok(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Ok(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Ok(false)),
            ("ab[c]", "abc", Ok(true)),
            ("ab[b-d]", "abc", Ok(true)),
            ("ab[e-g]", "abc", Ok(false)),
            ("ab[^c]", "abc", Ok(false)),
            ("ab[^b-d]", "abc", Ok(false)),
            ("ab[^e-g]", "abc", Ok(true)),
            ("a\\*b", "a*b", Ok(true)),
            ("a\\*b", "ab", Ok(false)),
            ("a?b", "a☺b", Ok(true)),
            ("a[^a]b", "a☺b", Ok(true)),
            ("a???b", "a☺b", Ok(false)),
            ("a[^a][^a][^a]b", "a☺b", Ok(false)),
            ("[a-ζ]*", "α", Ok(true)),
            ("*[a-ζ]", "A", Ok(false)),
            ("a?b", "a/b", Ok(false)),
            ("a*b", "a/b", Ok(false)),
            ("[\\]a]", "]", Ok(true)),
            ("[\\-]", "-", Ok(true)),
            ("[x\\-]", "x", Ok(true)),
            ("[x\\-]", "-", Ok(true)),
            ("[x\\-]", "z", Ok(false)),
            ("[\\-x]", "x", Ok(true)),
            ("[\\-x]", "-", Ok(true)),
            ("[\\-x]", "a", Ok(false)),
            ("[]a]", "]", Err(BadPattern)),
            ("[-]", "-", Err(BadPattern)),
            ("[x-]", "x", Err(BadPattern)),
            ("[x-]", "-", Err(BadPattern)),
            ("[x-]", "z", Err(BadPattern)),
            ("[-x]", "x", Err(BadPattern)),
            ("[-x]", "-", Err(BadPattern)),
            ("[-x]", "a", Err(BadPattern)),
            ("\\", "a", Err(BadPattern)),
            ("[a-b-c]", "a", Err(BadPattern)),
            ("[", "a", Err(BadPattern)),
            ("[^", "a", Err(BadPattern)),
            ("[^bc", "a", Err(BadPattern)),
            ("a[", "a", Err(BadPattern)),
            ("a[", "ab", Err(BadPattern)),
            ("a[", "x", Err(BadPattern)),
            ("a/b[", "x", Err(BadPattern)),
            ("*x", "xxx", Ok(true)),
            ("", "", Ok(true)),
            ("", "a", Ok(false)),
            ("*", "", Ok(true)),
            ("?", "", Ok(false)),
            ("*kubernetes", "kubernetes", Ok(true)),
            ("Kubernetes", "kubernetes", Ok(false)),
        ];
        for (p, n, want) in cases {
            assert_eq!(m(p, n), *want, "Match({p:?}, {n:?})");
        }
    }

    #[test]
    fn invalid_utf8_in_class_is_a_bad_pattern() {
        assert_eq!(path_match(b"[\xff]", b"a"), Err(BadPattern));
        // A lone invalid byte in a name is one character for '?'.
        assert_eq!(path_match(b"a?b", b"a\xffb"), Ok(true));
    }

    #[test]
    fn url_parse_rejections() {
        for s in [
            "%invalid%",
            "foo%zz.io",
            "foo%41.io", // an escaped ASCII byte in a host
            "foo bar.io",
            "foo{x}.io",
            "foo|x.io",
            "foo\\x.io",
            "foo^x.io",
            "host:abc",
            "host:1:2",
            "a:b",
            "[::1",
            "[::1]x",
            "[1.2.3.4]",
            "[not-an-ip]:5000",
            "[fe80::1%25]",
            "reg[0-9].io",
            "a\u{7f}b",
            "a\tb",
            "host/path%zz",
            "host/p#frag%zz",
            "us{er@host",
        ] {
            let e = validate_glob(s).expect_err(s);
            assert_eq!(e.input(), s);
            assert!(!e.to_string().contains('\n'));
        }
        for s in [
            "",
            "host",
            "host:",
            "host:5000",
            "[::1]",
            "[::1]:5000/foo",
            "[fe80::1%25eth0]:5000",
            "[::ffff:1.2.3.4]",
            "foo%C3%A9.io",
            "user:pa@ss@host/x",
            "host/path?query%zz",
            "host/%2F",
            "*.*.io/a b",
        ] {
            assert!(validate_glob(s).is_ok(), "{s:?}: {:?}", validate_glob(s));
        }
    }

    #[test]
    fn error_display_names_the_string_and_why() {
        let e = glob_matches("%invalid%", "foo.io").unwrap_err();
        assert_eq!(e.side(), Side::Glob);
        assert_eq!(
            e.to_string(),
            "glob \"%invalid%\" does not parse as URL \"https://%invalid%\": invalid URL escape \"%in\""
        );
        let e = glob_matches("foo.io", "foo.io:x/y").unwrap_err();
        assert_eq!(e.side(), Side::Image);
        assert!(e.to_string().contains("invalid port \":x\""), "{e}");
        let e = glob_matches("a[.io", "ab.io").unwrap_err();
        assert_eq!(e.kind(), &MatchErrorKind::InvalidIpLiteral("a[.io".into()));
        let e = glob_matches("a\\.io", "a.io").unwrap_err();
        assert!(matches!(
            e.kind(),
            MatchErrorKind::InvalidHostCharacter('\\')
        ));
    }

    #[test]
    fn ports() {
        assert_eq!(glob_matches("reg.io:5000", "reg.io:5000/x"), Ok(true));
        assert_eq!(glob_matches("reg.io", "reg.io:5000/x"), Ok(false));
        assert_eq!(glob_matches("reg.io:5000", "reg.io/x"), Ok(false));
        assert_eq!(glob_matches("*.io:5000", "reg.io:5001"), Ok(false));
        // An empty port is no port.
        assert_eq!(glob_matches("reg.io:", "reg.io/x"), Ok(true));
        // A star does not cover a port.
        assert_eq!(glob_matches("reg.*", "reg.io:5000"), Ok(false));
    }

    #[test]
    fn ipv6_hosts() {
        assert_eq!(glob_matches("[::1]:5000", "[::1]:5000/foo"), Ok(true));
        assert_eq!(glob_matches("[::1]:5000", "[::1]:5001/foo"), Ok(false));
        // No port: net.SplitHostPort fails, so the bracketed host stays one
        // label, and as a pattern "[::1]" is a character class (':' or '1'):
        // like the kubelet, a port-less IPv6 glob never matches its own host.
        assert_eq!(glob_matches("[::1]", "[::1]/foo"), Ok(false));
        assert_eq!(glob_matches("[::1]", ":"), Ok(false));
        assert_eq!(glob_matches("[::1]", "1"), Ok(true));
        // An IPv4-mapped address has dots: labels are compared one by one.
        assert_eq!(
            glob_matches("[::ffff:1.2.3.4]:80", "[::ffff:1.2.3.4]:80"),
            Ok(true)
        );
        assert!(glob_matches("[*]", "[::1]").is_err());
    }

    #[test]
    fn labels_and_paths() {
        // Empty labels are labels too.
        assert_eq!(glob_matches("a..io", "a..io"), Ok(true));
        assert_eq!(glob_matches("a.*.io", "a..io"), Ok(true));
        assert_eq!(glob_matches("*", ""), Ok(true));
        assert_eq!(glob_matches("reg.io.", "reg.io"), Ok(false));
        // Case-sensitive.
        assert_eq!(glob_matches("Reg.io", "reg.io"), Ok(false));
        // Plain string prefix for paths, not segment-aware.
        assert_eq!(glob_matches("reg.io/foo", "reg.io/foobar"), Ok(true));
        assert_eq!(glob_matches("reg.io/foo/", "reg.io/foo"), Ok(false));
        // Escapes are decoded before the path comparison.
        assert_eq!(glob_matches("reg.io/a%2Fb", "reg.io/a/b/c"), Ok(true));
        // A query or fragment takes no part.
        assert_eq!(glob_matches("reg.io/a?x", "reg.io/a/b"), Ok(true));
        assert_eq!(glob_matches("reg.io#x", "reg.io/a"), Ok(true));
        // '?' in a host glob begins the query.
        assert_eq!(glob_matches("re?.io", "reg.io"), Ok(false));
        assert_eq!(glob_matches("re?.io", "re"), Ok(true));
        // Userinfo is ignored by matching.
        assert_eq!(glob_matches("me@reg.io", "reg.io"), Ok(true));
    }

    #[test]
    fn malformed_patterns() {
        // A malformed label reached by the comparison is an error.
        assert!(
            glob_matches("a\\", "a")
                .is_err_and(|e| e.kind() == &MatchErrorKind::InvalidHostCharacter('\\'))
        );
        assert!(check_glob_patterns("*.io").is_ok());
        assert!(path_match(b"a[b", b"a").is_err());
        assert!(path_match(b"[^]", b"a").is_err());
    }

    #[test]
    fn auth_key_normalisation() {
        assert_eq!(
            normalize_auth_key("https://quay.io/v1/").as_deref(),
            Some("quay.io")
        );
        assert_eq!(
            normalize_auth_key("https://quay.io/v2/foo").as_deref(),
            Some("quay.io/foo")
        );
        assert_eq!(
            normalize_auth_key("http://quay.io/").as_deref(),
            Some("quay.io")
        );
        assert_eq!(
            normalize_auth_key("quay.io:443/x").as_deref(),
            Some("quay.io:443/x")
        );
        assert_eq!(normalize_auth_key("%zz"), None);
        assert!(!auth_key_matches("%zz", "quay.io"));
    }

    #[test]
    fn key_selection_order_and_fallback() {
        let keys = [
            "*.docker.io",
            "prefix.docker.io",
            "index.docker.io",
            "https://prefix.docker.io/v2/",
        ];
        let s = select_auth_keys(keys, "prefix.docker.io/foo");
        assert_eq!(
            s.keys,
            vec![
                "prefix.docker.io",
                "https://prefix.docker.io/v2/",
                "*.docker.io"
            ]
        );
        assert!(!s.docker_hub_fallback);
        let s = select_auth_keys(["index.docker.io", "quay.io"], "docker.io/library/nginx");
        assert_eq!(s.keys, vec!["index.docker.io"]);
        assert!(s.docker_hub_fallback);
        let s = select_auth_keys(["docker.io", "index.docker.io"], "docker.io/library/nginx");
        assert_eq!(s.keys, vec!["docker.io"]);
        assert!(!s.docker_hub_fallback);
        let s = select_auth_keys(["index.docker.io"], "quay.io/foo");
        assert!(s.keys.is_empty());
    }
}

/// The repository the kubelet matches and sends for an image reference:
/// tag and digest dropped, Docker Hub names completed
/// (`nginx:1` becomes `docker.io/library/nginx`).
pub fn normalize_image(image: &str) -> String {
    let no_digest = image.split_once('@').map_or(image, |(n, _)| n);
    let last_slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    let name = match no_digest[last_slash..].rfind(':') {
        Some(i) => &no_digest[..last_slash + i],
        None => no_digest,
    };
    let (domain, rest) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (first, rest.to_string())
        }
        _ => ("docker.io", name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    if domain == "docker.io" && !rest.contains('/') {
        format!("docker.io/library/{rest}")
    } else {
        format!("{domain}/{rest}")
    }
}

#[cfg(test)]
mod normalize_tests {
    use super::normalize_image;

    #[test]
    fn normalises_like_the_kubelet() {
        for (input, want) in [
            ("nginx", "docker.io/library/nginx"),
            ("nginx:1.27", "docker.io/library/nginx"),
            ("foo/bar", "docker.io/foo/bar"),
            ("index.docker.io/foo", "docker.io/library/foo"),
            ("registry:5000/foo/bar:tag", "registry:5000/foo/bar"),
            ("localhost/foo", "localhost/foo"),
            ("quay.io/a/b@sha256:abcd", "quay.io/a/b"),
            (
                "123456789012.dkr.ecr.us-west-2.amazonaws.com/app:v1",
                "123456789012.dkr.ecr.us-west-2.amazonaws.com/app",
            ),
        ] {
            assert_eq!(normalize_image(input), want, "{input}");
        }
    }
}

#[cfg(test)]
mod path_key_tests {
    use super::{auth_key_matches, path_key_prefix_warning};

    /// The kubelet's path rule is a plain string prefix (keyring.go
    /// `URLsMatch`): the bare key leaks to a longer name, the trailing-`/`
    /// form does not, and still serves the project's repositories.
    #[test]
    fn a_bare_path_key_is_a_prefix_and_a_trailing_slash_confines_it() {
        let bare = "registry.example.com/dockerhub-cache";
        let confined = "registry.example.com/dockerhub-cache/";
        let attacker = "registry.example.com/dockerhub-cache-attacker/x";
        let own = "registry.example.com/dockerhub-cache/library/nginx";
        assert!(auth_key_matches(bare, attacker));
        assert!(auth_key_matches(bare, own));
        assert!(!auth_key_matches(confined, attacker));
        assert!(auth_key_matches(confined, own));
        // Same with a scheme and a /v2/ prefix, as docker configs write keys.
        assert!(!auth_key_matches(
            "https://registry.example.com/v2/dockerhub-cache/",
            attacker
        ));
        assert!(auth_key_matches(
            "https://registry.example.com/v2/dockerhub-cache/",
            own
        ));
    }

    #[test]
    fn warns_only_for_paths_without_a_trailing_slash() {
        let w = path_key_prefix_warning("registry.example.com/dockerhub-cache").unwrap();
        assert!(!w.contains('\n'));
        assert!(
            w.contains("\"registry.example.com/dockerhub-cache\""),
            "{w}"
        );
        assert!(
            w.contains("\"registry.example.com/dockerhub-cache/\""),
            "{w}"
        );
        assert!(w.contains("dockerhub-cache-other"), "{w}");
        let w = path_key_prefix_warning("https://harbor.example.com:8443/v2/team-a/app").unwrap();
        assert!(w.contains("\"harbor.example.com:8443/team-a/app/\""), "{w}");
        for none in [
            "registry.example.com",
            "registry.example.com/",
            "https://index.docker.io/v1/",
            "https://harbor.example.com/v2/",
            "registry.example.com/dockerhub-cache/",
            "registry.local:5000",
            "%zz/x",
        ] {
            assert_eq!(path_key_prefix_warning(none), None, "{none}");
        }
        // Long keys are shortened, never the whole of an absurd input.
        let long = format!("r.io/{}", "p".repeat(5000));
        assert!(path_key_prefix_warning(&long).unwrap().len() < 1000);
    }
}
