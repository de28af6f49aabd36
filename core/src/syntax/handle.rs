use super::{SyntaxError, string_newtype};

/// An ATProto handle: a DNS hostname such as `alice.bsky.social`.
///
/// Handles are case-insensitive; parsing normalises to lower case.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Handle(String);

string_newtype!(Handle, Handle::normalize);

const KIND: &str = "handle";

impl Handle {
    fn validate(s: &str) -> Result<(), SyntaxError> {
        let err = |reason| Err(SyntaxError::new(KIND, reason));
        if s.len() > 253 {
            return err("longer than 253 characters");
        }
        let labels: Vec<&str> = s.split('.').collect();
        if labels.len() < 2 {
            return err("needs at least two labels");
        }
        for label in &labels {
            if label.is_empty() || label.len() > 63 {
                return err("label must be 1 to 63 characters");
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return err("label has a character other than letters, digits and hyphens");
            }
            if label.starts_with('-') || label.ends_with('-') {
                return err("label starts or ends with a hyphen");
            }
        }
        if labels
            .last()
            .is_some_and(|tld| tld.as_bytes()[0].is_ascii_digit())
        {
            return err("top-level domain starts with a digit");
        }
        Ok(())
    }

    fn normalize(mut s: String) -> String {
        s.make_ascii_lowercase();
        s
    }

    /// Whether this handle is `domain` itself or a name under it. `domain`
    /// may be given with or without a leading dot (`.test` or `test`).
    pub fn is_under(&self, domain: &str) -> bool {
        let domain = domain.trim_start_matches('.').to_ascii_lowercase();
        self.0
            .strip_suffix(&domain)
            .is_some_and(|prefix| prefix.ends_with('.'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interop_vectors() {
        crate::syntax::vectors::check(
            "handle_syntax_valid.txt",
            "handle_syntax_invalid.txt",
            |s| Handle::parse(s),
        );
    }

    #[test]
    fn lowercases_and_checks_domains() {
        let h = Handle::parse("Alice.Example.TEST").unwrap();
        assert_eq!(h.as_str(), "alice.example.test");
        assert!(h.is_under(".test"));
        assert!(h.is_under("example.test"));
        assert!(!h.is_under("ample.test"));
        assert!(!h.is_under(".com"));
    }
}
