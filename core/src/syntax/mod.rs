//! Validated ATProto identifier types.
//!
//! Every type here is a newtype around a `String` whose only constructor is
//! parsing, so a value of the type is proof that the string follows the
//! ATProto syntax rules (<https://atproto.com/specs>). Handlers parse input at
//! the edge and pass these types inward; nothing deeper re-validates.

mod at_uri;
mod cid_string;
mod datetime;
mod did;
mod handle;
mod language;
mod nsid;
mod record_key;
mod tid;
mod uri;

pub use at_uri::{AtIdentifier, AtUri};
pub use cid_string::CidString;
pub use datetime::Datetime;
pub use did::Did;
pub use handle::Handle;
pub use language::Language;
pub use nsid::Nsid;
pub use record_key::RecordKey;
pub use tid::{Tid, TidClock};
pub use uri::Uri;

/// Why a string is not a valid identifier of some kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: {reason}")]
pub struct SyntaxError {
    /// The kind of identifier, e.g. `"DID"` or `"NSID"`.
    pub kind: &'static str,
    /// A short, human-readable reason.
    pub reason: &'static str,
}

impl SyntaxError {
    pub(crate) const fn new(kind: &'static str, reason: &'static str) -> Self {
        Self { kind, reason }
    }
}

/// Implements the common surface of a validated string newtype: `FromStr`,
/// `Display`, `AsRef<str>`, `as_str`, serde (validating on deserialize) and
/// `TryFrom<String>`. The type must provide `fn validate(&str) -> Result<(), SyntaxError>`;
/// a second argument names a `fn(String) -> String` that normalises valid input.
macro_rules! string_newtype {
    ($name:ident) => {
        $crate::syntax::string_newtype!($name, ::std::convert::identity);
    };
    ($name:ident, $normalize:path) => {
        impl $name {
            /// Parses and validates `s`.
            pub fn parse(s: impl Into<String>) -> Result<Self, $crate::syntax::SyntaxError> {
                let s: String = s.into();
                Self::validate(&s)?;
                Ok(Self($normalize(s)))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Consumes the identifier, returning the inner string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::syntax::SyntaxError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::syntax::SyntaxError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = $crate::syntax::SyntaxError;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::parse(s)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(s).map_err(::serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use string_newtype;

#[cfg(test)]
mod fuzz {
    use super::*;

    proptest::proptest! {
        /// Every parser takes arbitrary input without panicking.
        #[test]
        fn parsers_never_panic(s in "\\PC{0,80}", ascii in "[ -~]{0,300}") {
            for input in [&s, &ascii] {
                let _ = Did::parse(input.as_str());
                let _ = Handle::parse(input.as_str());
                let _ = Nsid::parse(input.as_str());
                let _ = RecordKey::parse(input.as_str());
                let _ = Tid::parse(input.as_str());
                let _ = AtUri::parse(input.as_str());
                let _ = AtIdentifier::parse(input);
                let _ = Datetime::parse(input.as_str());
                let _ = CidString::parse(input.as_str());
                let _ = Language::parse(input.as_str());
                let _ = Uri::parse(input.as_str());
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod vectors {
    //! Loads the shared interop vectors (`../shared/interop-tests/syntax`).
    /// Non-comment, non-empty lines of `syntax/<file>`, or `None` (with a
    /// message) when the interop folder is absent.
    pub(crate) fn lines(file: &str) -> Option<Vec<String>> {
        let text = crate::interop::text(&format!("syntax/{file}"))?;
        Some(
            text.lines()
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect(),
        )
    }

    /// Asserts that `parse` accepts every line of `valid` and rejects every
    /// line of `invalid`, and prints how many cases of each file passed.
    pub(crate) fn check<T, E>(valid: &str, invalid: &str, parse: impl Fn(&str) -> Result<T, E>) {
        if let Some(lines) = lines(valid) {
            for l in &lines {
                assert!(parse(l).is_ok(), "{valid}: rejected valid {l:?}");
            }
            println!("syntax/{valid}: {} cases passed", lines.len());
        }
        if let Some(lines) = lines(invalid) {
            for l in &lines {
                assert!(parse(l).is_err(), "{invalid}: accepted invalid {l:?}");
            }
            println!("syntax/{invalid}: {} cases passed", lines.len());
        }
    }
}
