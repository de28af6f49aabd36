use super::{SyntaxError, string_newtype};

/// A Namespaced Identifier such as `com.atproto.repo.createRecord`: a reversed
/// domain authority followed by a name segment.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nsid(String);

string_newtype!(Nsid);

const KIND: &str = "NSID";

impl Nsid {
    fn validate(s: &str) -> Result<(), SyntaxError> {
        let err = |reason| Err(SyntaxError::new(KIND, reason));
        if s.len() > 317 {
            return err("longer than 317 characters");
        }
        let segments: Vec<&str> = s.split('.').collect();
        if segments.len() < 3 {
            return err("needs at least three segments");
        }
        let (name, authority) = segments.split_last().unwrap_or((&"", &[]));
        for (i, seg) in authority.iter().enumerate() {
            if seg.is_empty() || seg.len() > 63 {
                return err("domain segment must be 1 to 63 characters");
            }
            if !seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return err(
                    "domain segment has a character other than letters, digits and hyphens",
                );
            }
            if seg.starts_with('-') || seg.ends_with('-') {
                return err("domain segment starts or ends with a hyphen");
            }
            if i == 0 && seg.as_bytes()[0].is_ascii_digit() {
                return err("first segment starts with a digit");
            }
        }
        if name.is_empty() || name.len() > 63 {
            return err("name segment must be 1 to 63 characters");
        }
        if !name.as_bytes()[0].is_ascii_alphabetic()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return err("name segment must be letters and digits, starting with a letter");
        }
        Ok(())
    }

    /// The name segment (the last one), e.g. `createRecord`.
    pub fn name(&self) -> &str {
        self.0.rsplit('.').next().unwrap_or_default()
    }

    /// The domain authority as written, e.g. `com.atproto.repo`.
    pub fn authority(&self) -> &str {
        self.0.rsplit_once('.').map_or("", |(a, _)| a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interop_vectors() {
        crate::syntax::vectors::check("nsid_syntax_valid.txt", "nsid_syntax_invalid.txt", |s| {
            Nsid::parse(s)
        });
    }

    #[test]
    fn parts() {
        let n = Nsid::parse("com.atproto.repo.createRecord").unwrap();
        assert_eq!(n.name(), "createRecord");
        assert_eq!(n.authority(), "com.atproto.repo");
    }
}
