use super::{SyntaxError, string_newtype};

/// A record key (`rkey`): the last segment of a record's path in a repo.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey(String);

string_newtype!(RecordKey);

impl RecordKey {
    fn validate(s: &str) -> Result<(), SyntaxError> {
        let err = |reason| Err(SyntaxError::new("record key", reason));
        if s.is_empty() || s.len() > 512 {
            return err("must be 1 to 512 characters");
        }
        if s == "." || s == ".." {
            return err("\".\" and \"..\" are not allowed");
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'~' | b'.' | b':' | b'-'))
        {
            return err("has a character outside [a-zA-Z0-9_~.:-]");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interop_vectors() {
        crate::syntax::vectors::check(
            "recordkey_syntax_valid.txt",
            "recordkey_syntax_invalid.txt",
            |s| RecordKey::parse(s),
        );
    }
}
