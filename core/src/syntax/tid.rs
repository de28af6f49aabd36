use super::{SyntaxError, string_newtype};

/// A Timestamp Identifier: 13 characters of base32-sortable encoding a
/// microsecond timestamp and a clock id. Used for record keys and repo `rev`s.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tid(String);

string_newtype!(Tid);

const ALPHABET: &[u8] = b"234567abcdefghijklmnopqrstuvwxyz";

impl Tid {
    fn validate(s: &str) -> Result<(), SyntaxError> {
        let err = |reason| Err(SyntaxError::new("TID", reason));
        if s.len() != 13 {
            return err("must be 13 characters");
        }
        if !s.bytes().all(|b| ALPHABET.contains(&b)) {
            return err("has a character outside the base32-sortable alphabet");
        }
        // The top bit of the 64-bit value is always 0.
        if !b"234567abcdefghij".contains(&s.as_bytes()[0]) {
            return err("first character sets the high bit");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interop_vectors() {
        crate::syntax::vectors::check("tid_syntax_valid.txt", "tid_syntax_invalid.txt", |s| {
            Tid::parse(s)
        });
    }

    #[test]
    fn orders_like_time() {
        let a = Tid::parse("3jzfcijpj2z2a").unwrap();
        let b = Tid::parse("3jzfcijpj2z2b").unwrap();
        assert!(a < b);
    }
}
