//! Checks a record's JSON against a schema from a [`Catalog`].
//!
//! The rules and the messages follow the reference implementation's lexicon
//! validator: the first problem found is reported, as `<path> <what is
//! wrong>`, the path starting at `Record` and joined with `/`
//! (`Record/embed/images/0/alt`). Properties a schema does not name are
//! allowed; `knownValues` and defaults never fail a record.

use aurora_core::syntax::{
    AtIdentifier, AtUri, CidString, Datetime, Did, Handle, Language, Nsid, RecordKey, Tid, Uri,
};
use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};
use unicode_segmentation::UnicodeSegmentation;

use super::schema::{Arr, Catalog, Def, Format, Int, Object, Str, Type};

/// How many schemas may be entered at once while checking one record (a
/// reference and what it names count as two); far beyond any real record,
/// and well within a thread's stack.
const MAX_DEPTH: usize = 512;

/// Base64 as the data model writes `$bytes`: standard alphabet, padding
/// optional, trailing bits tolerated.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// A JSON value as the ATProto data model sees it.
enum Kind<'a> {
    Null,
    Bool(bool),
    /// An integer, or an integral float (`3.0` is 3, as in JavaScript).
    Integer(i64),
    /// A number that is no integer the data model can hold.
    Number,
    String(&'a str),
    Array(&'a [Value]),
    /// `{"$bytes": …}`.
    Bytes(&'a Value),
    /// `{"$link": …}`.
    Link(&'a Value),
    /// An object of `$type` `blob`.
    Blob(&'a Map<String, Value>),
    Map(&'a Map<String, Value>),
}

fn kind(value: &Value) -> Kind<'_> {
    match value {
        Value::Null => Kind::Null,
        Value::Bool(b) => Kind::Bool(*b),
        Value::Number(n) => integer_of(n).map_or(Kind::Number, Kind::Integer),
        Value::String(s) => Kind::String(s),
        Value::Array(items) => Kind::Array(items),
        Value::Object(map) => {
            if map.len() == 1 {
                if let Some(b) = map.get("$bytes") {
                    return Kind::Bytes(b);
                }
                if let Some(l) = map.get("$link") {
                    return Kind::Link(l);
                }
            }
            if map.get("$type").and_then(Value::as_str) == Some("blob") {
                Kind::Blob(map)
            } else {
                Kind::Map(map)
            }
        }
    }
}

fn integer_of(n: &serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    // Integral floats up to 2^53, the JSON integers every reader agrees on.
    #[allow(clippy::cast_possible_truncation, clippy::float_cmp)]
    (f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0).then_some(f as i64)
}

/// Whether `value` is a string that decodes as a CID.
fn is_cid(value: &Value) -> bool {
    value.as_str().is_some_and(cid_ok)
}

/// Whether `s` is a CID string that decodes.
fn cid_ok(s: &str) -> bool {
    CidString::parse(s).is_ok_and(|c| c.to_cid().is_ok())
}

/// The wording of a size limit: "must not {more} than {max} {unit}".
struct Limit {
    more: &'static str,
    less: &'static str,
    unit: &'static str,
}

const ELEMENTS: Limit = Limit {
    more: "have more",
    less: "have fewer",
    unit: "elements",
};
/// UTF-8 bytes, which the lexicon calls characters.
const CHARACTERS: Limit = Limit {
    more: "be longer",
    less: "be shorter",
    unit: "characters",
};
const GRAPHEMES: Limit = Limit {
    more: "be longer",
    less: "be shorter",
    unit: "graphemes",
};
const BYTES: Limit = Limit {
    more: "be larger",
    less: "be smaller",
    unit: "bytes",
};

/// Checks a size against its limits, the maximum first.
fn within<N: PartialOrd + std::fmt::Display + Copy>(
    path: &str,
    size: N,
    min: Option<N>,
    max: Option<N>,
    limit: &Limit,
) -> Checked {
    let Limit { more, less, unit } = limit;
    match (min, max) {
        (_, Some(max)) if size > max => Err(format!("{path} must not {more} than {max} {unit}")),
        (Some(min), _) if size < min => Err(format!("{path} must not {less} than {min} {unit}")),
        _ => Ok(()),
    }
}

/// The checker: a catalog to resolve references in, and the nesting depth.
pub(super) struct Checker<'a> {
    catalog: &'a Catalog,
    depth: usize,
}

type Checked = Result<(), String>;

impl<'a> Checker<'a> {
    pub(super) fn new(catalog: &'a Catalog) -> Self {
        Self { catalog, depth: 0 }
    }

    /// Checks `value` against an object schema.
    pub(super) fn object(&mut self, path: &str, schema: &Object, value: &Value) -> Checked {
        let Kind::Map(map) = kind(value) else {
            return Err(format!("{path} must be an object"));
        };
        for prop in &schema.props {
            match map.get(&prop.name) {
                None if prop.required => {
                    return Err(format!("{path} must have the property \"{}\"", prop.name));
                }
                None => {}
                Some(Value::Null) if prop.nullable => {}
                Some(v) => self.value(&format!("{path}/{}", prop.name), &prop.ty, v)?,
            }
        }
        Ok(())
    }

    /// Checks `value` against a field schema.
    fn value(&mut self, path: &str, ty: &Type, value: &Value) -> Checked {
        if self.depth >= MAX_DEPTH {
            return Err(format!("{path} is nested too deeply"));
        }
        self.depth += 1;
        let result = self.value_inner(path, ty, value);
        self.depth -= 1;
        result
    }

    fn value_inner(&mut self, path: &str, ty: &Type, value: &Value) -> Checked {
        match ty {
            Type::Boolean { konst } => boolean(path, *konst, value),
            Type::Integer(schema) => integer(path, schema, value),
            Type::String(schema) => string(path, schema, value),
            Type::Bytes { min_len, max_len } => bytes(path, *min_len, *max_len, value),
            Type::CidLink => match kind(value) {
                Kind::Link(l) if is_cid(l) => Ok(()),
                _ => Err(format!("{path} must be a CID")),
            },
            Type::Blob { accept, max_size } => blob(path, accept, *max_size, value),
            Type::Array(schema) => self.array(path, schema, value),
            Type::Object(schema) => self.object(path, schema, value),
            Type::Ref(target) => self.reference(path, target, value),
            Type::Union { refs, closed } => self.union(path, refs, *closed, value),
            Type::Unknown => match kind(value) {
                Kind::Map(_) => Ok(()),
                _ => Err(format!("{path} must be an object")),
            },
        }
    }

    fn array(&mut self, path: &str, schema: &Arr, value: &Value) -> Checked {
        let Kind::Array(items) = kind(value) else {
            return Err(format!("{path} must be an array"));
        };
        within(path, items.len(), schema.min_len, schema.max_len, &ELEMENTS)?;
        for (i, item) in items.iter().enumerate() {
            self.value(&format!("{path}/{i}"), &schema.items, item)?;
        }
        Ok(())
    }

    fn reference(&mut self, path: &str, target: &str, value: &Value) -> Checked {
        match self.catalog.get(target) {
            Some(Def::Type(ty)) => self.value(path, ty, value),
            Some(Def::Record { record, .. }) => self.object(path, record, value),
            Some(Def::Token) => Err(format!(
                "{path} refers to the token {target}, which is not a data type"
            )),
            None => Err(format!("Lexicon definition not found: {target}")),
        }
    }

    fn union(&mut self, path: &str, refs: &[String], closed: bool, value: &Value) -> Checked {
        let tag = match kind(value) {
            Kind::Map(map) => map.get("$type").and_then(Value::as_str),
            _ => None,
        };
        let Some(tag) = tag else {
            return Err(format!(
                "{path} must be an object which includes the \"$type\" property"
            ));
        };
        let qualified = if tag.contains('#') {
            tag.to_owned()
        } else {
            format!("{tag}#main")
        };
        if let Some(target) = refs.iter().find(|r| **r == qualified) {
            return self.reference(path, target, value);
        }
        if closed {
            return Err(format!(
                "{path} $type must be one of {}",
                display_refs(refs)
            ));
        }
        // An open union admits types it does not list, unchecked.
        Ok(())
    }
}

/// A union's references as written in lexicons (`nsid`, `nsid#name`).
fn display_refs(refs: &[String]) -> String {
    refs.iter()
        .map(|r| r.strip_suffix("#main").unwrap_or(r))
        .collect::<Vec<_>>()
        .join(", ")
}

fn boolean(path: &str, konst: Option<bool>, value: &Value) -> Checked {
    let Kind::Bool(b) = kind(value) else {
        return Err(format!("{path} must be a boolean"));
    };
    match konst {
        Some(c) if c != b => Err(format!("{path} must be {c}")),
        _ => Ok(()),
    }
}

fn integer(path: &str, schema: &Int, value: &Value) -> Checked {
    let Kind::Integer(i) = kind(value) else {
        return Err(format!("{path} must be an integer"));
    };
    if let Some(c) = schema.konst
        && i != c
    {
        return Err(format!("{path} must be {c}"));
    }
    if let Some(allowed) = &schema.enumeration
        && !allowed.contains(&i)
    {
        let list: Vec<String> = allowed.iter().map(ToString::to_string).collect();
        return Err(format!("{path} must be one of ({})", list.join("|")));
    }
    if let Some(max) = schema.maximum
        && i > max
    {
        return Err(format!("{path} can not be greater than {max}"));
    }
    if let Some(min) = schema.minimum
        && i < min
    {
        return Err(format!("{path} can not be less than {min}"));
    }
    Ok(())
}

fn string(path: &str, schema: &Str, value: &Value) -> Checked {
    let Kind::String(s) = kind(value) else {
        return Err(format!("{path} must be a string"));
    };
    if let Some(c) = &schema.konst
        && s != c
    {
        return Err(format!("{path} must be {c}"));
    }
    if let Some(allowed) = &schema.enumeration
        && !allowed.iter().any(|a| a == s)
    {
        return Err(format!("{path} must be one of ({})", allowed.join("|")));
    }
    within(path, s.len(), schema.min_len, schema.max_len, &CHARACTERS)?;
    // A string has at most as many graphemes as bytes: no need to count
    // when the byte length already settles it.
    if schema.min_graphemes.is_some() || schema.max_graphemes.is_some_and(|max| s.len() > max) {
        let count = s.graphemes(true).count();
        within(
            path,
            count,
            schema.min_graphemes,
            schema.max_graphemes,
            &GRAPHEMES,
        )?;
    }
    match schema.format {
        Some(format) if !format_ok(format, s) => Err(format!("{path} {}", format_message(format))),
        _ => Ok(()),
    }
}

/// Whether `s` is of `format`, by the syntax rules in `aurora_core::syntax`.
fn format_ok(format: Format, s: &str) -> bool {
    match format {
        Format::AtIdentifier => AtIdentifier::parse(s).is_ok(),
        Format::AtUri => AtUri::parse(s).is_ok(),
        Format::Cid => cid_ok(s),
        Format::Datetime => Datetime::parse(s).is_ok(),
        Format::Did => Did::parse(s).is_ok(),
        Format::Handle => Handle::parse(s).is_ok(),
        Format::Language => Language::parse(s).is_ok(),
        Format::Nsid => Nsid::parse(s).is_ok(),
        Format::RecordKey => RecordKey::parse(s).is_ok(),
        Format::Tid => Tid::parse(s).is_ok(),
        Format::Uri => Uri::parse(s).is_ok(),
    }
}

fn format_message(format: Format) -> &'static str {
    match format {
        Format::AtIdentifier => "must be a valid did or a handle",
        Format::AtUri => "must be a valid at-uri",
        Format::Cid => "must be a cid string",
        Format::Datetime => "must be a valid atproto datetime (both RFC-3339 and ISO-8601)",
        Format::Did => "must be a valid did",
        Format::Handle => "must be a valid handle",
        Format::Language => "must be a well-formed BCP 47 language tag",
        Format::Nsid => "must be a valid nsid",
        Format::RecordKey => "must be a valid Record Key",
        Format::Tid => "must be a valid TID",
        Format::Uri => "must be a uri",
    }
}

fn bytes(path: &str, min_len: Option<usize>, max_len: Option<usize>, value: &Value) -> Checked {
    let decoded = match kind(value) {
        Kind::Bytes(Value::String(s)) => BASE64.decode(s).ok(),
        _ => None,
    };
    let Some(decoded) = decoded else {
        return Err(format!("{path} must be a byte array"));
    };
    within(path, decoded.len(), min_len, max_len, &BYTES)
}

fn blob(path: &str, accept: &[String], max_size: Option<u64>, value: &Value) -> Checked {
    let not_blob = || format!("{path} should be a blob ref");
    let Kind::Blob(map) = kind(value) else {
        return Err(not_blob());
    };
    let link_ok = matches!(map.get("ref").map(kind), Some(Kind::Link(l)) if is_cid(l));
    let mime = map.get("mimeType").and_then(Value::as_str);
    let size = map.get("size").and_then(Value::as_u64);
    let (true, Some(mime), Some(size)) = (link_ok, mime, size) else {
        return Err(not_blob());
    };
    if !accept.is_empty() && !mime_accepted(mime, accept) {
        return Err(format!(
            "{path} has mimeType {mime}, which is not one of ({})",
            accept.join("|")
        ));
    }
    within(path, size, None, max_size, &BYTES)
}

/// Whether `mime` matches one of `accept` (`*/*`, `type/*` or exact).
fn mime_accepted(mime: &str, accept: &[String]) -> bool {
    accept.iter().any(|a| {
        a == "*/*"
            || a == mime
            || a.strip_suffix('*')
                .is_some_and(|prefix| prefix.ends_with('/') && mime.starts_with(prefix))
    })
}
