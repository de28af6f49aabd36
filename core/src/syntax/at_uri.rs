use super::{Did, Handle, Nsid, RecordKey, SyntaxError, string_newtype};

/// An `at://` URI in the restricted form ATProto uses to name repos,
/// collections and records: `at://<did-or-handle>[/<collection>[/<rkey>]]`.
/// No query, fragment or trailing slash.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AtUri(String);

string_newtype!(AtUri);

/// An `at-identifier`: a DID or a handle, as in an AT URI's authority or
/// a `repo` parameter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AtIdentifier {
    /// A DID.
    Did(Did),
    /// A handle.
    Handle(Handle),
}

impl AtIdentifier {
    /// Parses a DID (when it starts with `did:`) or else a handle.
    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        if s.starts_with("did:") {
            Did::parse(s).map(Self::Did)
        } else {
            Handle::parse(s).map(Self::Handle)
        }
    }
}

impl std::fmt::Display for AtIdentifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Did(d) => d.fmt(f),
            Self::Handle(h) => h.fmt(f),
        }
    }
}

impl AtUri {
    fn validate(s: &str) -> Result<(), SyntaxError> {
        Self::split(s).map(|_| ())
    }

    fn split(s: &str) -> Result<(AtIdentifier, Option<Nsid>, Option<RecordKey>), SyntaxError> {
        let err = |reason| Err(SyntaxError::new("AT URI", reason));
        if s.len() > 8 * 1024 {
            return err("longer than 8 KiB");
        }
        let Some(rest) = s.strip_prefix("at://") else {
            return err("must start with \"at://\"");
        };
        let mut parts = rest.split('/');
        let authority = AtIdentifier::parse(parts.next().unwrap_or_default())?;
        let collection = parts.next().map(Nsid::parse).transpose()?;
        let rkey = parts.next().map(RecordKey::parse).transpose()?;
        if parts.next().is_some() {
            return err("has more than three path segments");
        }
        Ok((authority, collection, rkey))
    }

    /// A record's URI.
    pub fn for_record(did: &Did, collection: &Nsid, rkey: &RecordKey) -> Self {
        Self(format!("at://{did}/{collection}/{rkey}"))
    }

    fn parts(&self) -> (AtIdentifier, Option<Nsid>, Option<RecordKey>) {
        // Parsing is the only constructor, so the split cannot fail.
        Self::split(&self.0).unwrap_or_else(|_| unreachable!("AtUri holds a validated URI"))
    }

    /// The repo: a DID or a handle.
    pub fn authority(&self) -> AtIdentifier {
        self.parts().0
    }

    /// The collection, when the URI names one.
    pub fn collection(&self) -> Option<Nsid> {
        self.parts().1
    }

    /// The record key, when the URI names a record.
    pub fn rkey(&self) -> Option<RecordKey> {
        self.parts().2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interop_vectors() {
        crate::syntax::vectors::check("aturi_syntax_valid.txt", "aturi_syntax_invalid.txt", |s| {
            AtUri::parse(s)
        });
    }

    #[test]
    fn at_identifier_vectors() {
        crate::syntax::vectors::check(
            "atidentifier_syntax_valid.txt",
            "atidentifier_syntax_invalid.txt",
            AtIdentifier::parse,
        );
    }

    #[test]
    fn parts() {
        let uri = AtUri::parse("at://did:plc:abc/app.bsky.feed.post/3k2a").unwrap();
        assert_eq!(
            uri.authority(),
            AtIdentifier::Did(Did::parse("did:plc:abc").unwrap())
        );
        assert_eq!(uri.collection().unwrap().as_str(), "app.bsky.feed.post");
        assert_eq!(uri.rkey().unwrap().as_str(), "3k2a");
        let built = AtUri::for_record(
            &Did::parse("did:plc:abc").unwrap(),
            &Nsid::parse("app.bsky.feed.post").unwrap(),
            &RecordKey::parse("3k2a").unwrap(),
        );
        assert_eq!(built, uri);
        let repo = AtUri::parse("at://alice.test").unwrap();
        assert!(matches!(repo.authority(), AtIdentifier::Handle(_)));
        assert_eq!(repo.collection(), None);
    }
}
