//! The YAML as written: serde structs that mirror `gateway.yaml` key for key
//! (`deny_unknown_fields` everywhere), and the deserialization of one section at a time
//! that turns serde's messages into located, user-facing ones.
//!
//! Values whose meaning depends on the key (`verify: on`, `max_body_size: 10m`,
//! `read: 60s`, enum names) are kept as [`Scalar`] here and judged in `compile`, so each
//! key can say exactly what it accepts.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_yaml::Value;

use crate::location::{join_index, join_key};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub listen: Scalar,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub level: Option<Scalar>,
    pub access: Option<Scalar>,
    pub format: Option<Scalar>,
    pub stderr_format: Option<Scalar>,
}

/// `paths:` — how request paths are normalized (certgate-path).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPaths {
    pub encoded_slashes: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub name: Option<String>,
    pub listen: OneOrMany<Scalar>,
    pub server_names: Option<OneOrMany<String>>,
    pub tls: RawTls,
    pub client_auth: Option<RawClientAuth>,
    pub identity: Option<RawIdentity>,
    pub routes: Option<Vec<RawRoute>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub cert: String,
    pub key: String,
    pub protocols: Option<OneOrMany<Scalar>>,
    pub alpn: Option<OneOrMany<Scalar>>,
    pub session_resumption: Option<bool>,
    pub session_ticket_keys: Option<OneOrMany<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClientAuth {
    pub verify: Option<Scalar>,
    pub ca: Option<String>,
    pub trusted_ca: Option<OneOrMany<String>>,
    pub crl: Option<OneOrMany<String>>,
    pub verify_depth: Option<u32>,
    pub on_failure: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentity {
    pub preset: Option<OneOrMany<Scalar>>,
    pub set: Option<OrderedMap<Scalar>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    pub upstream: String,
    pub require_client_cert: Option<bool>,
    /// Each item is a mapping with exactly one key (`- cn: [a, b]`); checked in `compile`
    /// (values are scalars so that `verified: true` reads, and each rule says what it takes).
    pub allow: Option<Vec<OrderedMap<OneOrMany<Scalar>>>>,
    /// The same shape as `allow`.
    pub deny: Option<Vec<OrderedMap<OneOrMany<Scalar>>>>,
    pub deny_all: Option<bool>,
    pub upstream_path: Option<String>,
    pub headers: Option<OrderedMap<Scalar>>,
    pub max_body_size: Option<Scalar>,
    pub timeouts: Option<RawTimeouts>,
    pub signed_urls: Option<RawSignedUrls>,
}

/// `signed_urls:` on a route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSignedUrls {
    pub key_file: OneOrMany<String>,
    pub max_ttl: Option<Scalar>,
    pub bind: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatch {
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    pub path_regex: Option<String>,
    pub grpc_service: Option<String>,
    pub host: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeouts {
    pub connect: Option<Scalar>,
    pub read: Option<Scalar>,
    pub send: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub servers: OneOrMany<String>,
    pub protocol: Option<Scalar>,
    pub lb: Option<Scalar>,
    pub health_check: Option<RawHealthCheck>,
    pub keepalive: Option<usize>,
    pub tls: Option<RawUpstreamTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealthCheck {
    #[serde(rename = "type")]
    pub kind: Scalar,
    pub interval: Option<Scalar>,
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamTls {
    pub sni: Option<String>,
    pub verify: Option<bool>,
    pub trusted_ca: Option<String>,
    pub verify_depth: Option<u32>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// Any YAML value, remembered as text or as a description of what it was, so `compile`
/// can accept `on` and `true` for the same key and say "found a list" for the rest.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Str(String),
    Bool(bool),
    Int(i128),
    Float(f64),
    /// Not a scalar: "a list", "a mapping", "a tagged value".
    Other(&'static str),
}

impl Scalar {
    /// How the value is quoted in "found …" messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Scalar::Str(s) => format!("{s:?}"),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(x) => x.to_string(),
            Scalar::Other(what) => (*what).to_string(),
        }
    }

    /// The text of a string or number (header values may be written unquoted: `X-Id: 42`).
    pub(crate) fn as_text(&self) -> Option<String> {
        match self {
            Scalar::Str(s) => Some(s.clone()),
            Scalar::Bool(b) => Some(b.to_string()),
            Scalar::Int(i) => Some(i.to_string()),
            Scalar::Float(x) => Some(x.to_string()),
            Scalar::Other(_) => None,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other("an empty value"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other("a list"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Scalar::Other("a mapping"))
            }
            fn visit_enum<A: de::EnumAccess<'de>>(self, _data: A) -> Result<Scalar, A::Error> {
                Ok(Scalar::Other("a tagged value"))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// A list, or a single value standing for a list of one (`listen: 0.0.0.0:8443`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrManyVisitor<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany(items))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(de::value::StrDeserializer::new(v)).map(|t| OneOrMany(vec![t]))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                T::deserialize(de::value::BoolDeserializer::new(v)).map(|t| OneOrMany(vec![t]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::deserialize(de::value::I64Deserializer::new(v)).map(|t| OneOrMany(vec![t]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                T::deserialize(de::value::U64Deserializer::new(v)).map(|t| OneOrMany(vec![t]))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                T::deserialize(de::value::F64Deserializer::new(v)).map(|t| OneOrMany(vec![t]))
            }
        }
        deserializer.deserialize_any(OneOrManyVisitor(PhantomData))
    }
}

/// A YAML mapping with string keys, in file order (header lists keep the order written).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OrderedMap<V>(pub Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, V>()? {
                    entries.push(entry);
                }
                Ok(OrderedMap(entries))
            }
        }
        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

/// A structural error found while deserializing a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawError {
    pub key_path: String,
    pub message: String,
}

/// The outcome of deserializing one section (`log`, `servers[1]`, `upstreams.app`).
pub(crate) struct Section<T> {
    /// `None` when the section is too broken to use at all.
    pub value: Option<T>,
    pub errors: Vec<RawError>,
    /// Keys that were dropped because their value was wrong: `compile` sees defaults
    /// there and must not report follow-on errors about them.
    pub damaged: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn render(base: &str, segments: &[Segment]) -> String {
    let mut path = base.to_string();
    for segment in segments {
        path = match segment {
            Segment::Key(key) => join_key(&path, key),
            Segment::Index(index) => join_index(&path, *index),
        };
    }
    path
}

/// serde stops at the first error. To report every mistake of a section in one pass, a
/// failing key is removed from a copy of the section and deserialization is retried; the
/// bound only guards against a pathological file.
const MAX_ATTEMPTS: usize = 64;

/// Deserializes `value` (found at `base`) into `T`, collecting as many errors as possible.
pub(crate) fn deserialize_section<T: DeserializeOwned>(value: &Value, base: &str) -> Section<T> {
    let mut value = value.clone();
    let mut errors = Vec::new();
    let mut damaged: Vec<Vec<Segment>> = Vec::new();
    let mut reported: Vec<Vec<Segment>> = Vec::new();
    let finish = |value, errors, damaged: Vec<Vec<Segment>>| Section {
        value,
        errors,
        damaged: damaged.iter().map(|d| render(base, d)).collect(),
    };
    for _ in 0..MAX_ATTEMPTS {
        let error = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(t) => return finish(Some(t), errors, damaged),
            Err(error) => error,
        };
        let mut segments: Vec<Segment> = error
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(Segment::Key(key.clone())),
                serde_path_to_error::Segment::Enum { variant } => {
                    Some(Segment::Key(variant.clone()))
                }
                _ => None,
            })
            .collect();
        let serde_message = error.inner().to_string();
        let (message, missing) = rewrite_message(&serde_message);
        // An unknown key is simply dropped; a wrong or missing value leaves a hole.
        let mut unknown_key = false;
        let mut target = segments.clone();
        let missing_key = missing.clone();
        if let Some(field) = missing {
            segments.push(Segment::Key(field));
        } else if message.starts_with("unknown key") {
            unknown_key = true;
            // A typo (`client_auht`) is the cause; what the absence of the key it stands
            // for implies (`client_auth: verify: on needs ca`, a default at the parent's
            // line, so before it in file order) is a consequence the fix removes. The key
            // the typo most likely meant is treated as damaged, so compile reports only
            // the cause — unless that key is written too, and its own errors are real.
            if let Some(meant) = unknown_field(&serde_message)
                .and_then(|(unknown, choices)| did_you_mean(unknown, &choices))
            {
                let mut sibling = segments.clone();
                sibling.pop();
                sibling.push(Segment::Key(meant.to_string()));
                if get(&value, &sibling).is_none() {
                    damaged.push(sibling);
                }
            }
        }
        // A required key missing because a typo stands in its place: the typo says it.
        let typo_for = missing_key.is_some() && damaged.contains(&segments);
        if !reported.contains(&segments) && !typo_for {
            errors.push(RawError {
                key_path: render(base, &segments),
                message,
            });
            reported.push(segments.clone());
        }
        // A missing key cannot be filled in; drop the mapping that lacks it instead. Lists
        // cannot lose an item without renumbering the rest, so drop the whole list.
        while matches!(target.last(), Some(Segment::Index(_))) {
            target.pop();
        }
        if target.is_empty() || !remove(&mut value, &target) {
            return finish(None, errors, damaged);
        }
        if !unknown_key {
            reported.push(target.clone());
            damaged.push(target);
        }
    }
    finish(None, errors, damaged)
}

/// The value at `path`, if the document has one there.
fn get<'v>(value: &'v Value, path: &[Segment]) -> Option<&'v Value> {
    let mut node = value;
    for segment in path {
        node = match (segment, node) {
            (Segment::Key(key), Value::Mapping(map)) => map.get(key.as_str())?,
            (Segment::Index(index), Value::Sequence(items)) => items.get(*index)?,
            _ => return None,
        };
    }
    Some(node)
}

/// Removes the mapping entry at `path` (whose last segment is a key).
fn remove(value: &mut Value, path: &[Segment]) -> bool {
    let Some((Segment::Key(last), parents)) = path.split_last() else {
        return false;
    };
    let mut node = value;
    for segment in parents {
        let next = match (segment, node) {
            (Segment::Key(key), Value::Mapping(map)) => map.get_mut(key.as_str()),
            (Segment::Index(index), Value::Sequence(items)) => items.get_mut(*index),
            _ => None,
        };
        match next {
            Some(next) => node = next,
            None => return false,
        }
    }
    match node {
        Value::Mapping(map) => map.remove(last.as_str()).is_some(),
        _ => false,
    }
}

/// Turns serde's wording into the configuration's: `invalid type: string "x", expected
/// u32` → `expected an integer; found "x"`. Returns the message and, for a missing
/// field, the field's name (its path is the missing key, not the mapping).
pub(crate) fn rewrite_message(message: &str) -> (String, Option<String>) {
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.trim_end_matches('`').to_string();
        return ("missing required key".to_string(), Some(field));
    }
    if let Some((unknown, choices)) = unknown_field(message) {
        let mut text = if choices.is_empty() {
            "unknown key; this mapping takes no keys".to_string()
        } else {
            format!("unknown key; expected one of {}", choices.join(", "))
        };
        if let Some(suggestion) = did_you_mean(unknown, &choices) {
            text.push_str(&format!(" (did you mean {suggestion}?)"));
        }
        return (text, None);
    }
    for (prefix, is_value) in [("invalid type: ", false), ("invalid value: ", true)] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((found, expected)) = rest.rsplit_once(", expected ") {
                return (
                    format!(
                        "expected {}; found {}",
                        describe_expected(expected, is_value),
                        describe_found(found)
                    ),
                    None,
                );
            }
        }
    }
    (message.to_string(), None)
}

/// serde's `unknown field `x`, expected one of `a`, `b``: the key and the choices.
fn unknown_field(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, expected) = rest.split_once('`').unwrap_or((rest, ""));
    let choices: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    Some((unknown, choices))
}

fn describe_expected(expected: &str, is_value: bool) -> String {
    let max = match expected {
        "u8" => Some(u64::from(u8::MAX)),
        "u16" => Some(u64::from(u16::MAX)),
        "u32" => Some(u64::from(u32::MAX)),
        "u64" | "usize" => Some(u64::MAX),
        _ => None,
    };
    if let Some(max) = max {
        return if is_value {
            format!("an integer from 0 to {max}")
        } else {
            "an integer".to_string()
        };
    }
    match expected {
        "a boolean" => "true or false".to_string(),
        "a sequence" => "a list".to_string(),
        "a map" => "a mapping".to_string(),
        "a value or a list of values" => "a value or a list".to_string(),
        e if e.starts_with("struct ") => "a mapping".to_string(),
        e => e.to_string(),
    }
}

fn describe_found(found: &str) -> String {
    let backticked = |prefix: &str| {
        found.strip_prefix(prefix).map(|rest| {
            rest.trim_start_matches('`')
                .trim_end_matches('`')
                .to_string()
        })
    };
    if let Some(s) = found.strip_prefix("string ") {
        return s.to_string();
    }
    for prefix in ["integer ", "floating point ", "boolean "] {
        if let Some(v) = backticked(prefix) {
            return v;
        }
    }
    match found {
        "unit value" => "an empty value".to_string(),
        "sequence" => "a list".to_string(),
        "map" => "a mapping".to_string(),
        "enum" => "a tagged value".to_string(),
        other => other.to_string(),
    }
}

/// The closest valid choice within two edits, for typos like `verfy_depth`.
pub(crate) fn did_you_mean<'a>(given: &str, choices: &[&'a str]) -> Option<&'a str> {
    choices
        .iter()
        .map(|choice| (edit_distance(given, choice), *choice))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, choice)| choice)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section<T: DeserializeOwned>(yaml: &str) -> Section<T> {
        let value: Value = serde_yaml::from_str(yaml).unwrap();
        deserialize_section(&value, "servers[0]")
    }

    fn messages<T>(s: &Section<T>) -> Vec<String> {
        s.errors
            .iter()
            .map(|e| format!("{}: {}", e.key_path, e.message))
            .collect()
    }

    #[test]
    fn rewrites_serde_messages() {
        assert_eq!(
            rewrite_message("invalid type: string \"x\", expected u32").0,
            "expected an integer; found \"x\""
        );
        assert_eq!(
            rewrite_message("invalid value: integer `-1`, expected u32").0,
            "expected an integer from 0 to 4294967295; found -1"
        );
        assert_eq!(
            rewrite_message("invalid type: sequence, expected a string").0,
            "expected a string; found a list"
        );
        assert_eq!(
            rewrite_message("invalid type: unit value, expected a boolean").0,
            "expected true or false; found an empty value"
        );
        assert_eq!(
            rewrite_message("missing field `cert`"),
            ("missing required key".into(), Some("cert".into()))
        );
        assert_eq!(
            rewrite_message("unknown field `verfy`, expected one of `verify`, `ca`").0,
            "unknown key; expected one of verify, ca (did you mean verify?)"
        );
        assert_eq!(rewrite_message("something else").0, "something else");
    }

    #[test]
    fn collects_every_structural_error_of_a_section() {
        let s: Section<RawTls> =
            section("cert: a\nkey: b\nfoo: 1\nsession_resumption: maybe\nbar: 2\n");
        // serde's visiting order is not file order; `compile` sorts by position.
        let mut m = messages(&s);
        m.sort();
        assert_eq!(
            m,
            vec![
                "servers[0].bar: unknown key; expected one of cert, key, protocols, alpn, session_resumption, session_ticket_keys",
                "servers[0].foo: unknown key; expected one of cert, key, protocols, alpn, session_resumption, session_ticket_keys",
                "servers[0].session_resumption: expected true or false; found \"maybe\"",
            ]
        );
        assert!(
            s.value.is_some(),
            "the section survives with defaults where keys were dropped"
        );
        assert_eq!(s.damaged, vec!["servers[0].session_resumption".to_string()]);
    }

    #[test]
    fn missing_required_key_is_reported_once_at_its_own_path() {
        let s: Section<RawServer> = section("listen: a\ntls: {key: k}\n");
        assert_eq!(
            messages(&s),
            vec!["servers[0].tls.cert: missing required key"]
        );
        assert!(s.value.is_none());
        // A wrong value for a required key is reported once, not again as missing.
        let s: Section<RawServer> = section("listen: a\ntls: {key: k, cert: [x]}\n");
        assert_eq!(
            messages(&s),
            vec!["servers[0].tls.cert: expected a string; found a list"]
        );
    }

    #[test]
    fn errors_inside_list_items_drop_the_list() {
        let s: Section<RawServer> = section(
            "listen: a\ntls: {cert: c, key: k}\nroutes:\n  - match: {path: /}\n    upstream: [x]\n    oops: 1\n",
        );
        let m = messages(&s);
        assert!(
            m.contains(
                &"servers[0].routes[0].upstream: expected a string; found a list".to_string()
            ),
            "{m:?}"
        );
        assert!(s.value.is_some());
        assert!(
            s.damaged.contains(&"servers[0].routes".to_string()),
            "{:?}",
            s.damaged
        );
    }

    #[test]
    fn one_or_many_and_ordered_map() {
        let one: OneOrMany<String> = serde_yaml::from_str("a").unwrap();
        assert_eq!(one.0, vec!["a"]);
        let many: OneOrMany<Scalar> = serde_yaml::from_str("[a, 1, true]").unwrap();
        assert_eq!(
            many.0,
            vec![Scalar::Str("a".into()), Scalar::Int(1), Scalar::Bool(true)]
        );
        let map: OrderedMap<Scalar> = serde_yaml::from_str("z: 1\na: b\nm: [1]").unwrap();
        assert_eq!(
            map.0,
            vec![
                ("z".into(), Scalar::Int(1)),
                ("a".into(), Scalar::Str("b".into())),
                ("m".into(), Scalar::Other("a list"))
            ]
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("verfy_depth", &["verify", "verify_depth"]),
            Some("verify_depth")
        );
        assert_eq!(did_you_mean("zzz", &["verify"]), None);
    }
}
