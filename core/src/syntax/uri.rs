use super::{SyntaxError, string_newtype};

/// A URI (lexicon `uri` format): `<scheme>:<rest>` with a scheme of a letter
/// then letters, digits, `+`, `-` or `.`, a non-empty rest without
/// whitespace, at most 8 KiB in all.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uri(String);

string_newtype!(Uri);

impl Uri {
    fn validate(s: &str) -> Result<(), SyntaxError> {
        let err = |reason| Err(SyntaxError::new("URI", reason));
        if s.len() > 8 * 1024 {
            return err("longer than 8 KiB");
        }
        let Some((scheme, rest)) = s.split_once(':') else {
            return err("needs a scheme");
        };
        let scheme_ok = scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return err("invalid scheme");
        }
        if rest.is_empty() || rest.chars().any(char::is_whitespace) {
            return err("needs a non-empty part after the scheme, without whitespace");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interop_vectors() {
        crate::syntax::vectors::check("uri_syntax_valid.txt", "uri_syntax_invalid.txt", |s| {
            Uri::parse(s)
        });
    }
}
