//! The lexicon schema model the validator walks, a small builder syntax for
//! writing schemas in Rust, and the catalog that resolves references.
//!
//! Only what record validation needs is modelled: record, object, token and
//! the field types. Descriptions, `knownValues` and defaults are left out —
//! they never make a record invalid.

use std::collections::HashMap;

/// The key type of a record (`key` in a record definition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum KeyType {
    /// A TID.
    Tid,
    /// An NSID.
    Nsid,
    /// Exactly this record key (`literal:<key>`).
    Literal(String),
    /// Any valid record key.
    Any,
}

impl KeyType {
    /// Parses the lexicon's `key` value.
    #[cfg(test)]
    pub(super) fn parse(s: &str) -> Option<Self> {
        match s {
            "tid" => Some(Self::Tid),
            "nsid" => Some(Self::Nsid),
            "any" => Some(Self::Any),
            _ => s
                .strip_prefix("literal:")
                .filter(|k| !k.is_empty())
                .map(|k| Self::Literal(k.to_owned())),
        }
    }
}

/// A named definition in a lexicon document.
#[derive(Debug, Clone)]
pub(super) enum Def {
    /// A record type: its key type and the object schema of its body.
    Record { key: KeyType, record: Object },
    /// A token: a name with no data, never a value's schema.
    Token,
    /// Any other definition (object, string, array, ...).
    Type(Type),
}

/// A field schema. It covers the whole lexicon language, of which the
/// built-in schemas use a part (no record of theirs has bytes, for one).
#[derive(Debug, Clone)]
#[cfg_attr(not(test), allow(dead_code))]
pub(super) enum Type {
    Boolean {
        konst: Option<bool>,
    },
    Integer(Int),
    String(Str),
    Bytes {
        min_len: Option<usize>,
        max_len: Option<usize>,
    },
    CidLink,
    Blob {
        /// Accepted MIME types (`image/*` and `*/*` allowed); empty: any.
        accept: Vec<String>,
        max_size: Option<u64>,
    },
    Array(Box<Arr>),
    Object(Object),
    /// A reference to another definition, fully qualified (`nsid#name`).
    Ref(String),
    /// A union of references, fully qualified.
    Union {
        refs: Vec<String>,
        closed: bool,
    },
    Unknown,
}

/// An object schema.
#[derive(Debug, Clone, Default)]
pub(super) struct Object {
    pub(super) props: Vec<Prop>,
}

/// One property of an object schema.
#[derive(Debug, Clone)]
pub(super) struct Prop {
    pub(super) name: String,
    pub(super) ty: Type,
    pub(super) required: bool,
    pub(super) nullable: bool,
}

/// An integer schema.
#[derive(Debug, Clone, Default)]
pub(super) struct Int {
    pub(super) minimum: Option<i64>,
    pub(super) maximum: Option<i64>,
    pub(super) enumeration: Option<Vec<i64>>,
    pub(super) konst: Option<i64>,
}

/// A string schema. Lengths are in UTF-8 bytes, graphemes in extended
/// grapheme clusters.
#[derive(Debug, Clone, Default)]
pub(super) struct Str {
    pub(super) min_len: Option<usize>,
    pub(super) max_len: Option<usize>,
    pub(super) min_graphemes: Option<usize>,
    pub(super) max_graphemes: Option<usize>,
    pub(super) format: Option<Format>,
    pub(super) enumeration: Option<Vec<String>>,
    pub(super) konst: Option<String>,
}

/// An array schema.
#[derive(Debug, Clone)]
pub(super) struct Arr {
    pub(super) items: Type,
    pub(super) min_len: Option<usize>,
    pub(super) max_len: Option<usize>,
}

/// A string format (all of the lexicon's, though the built-in schemas use
/// only some).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(super) enum Format {
    AtIdentifier,
    AtUri,
    Cid,
    Datetime,
    Did,
    Handle,
    Language,
    Nsid,
    RecordKey,
    Tid,
    Uri,
}

impl Format {
    /// Parses the lexicon's `format` value.
    #[cfg(test)]
    pub(super) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "at-identifier" => Self::AtIdentifier,
            "at-uri" => Self::AtUri,
            "cid" => Self::Cid,
            "datetime" => Self::Datetime,
            "did" => Self::Did,
            "handle" => Self::Handle,
            "language" => Self::Language,
            "nsid" => Self::Nsid,
            "record-key" => Self::RecordKey,
            "tid" => Self::Tid,
            "uri" => Self::Uri,
            _ => return None,
        })
    }
}

// ------------------------------------------------------------------ builders

impl Str {
    pub(super) fn max_len(mut self, n: usize) -> Self {
        self.max_len = Some(n);
        self
    }
    pub(super) fn min_len(mut self, n: usize) -> Self {
        self.min_len = Some(n);
        self
    }
    pub(super) fn max_graphemes(mut self, n: usize) -> Self {
        self.max_graphemes = Some(n);
        self
    }
}

impl Int {
    pub(super) fn min(mut self, n: i64) -> Self {
        self.minimum = Some(n);
        self
    }
}

impl Arr {
    pub(super) fn max_len(mut self, n: usize) -> Self {
        self.max_len = Some(n);
        self
    }
}

impl From<Str> for Type {
    fn from(s: Str) -> Self {
        Self::String(s)
    }
}

impl From<Int> for Type {
    fn from(i: Int) -> Self {
        Self::Integer(i)
    }
}

impl From<Arr> for Type {
    fn from(a: Arr) -> Self {
        Self::Array(Box::new(a))
    }
}

impl From<Object> for Type {
    fn from(o: Object) -> Self {
        Self::Object(o)
    }
}

impl Object {
    /// Adds a required property.
    pub(super) fn req(mut self, name: &str, ty: impl Into<Type>) -> Self {
        self.push(name, ty.into(), true);
        self
    }

    /// Adds an optional property.
    pub(super) fn opt(mut self, name: &str, ty: impl Into<Type>) -> Self {
        self.push(name, ty.into(), false);
        self
    }

    pub(super) fn push(&mut self, name: &str, ty: Type, required: bool) {
        self.props.push(Prop {
            name: name.to_owned(),
            ty,
            required,
            nullable: false,
        });
    }
}

/// An object schema with no properties yet.
pub(super) fn object() -> Object {
    Object::default()
}

/// A string with no constraints.
pub(super) fn string() -> Str {
    Str::default()
}

/// A string of a format.
pub(super) fn formatted(format: Format) -> Str {
    Str {
        format: Some(format),
        ..Str::default()
    }
}

/// An integer with no constraints.
pub(super) fn integer() -> Int {
    Int::default()
}

pub(super) fn boolean() -> Type {
    Type::Boolean { konst: None }
}

/// A blob of the accepted MIME types, at most `max_size` bytes.
pub(super) fn blob(accept: &[&str], max_size: u64) -> Type {
    Type::Blob {
        accept: accept.iter().map(|&s| s.to_owned()).collect(),
        max_size: Some(max_size),
    }
}

pub(super) fn array(items: impl Into<Type>) -> Arr {
    Arr {
        items: items.into(),
        min_len: None,
        max_len: None,
    }
}

/// A reference, relative (`#name`) or absolute; qualified when its document
/// is added to a [`Catalog`].
pub(super) fn r(target: &str) -> Type {
    Type::Ref(target.to_owned())
}

/// An open union.
pub(super) fn union(refs: &[&str]) -> Type {
    Type::Union {
        refs: refs.iter().map(|&s| s.to_owned()).collect(),
        closed: false,
    }
}

/// A lexicon document: an NSID and its named definitions.
#[derive(Debug, Clone)]
pub(super) struct Doc {
    pub(super) id: String,
    pub(super) defs: Vec<(String, Def)>,
}

impl Doc {
    pub(super) fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            defs: Vec::new(),
        }
    }

    /// Adds the `main` record definition.
    pub(super) fn record(mut self, key: KeyType, record: Object) -> Self {
        self.defs
            .push(("main".to_owned(), Def::Record { key, record }));
        self
    }

    /// Adds a definition of a field type (object, string, ...).
    pub(super) fn def(mut self, name: &str, ty: impl Into<Type>) -> Self {
        self.defs.push((name.to_owned(), Def::Type(ty.into())));
        self
    }

    /// Adds a token.
    pub(super) fn token(mut self, name: &str) -> Self {
        self.defs.push((name.to_owned(), Def::Token));
        self
    }
}

// ------------------------------------------------------------------ catalog

/// `target` as written in document `id`, made absolute: `#x` → `id#x`,
/// `nsid` → `nsid#main`.
pub(super) fn qualify(id: &str, target: &str) -> String {
    if let Some(name) = target.strip_prefix('#') {
        format!("{id}#{name}")
    } else if target.contains('#') {
        target.to_owned()
    } else {
        format!("{target}#main")
    }
}

fn qualify_type(id: &str, ty: &mut Type) {
    match ty {
        Type::Ref(target) => *target = qualify(id, target),
        Type::Union { refs, .. } => {
            for target in refs {
                *target = qualify(id, target);
            }
        }
        Type::Array(a) => qualify_type(id, &mut a.items),
        Type::Object(o) => qualify_object(id, o),
        Type::Boolean { .. }
        | Type::Integer(_)
        | Type::String(_)
        | Type::Bytes { .. }
        | Type::CidLink
        | Type::Blob { .. }
        | Type::Unknown => {}
    }
}

fn qualify_object(id: &str, o: &mut Object) {
    for p in &mut o.props {
        qualify_type(id, &mut p.ty);
    }
}

/// Definitions by absolute reference (`nsid#name`).
#[derive(Debug, Default)]
pub(super) struct Catalog {
    defs: HashMap<String, Def>,
}

impl Catalog {
    /// A catalog of these documents.
    pub(super) fn new(docs: impl IntoIterator<Item = Doc>) -> Self {
        let mut catalog = Self::default();
        for doc in docs {
            catalog.add(doc);
        }
        catalog
    }

    /// Adds a document, qualifying its references.
    pub(super) fn add(&mut self, doc: Doc) {
        for (name, mut def) in doc.defs {
            match &mut def {
                Def::Record { record, .. } => qualify_object(&doc.id, record),
                Def::Type(ty) => qualify_type(&doc.id, ty),
                Def::Token => {}
            }
            self.defs.insert(format!("{}#{name}", doc.id), def);
        }
    }

    /// The definition an absolute reference names.
    pub(super) fn get(&self, target: &str) -> Option<&Def> {
        self.defs.get(target)
    }

    /// The key type and body schema of the record type `nsid`.
    pub(super) fn record(&self, nsid: &str) -> Option<(&KeyType, &Object)> {
        match self.defs.get(&format!("{nsid}#main")) {
            Some(Def::Record { key, record }) => Some((key, record)),
            _ => None,
        }
    }

    /// Every reference made anywhere in the catalog that names no
    /// definition (a defect in the schemas), sorted.
    #[cfg(test)]
    pub(super) fn dangling(&self) -> Vec<String> {
        fn walk<'a>(ty: &'a Type, out: &mut Vec<&'a str>) {
            match ty {
                Type::Ref(target) => out.push(target),
                Type::Union { refs, .. } => out.extend(refs.iter().map(String::as_str)),
                Type::Array(a) => walk(&a.items, out),
                Type::Object(o) => o.props.iter().for_each(|p| walk(&p.ty, out)),
                _ => {}
            }
        }
        let mut targets = Vec::new();
        for def in self.defs.values() {
            match def {
                Def::Record { record, .. } => {
                    record.props.iter().for_each(|p| walk(&p.ty, &mut targets));
                }
                Def::Type(ty) => walk(ty, &mut targets),
                Def::Token => {}
            }
        }
        let mut missing: Vec<String> = targets
            .into_iter()
            .filter(|t| !self.defs.contains_key(*t))
            .map(str::to_owned)
            .collect();
        missing.sort();
        missing.dedup();
        missing
    }

    /// The NSIDs of every record type, sorted.
    #[cfg(test)]
    pub(super) fn record_types(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .defs
            .iter()
            .filter(|(_, d)| matches!(d, Def::Record { .. }))
            .filter_map(|(k, _)| k.strip_suffix("#main"))
            .collect();
        out.sort_unstable();
        out
    }
}
