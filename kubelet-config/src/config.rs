//! The kubelet's `CredentialProviderConfig` (`kubelet.config.k8s.io/v1`,
//! `v1beta1`, `v1alpha1`) and how a file of it is decoded.
//!
//! The kubelet decodes strictly: unknown fields, duplicate fields, wrong
//! types, a missing or wrong `kind`/`apiVersion` all reject the file. It stops
//! at the first problem; [`decode`] finds them all (each with the line the
//! YAML parser gives), then keeps what is well-typed so the config rules can
//! still be checked and reported in the same run.
//!
//! The field set depends on the file's `apiVersion`: `tokenAttributes` exists
//! only in `kubelet.config.k8s.io/v1` (the v1beta1 and v1alpha1 Go types have
//! no such field, so strict decoding rejects it there as unknown).
//!
//! A YAML file is read up to the end of its first document, as the kubelet's
//! decoder (`sigs.k8s.io/yaml`, one `yaml.Unmarshal`) does: anything after a
//! second `---` is never looked at, and [`Decoded::ignored_document_line`]
//! says where it starts.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `kind` of the config file.
pub const CONFIG_KIND: &str = "CredentialProviderConfig";
/// The config `apiVersion`s the kubelet reads.
pub const CONFIG_API_VERSIONS: [&str; 3] = [
    "kubelet.config.k8s.io/v1",
    "kubelet.config.k8s.io/v1beta1",
    "kubelet.config.k8s.io/v1alpha1",
];
/// The preferred config `apiVersion`.
pub const CONFIG_API_VERSION: &str = CONFIG_API_VERSIONS[0];
/// The only config `apiVersion` with `tokenAttributes`.
pub const CONFIG_API_V1: &str = CONFIG_API_VERSIONS[0];
/// The exec protocol `apiVersion`s a provider entry may name.
pub const PROVIDER_API_VERSIONS: [&str; 3] = [
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
];
/// The exec protocol version that carries service account tokens.
pub const PROVIDER_API_V1: &str = PROVIDER_API_VERSIONS[0];

/// The whole config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CredentialProviderConfig {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub providers: Vec<CredentialProvider>,
}

/// One provider entry: which plugin to run, for which images, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CredentialProvider {
    /// The plugin's file name in the kubelet's bin dir.
    #[serde(default)]
    pub name: String,
    /// Globs selecting the images this plugin is run for.
    #[serde(default)]
    pub match_images: Vec<String>,
    /// Go duration string; required by the kubelet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_cache_duration: Option<String>,
    /// `credentialprovider.kubelet.k8s.io/...` version the plugin speaks.
    #[serde(default)]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<ExecEnvVar>,
    /// Service account token mode (exec protocol v1 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_attributes: Option<TokenAttributes>,
}

/// An environment variable for the plugin (these win over the kubelet's own).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecEnvVar {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

/// `tokenAttributes` (KEP-4412).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenAttributes {
    #[serde(default)]
    pub service_account_token_audience: String,
    /// `ServiceAccount` or `Token`.
    #[serde(default)]
    pub cache_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_service_account: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_service_account_annotation_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub optional_service_account_annotation_keys: Vec<String>,
}

/// How a file's text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// JSON when the first non-blank character opens an object, else YAML
    /// (as the kubelet, which reads both the same way whatever the name).
    pub fn sniff(text: &str) -> Format {
        match text
            .trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n'])
            .as_bytes()
            .first()
        {
            Some(b'{') => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// The file is not YAML/JSON at all (nothing of it can be used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub format: Format,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.format {
            Format::Yaml => "YAML",
            Format::Json => "JSON",
        };
        match (self.line, self.column) {
            (Some(l), Some(c)) => {
                write!(f, "line {l} column {c}: invalid {what}: {}", self.message)
            }
            (Some(l), None) => write!(f, "line {l}: invalid {what}: {}", self.message),
            _ => write!(f, "invalid {what}: {}", self.message),
        }
    }
}

impl std::error::Error for SyntaxError {}

/// A strict-decoding problem the kubelet would reject the file for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaProblem {
    /// Index of the provider entry, when inside one.
    pub provider: Option<usize>,
    /// Field path in the kubelet's style, e.g. `providers.tokenAttributes.foo`.
    pub field: String,
    pub line: Option<u64>,
    pub kind: SchemaProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaProblemKind {
    UnknownField,
    /// A field of a newer config version in a file of an older one
    /// (`tokenAttributes` in `v1beta1`/`v1alpha1`); `version` is the file's.
    UnknownFieldInVersion {
        version: String,
        needs: &'static str,
    },
    WrongType {
        expected: &'static str,
        found: &'static str,
    },
    MissingKind,
    WrongKind(String),
    MissingApiVersion,
    WrongApiVersion(String),
    NotAMapping,
    EmptyDocument,
}

impl fmt::Display for SchemaProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaProblemKind::UnknownField => f.write_str("strict decoding error: unknown field"),
            SchemaProblemKind::UnknownFieldInVersion { version, needs } => write!(
                f,
                "strict decoding error: unknown field (it exists only in {needs}; this file is {version})"
            ),
            SchemaProblemKind::WrongType { expected, found } => {
                write!(
                    f,
                    "strict decoding error: expected {expected}, found {found}"
                )
            }
            SchemaProblemKind::MissingKind => f.write_str("Object 'Kind' is missing"),
            SchemaProblemKind::WrongKind(k) => {
                write!(f, "kind {k:?} is not {CONFIG_KIND:?}")
            }
            SchemaProblemKind::MissingApiVersion => f.write_str("Object 'apiVersion' is missing"),
            SchemaProblemKind::WrongApiVersion(v) => write!(
                f,
                "apiVersion {v:?} is not supported (supported: {})",
                CONFIG_API_VERSIONS.join(", ")
            ),
            SchemaProblemKind::NotAMapping => f.write_str("the document is not a mapping"),
            SchemaProblemKind::EmptyDocument => f.write_str("the document is empty"),
        }
    }
}

/// A decoded file: what could be read, and every strict-decoding problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub config: CredentialProviderConfig,
    pub problems: Vec<SchemaProblem>,
    /// YAML only: the line where a second document starts. The kubelet reads
    /// the first document of a file and ignores the rest.
    pub ignored_document_line: Option<u64>,
}

/// Decodes a config file's text (YAML or JSON, see [`Format::sniff`]).
pub fn decode(text: &str) -> Result<Decoded, SyntaxError> {
    let (text, ignored_document_line) = match Format::sniff(text) {
        Format::Json => (text, None),
        Format::Yaml => first_yaml_document(text),
    };
    let root = parse_tree(text)?;
    let mut walk = Walk::default();
    let config = walk.config(&root);
    Ok(Decoded {
        config,
        problems: walk.problems,
        ignored_document_line,
    })
}

/// The text of a YAML stream's first document, and the line (from 1) where
/// the next document starts when one follows with any content.
///
/// Document markers (`---` or `...` at the start of a line, then a blank or
/// the end of the line) cannot occur inside any YAML scalar, so a line scan
/// finds them. A `---` before the first document's content opens that
/// document; after content, a `---` or `...` ends it. What follows counts as
/// a second document only if it holds more than blanks, comments and markers.
pub fn first_yaml_document(text: &str) -> (&str, Option<u64>) {
    fn marker(line: &str, m: &str) -> bool {
        line.strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
    }
    fn is_content(line: &str) -> bool {
        let t = line.trim();
        !t.is_empty() && !t.starts_with('#')
    }
    // Where the first document ends (byte offset), and the line that
    // starts the next one (a `---`, or the first content after `...`).
    let mut started = false;
    let mut end: Option<usize> = None;
    let mut next_start: Option<u64> = None;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches('\n');
        let number = i as u64 + 1;
        let dashes = marker(bare, "---");
        let dots = marker(bare, "...");
        match end {
            None => {
                if started && (dashes || dots) {
                    end = Some(offset);
                    if dashes {
                        next_start = Some(number);
                        if is_content(&bare[3..]) {
                            return (&text[..offset], Some(number));
                        }
                    }
                } else if dashes || (is_content(bare) && !bare.starts_with('%')) {
                    started = true;
                }
            }
            Some(e) => {
                if dashes {
                    next_start.get_or_insert(number);
                    if is_content(&bare[3..]) {
                        return (&text[..e], next_start);
                    }
                } else if !dots && is_content(bare) && !bare.starts_with('%') {
                    return (&text[..e], Some(*next_start.get_or_insert(number)));
                }
            }
        }
        offset += line.len();
    }
    (&text[..end.unwrap_or(text.len())], None)
}

/// Decodes strictly, as the kubelet does: the config, or the first problem.
pub fn decode_strict(text: &str) -> Result<CredentialProviderConfig, String> {
    let decoded = decode(text).map_err(|e| e.to_string())?;
    match decoded.problems.first() {
        None => Ok(decoded.config),
        Some(p) => Err(format!("{}: {}", p.field, p.kind)),
    }
}

// ---------------------------------------------------------------------------
// A located document tree, format-independent.

#[derive(Debug, Clone, PartialEq)]
struct Node {
    line: Option<u64>,
    value: Value,
}

/// A mapping key and the line it is on (a mapping-valued field's own line,
/// where its value's line is that of its first child).
#[derive(Debug, Clone, PartialEq)]
struct Key {
    name: String,
    line: Option<u64>,
}

impl std::ops::Deref for Key {
    type Target = String;
    fn deref(&self) -> &String {
        &self.name
    }
}

impl PartialEq<str> for Key {
    fn eq(&self, other: &str) -> bool {
        self.name == other
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Bool(bool),
    Number,
    String(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

impl Value {
    fn describe(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number => "a number",
            Value::String(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        let spanned = serde_saphyr::Spanned::<Value>::deserialize(d)?;
        let line = spanned.referenced.line();
        Ok(Node {
            line: (line > 0).then_some(line),
            value: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

thread_local! {
    /// Set while the YAML reader builds a tree (see [`parse_tree`]).
    static YAML_KEYS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

struct ValueVisitor;

impl<'de> serde::de::Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Number)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Number)
    }
    fn visit_i128<E>(self, _: i128) -> Result<Value, E> {
        Ok(Value::Number)
    }
    fn visit_u128<E>(self, _: u128) -> Result<Value, E> {
        Ok(Value::Number)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Number)
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        loop {
            // Only the YAML reader can say where a key is; serde_json's map
            // keys cannot be read as `Spanned`.
            let key = if YAML_KEYS.with(|k| k.get()) {
                match map.next_key::<serde_saphyr::Spanned<String>>()? {
                    None => break,
                    Some(k) => {
                        let line = k.referenced.line();
                        Key {
                            name: k.value,
                            line: (line > 0).then_some(line),
                        }
                    }
                }
            } else {
                match map.next_key::<String>()? {
                    None => break,
                    Some(name) => Key { name, line: None },
                }
            };
            let value = map.next_value::<Node>()?;
            // The kubelet's strict decoding rejects a repeated field.
            if entries
                .iter()
                .any(|(k, _): &(Key, Node)| k.name == key.name)
            {
                return Err(serde::de::Error::custom(format!(
                    "duplicate field {:?}",
                    key.name
                )));
            }
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

fn parse_tree(text: &str) -> Result<Node, SyntaxError> {
    match Format::sniff(text) {
        Format::Json => serde_json::from_str::<Node>(text).map_err(|e| SyntaxError {
            format: Format::Json,
            line: Some(e.line() as u64).filter(|&l| l > 0),
            column: Some(e.column() as u64).filter(|&c| c > 0),
            message: json_message(&e),
        }),
        Format::Yaml => {
            let options = serde_saphyr::options! { with_snippet: false };
            struct YamlKeys;
            impl Drop for YamlKeys {
                fn drop(&mut self) {
                    YAML_KEYS.with(|k| k.set(false));
                }
            }
            YAML_KEYS.with(|k| k.set(true));
            let guard = YamlKeys;
            let parsed: Result<Option<Node>, _> =
                serde_saphyr::from_str_with_options(text, options);
            drop(guard);
            match parsed {
                Ok(Some(node)) => Ok(node),
                Ok(None) => Ok(Node {
                    line: None,
                    value: Value::Null,
                }),
                Err(e) => {
                    let loc = e.location();
                    Err(SyntaxError {
                        format: Format::Yaml,
                        line: loc.map(|l| l.line()).filter(|&l| l > 0),
                        column: loc.map(|l| l.column()).filter(|&c| c > 0),
                        message: yaml_message(&e.to_string()),
                    })
                }
            }
        }
    }
}

/// First line of the YAML error, without its `error: line N column M: ` head.
fn yaml_message(full: &str) -> String {
    let first = full.lines().next().unwrap_or(full).trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    if let Some(rest) = first.strip_prefix("line ")
        && let Some((_, msg)) = rest.split_once(": ")
    {
        return msg.to_string();
    }
    first.to_string()
}

fn json_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

// ---------------------------------------------------------------------------
// The strict schema walk.

#[derive(Default)]
struct Walk {
    problems: Vec<SchemaProblem>,
    provider: Option<usize>,
    /// The file's `apiVersion` when it is a known one other than v1: fields
    /// of v1 only are unknown there.
    older_version: Option<String>,
}

impl Walk {
    fn problem(&mut self, field: &str, line: Option<u64>, kind: SchemaProblemKind) {
        self.problems.push(SchemaProblem {
            provider: self.provider,
            field: field.to_string(),
            line,
            kind,
        });
    }

    fn wrong_type(&mut self, field: &str, node: &Node, expected: &'static str) {
        let found = node.value.describe();
        self.problem(
            field,
            node.line,
            SchemaProblemKind::WrongType { expected, found },
        );
    }

    fn string(&mut self, field: &str, node: &Node) -> String {
        match &node.value {
            Value::String(s) => s.clone(),
            // JSON null leaves a Go string empty.
            Value::Null => String::new(),
            _ => {
                self.wrong_type(field, node, "a string");
                String::new()
            }
        }
    }

    fn strings(&mut self, field: &str, node: &Node) -> Vec<String> {
        match &node.value {
            Value::Seq(items) => items.iter().map(|i| self.string(field, i)).collect(),
            Value::Null => Vec::new(),
            _ => {
                self.wrong_type(field, node, "a list of strings");
                Vec::new()
            }
        }
    }

    fn entries<'n>(&mut self, field: &str, node: &'n Node) -> Option<&'n [(Key, Node)]> {
        match &node.value {
            Value::Map(entries) => Some(entries),
            Value::Null => None,
            _ => {
                self.wrong_type(field, node, "a mapping");
                None
            }
        }
    }

    fn config(&mut self, root: &Node) -> CredentialProviderConfig {
        let mut config = CredentialProviderConfig::default();
        let entries = match &root.value {
            Value::Map(e) => e.as_slice(),
            Value::Null => {
                self.problem("", root.line, SchemaProblemKind::EmptyDocument);
                return config;
            }
            _ => {
                self.problem("", root.line, SchemaProblemKind::NotAMapping);
                return config;
            }
        };
        let (mut kind_line, mut version_line) = (root.line, root.line);
        // The Go type is chosen by apiVersion before any field is read.
        self.older_version = entries.iter().find_map(|(key, node)| match &node.value {
            Value::String(v)
                if key == "apiVersion"
                    && v != CONFIG_API_V1
                    && CONFIG_API_VERSIONS.contains(&v.as_str()) =>
            {
                Some(v.clone())
            }
            _ => None,
        });
        for (key, node) in entries {
            match key.as_str() {
                "kind" => {
                    config.kind = self.string("kind", node);
                    kind_line = node.line;
                }
                "apiVersion" => {
                    config.api_version = self.string("apiVersion", node);
                    version_line = node.line;
                }
                "providers" => match &node.value {
                    Value::Seq(items) => {
                        for (i, item) in items.iter().enumerate() {
                            self.provider = Some(i);
                            let p = self.provider_entry(item);
                            config.providers.push(p);
                        }
                        self.provider = None;
                    }
                    Value::Null => {}
                    _ => self.wrong_type("providers", node, "a list"),
                },
                other => self.problem(
                    other,
                    key.line.or(node.line),
                    SchemaProblemKind::UnknownField,
                ),
            }
        }
        if config.kind.is_empty() {
            self.problem("kind", kind_line, SchemaProblemKind::MissingKind);
        } else if config.kind != CONFIG_KIND {
            let k = config.kind.clone();
            self.problem("kind", kind_line, SchemaProblemKind::WrongKind(k));
        }
        if config.api_version.is_empty() {
            self.problem(
                "apiVersion",
                version_line,
                SchemaProblemKind::MissingApiVersion,
            );
        } else if !CONFIG_API_VERSIONS.contains(&config.api_version.as_str()) {
            let v = config.api_version.clone();
            self.problem(
                "apiVersion",
                version_line,
                SchemaProblemKind::WrongApiVersion(v),
            );
        }
        config
    }

    fn provider_entry(&mut self, node: &Node) -> CredentialProvider {
        let mut p = CredentialProvider::default();
        let Some(entries) = self.entries("providers", node) else {
            return p;
        };
        for (key, node) in entries {
            match key.as_str() {
                "name" => p.name = self.string("providers.name", node),
                "matchImages" => p.match_images = self.strings("providers.matchImages", node),
                "defaultCacheDuration" => match &node.value {
                    Value::String(s) => p.default_cache_duration = Some(s.clone()),
                    Value::Null => {}
                    _ => {
                        self.wrong_type("providers.defaultCacheDuration", node, "a duration string")
                    }
                },
                "apiVersion" => p.api_version = self.string("providers.apiVersion", node),
                "args" => p.args = self.strings("providers.args", node),
                "env" => match &node.value {
                    Value::Seq(items) => {
                        for item in items {
                            let var = self.env_var(item);
                            p.env.push(var);
                        }
                    }
                    Value::Null => {}
                    _ => self.wrong_type("providers.env", node, "a list"),
                },
                "tokenAttributes" if self.older_version.is_some() => {
                    let version = self.older_version.clone().unwrap_or_default();
                    self.problem(
                        "providers.tokenAttributes",
                        key.line.or(node.line),
                        SchemaProblemKind::UnknownFieldInVersion {
                            version,
                            needs: CONFIG_API_V1,
                        },
                    );
                }
                "tokenAttributes" => {
                    if let Some(entries) = self.entries("providers.tokenAttributes", node) {
                        p.token_attributes = Some(self.token_attributes(entries));
                    }
                }
                other => self.problem(
                    &format!("providers.{other}"),
                    key.line.or(node.line),
                    SchemaProblemKind::UnknownField,
                ),
            }
        }
        p
    }

    fn env_var(&mut self, node: &Node) -> ExecEnvVar {
        let mut var = ExecEnvVar::default();
        let Some(entries) = self.entries("providers.env", node) else {
            return var;
        };
        for (key, node) in entries {
            match key.as_str() {
                "name" => var.name = self.string("providers.env.name", node),
                "value" => var.value = self.string("providers.env.value", node),
                other => self.problem(
                    &format!("providers.env.{other}"),
                    key.line.or(node.line),
                    SchemaProblemKind::UnknownField,
                ),
            }
        }
        var
    }

    fn token_attributes(&mut self, entries: &[(Key, Node)]) -> TokenAttributes {
        const BASE: &str = "providers.tokenAttributes";
        let mut t = TokenAttributes::default();
        for (key, node) in entries {
            let field = format!("{BASE}.{key}");
            match key.as_str() {
                "serviceAccountTokenAudience" => {
                    t.service_account_token_audience = self.string(&field, node)
                }
                "cacheType" => t.cache_type = self.string(&field, node),
                "requireServiceAccount" => match node.value {
                    Value::Bool(b) => t.require_service_account = Some(b),
                    Value::Null => {}
                    _ => self.wrong_type(&field, node, "a boolean"),
                },
                "requiredServiceAccountAnnotationKeys" => {
                    t.required_service_account_annotation_keys = self.strings(&field, node)
                }
                "optionalServiceAccountAnnotationKeys" => {
                    t.optional_service_account_annotation_keys = self.strings(&field, node)
                }
                _ => self.problem(
                    &field,
                    key.line.or(node.line),
                    SchemaProblemKind::UnknownField,
                ),
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: foobar
    matchImages: [\"foobar.registry.io\"]
    defaultCacheDuration: 1m
    apiVersion: credentialprovider.kubelet.k8s.io/v1alpha1
";

    #[test]
    fn decodes_yaml_and_json_alike() {
        let y = decode(BASE).unwrap();
        assert!(y.problems.is_empty(), "{:?}", y.problems);
        let json = serde_json::to_string(&y.config).unwrap();
        let j = decode(&json).unwrap();
        assert_eq!(j, y);
        assert_eq!(
            y.config.providers[0].default_cache_duration.as_deref(),
            Some("1m")
        );
    }

    #[test]
    fn every_unknown_field_with_its_line() {
        let text = format!("{BASE}    foo: 1\n    tokenAttributes:\n      bar: x\nextra: true\n");
        let d = decode(&text).unwrap();
        let got: Vec<(&str, Option<u64>)> = d
            .problems
            .iter()
            .map(|p| (p.field.as_str(), p.line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("providers.foo", Some(8)),
                ("providers.tokenAttributes.bar", Some(10)),
                ("extra", Some(11))
            ]
        );
        assert!(
            d.problems
                .iter()
                .all(|p| p.kind == SchemaProblemKind::UnknownField)
        );
        // The rest is still read.
        assert_eq!(d.config.providers[0].name, "foobar");
    }

    #[test]
    fn wrong_types_and_kind() {
        let text = BASE
            .replace("name: foobar", "name: 12")
            .replace("kind: CredentialProviderConfig", "kind: WrongKind");
        let d = decode(&text).unwrap();
        assert!(d.problems.iter().any(|p| p.field == "providers.name"
            && matches!(
                p.kind,
                SchemaProblemKind::WrongType {
                    found: "a number",
                    ..
                }
            )));
        assert!(
            d.problems
                .iter()
                .any(|p| p.field == "kind" && p.line == Some(2))
        );
    }

    #[test]
    fn syntax_errors_carry_lines() {
        let e = decode("apiVersion: v1\nkind: [\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(!e.to_string().contains('\n'));
        let e = decode("{\n \"kind\": \"x\",\n}").unwrap_err();
        assert_eq!((e.format, e.line), (Format::Json, Some(3)));
        let e = decode("kind: a\nkind: b\n").unwrap_err();
        assert!(e.message.contains("duplicate"), "{e}");
        let e = decode("{\"kind\": \"a\",\n \"kind\": \"b\"}").unwrap_err();
        assert_eq!((e.format, e.line), (Format::Json, Some(2)));
        assert!(e.message.contains("duplicate field \"kind\""), "{e}");
    }

    #[test]
    fn only_the_first_yaml_document_is_read() {
        let cases: [(&str, &str, Option<u64>); 9] = [
            ("a: 1\n", "a: 1\n", None),
            ("a: 1\n---\nb: 2\n", "a: 1\n", Some(2)),
            ("---\na: 1\n---\nb: 2\n", "---\na: 1\n", Some(3)),
            (
                "# c\n%YAML 1.2\n---\na: 1\n...\n",
                "# c\n%YAML 1.2\n---\na: 1\n",
                None,
            ),
            ("a: 1\n...\n# done\n", "a: 1\n", None),
            ("a: 1\n---\n# only a comment\n", "a: 1\n", None),
            ("a: 1\n--- {b: 2}\n", "a: 1\n", Some(2)),
            ("a: |\n  ---x\n  text\n", "a: |\n  ---x\n  text\n", None),
            ("a: 1\n...\nb: 2\n", "a: 1\n", Some(3)),
        ];
        for (text, first, line) in cases {
            assert_eq!(first_yaml_document(text), (first, line), "{text:?}");
        }
        let d = decode("kind: CredentialProviderConfig\n---\nkind: [\n").unwrap();
        assert_eq!(d.ignored_document_line, Some(2));
        assert_eq!(d.config.kind, CONFIG_KIND);
        // JSON is never split.
        let j = decode("{\"kind\": \"x\"}\n---\n").unwrap_err();
        assert_eq!(j.format, Format::Json);
    }

    #[test]
    fn token_attributes_exist_only_in_config_v1() {
        let with = |version: &str| {
            BASE.replace(
                "credentialprovider.kubelet.k8s.io/v1alpha1",
                "credentialprovider.kubelet.k8s.io/v1",
            )
            .replace(
                "apiVersion: kubelet.config.k8s.io/v1\n",
                &format!("apiVersion: {version}\n"),
            ) + "    tokenAttributes:\n      serviceAccountTokenAudience: a\n"
        };
        assert!(
            decode(&with("kubelet.config.k8s.io/v1"))
                .unwrap()
                .problems
                .is_empty()
        );
        for v in [
            "kubelet.config.k8s.io/v1beta1",
            "kubelet.config.k8s.io/v1alpha1",
        ] {
            let d = decode(&with(v)).unwrap();
            assert_eq!(d.problems.len(), 1, "{v}: {:?}", d.problems);
            assert_eq!(d.problems[0].field, "providers.tokenAttributes");
            // The key's own line, not its first child's.
            assert_eq!(d.problems[0].line, Some(8));
            assert!(matches!(
                d.problems[0].kind,
                SchemaProblemKind::UnknownFieldInVersion { .. }
            ));
            assert!(d.problems[0].kind.to_string().contains("unknown field"));
            assert_eq!(d.config.providers[0].token_attributes, None);
        }
    }

    #[test]
    fn empty_and_scalar_documents() {
        let d = decode("").unwrap();
        assert_eq!(d.problems[0].kind, SchemaProblemKind::EmptyDocument);
        let d = decode("just a string\n").unwrap();
        assert_eq!(d.problems[0].kind, SchemaProblemKind::NotAMapping);
    }
}
