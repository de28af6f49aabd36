use super::{SyntaxError, string_newtype};

/// A Decentralized Identifier, e.g. `did:plc:ewvi7nxzyoun6zhxrhs64oiz`.
///
/// Only the generic DID syntax that ATProto allows is checked here; whether
/// the method is supported (`plc`, `web`) is a question for identity
/// resolution, not syntax.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Did(String);

string_newtype!(Did);

const KIND: &str = "DID";

impl Did {
    fn validate(s: &str) -> Result<(), SyntaxError> {
        let err = |reason| Err(SyntaxError::new(KIND, reason));
        if s.len() > 2048 {
            return err("longer than 2048 characters");
        }
        let Some(rest) = s.strip_prefix("did:") else {
            return err("must start with \"did:\"");
        };
        let Some((method, id)) = rest.split_once(':') else {
            return err("needs a method and an identifier");
        };
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_lowercase()) {
            return err("method must be lowercase letters");
        }
        if id.is_empty() {
            return err("empty method-specific identifier");
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'%' | b'-'))
        {
            return err("identifier has a character outside [a-zA-Z0-9._:%-]");
        }
        if id.ends_with(':') || id.ends_with('%') {
            return err("identifier ends with ':' or '%'");
        }
        Ok(())
    }

    /// The DID method, e.g. `plc` or `web`.
    pub fn method(&self) -> &str {
        self.0[4..].split(':').next().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interop_vectors() {
        crate::syntax::vectors::check("did_syntax_valid.txt", "did_syntax_invalid.txt", |s| {
            Did::parse(s)
        });
    }

    #[test]
    fn method() {
        assert_eq!(Did::parse("did:plc:abc").unwrap().method(), "plc");
        assert_eq!(Did::parse("did:web:example.com").unwrap().method(), "web");
    }
}
