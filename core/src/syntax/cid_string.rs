use super::{SyntaxError, string_newtype};

/// A CID in string form, as the lexicon `cid` format accepts it: 8 to 256
/// characters of `[a-zA-Z0-9+=]`, and not a legacy CIDv0 (`Qm...`).
///
/// This is the loose syntax check for strings in records and parameters;
/// where the CID is used, parse it into a [`cid::Cid`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CidString(String);

string_newtype!(CidString);

impl CidString {
    fn validate(s: &str) -> Result<(), SyntaxError> {
        let err = |reason| Err(SyntaxError::new("CID", reason));
        if s.len() < 8 || s.len() > 256 {
            return err("must be 8 to 256 characters");
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'=')
        {
            return err("has a character outside [a-zA-Z0-9+=]");
        }
        if s.len() == 46 && s.starts_with("Qm") {
            return err("CIDv0 is not supported");
        }
        Ok(())
    }

    /// The string form of `cid`.
    pub fn from_cid(cid: &cid::Cid) -> Self {
        Self(cid.to_string())
    }

    /// Parses the string as a CID.
    pub fn to_cid(&self) -> Result<cid::Cid, SyntaxError> {
        cid::Cid::try_from(self.0.as_str())
            .map_err(|_| SyntaxError::new("CID", "not a decodable CID"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interop_vectors() {
        crate::syntax::vectors::check("cid_syntax_valid.txt", "cid_syntax_invalid.txt", |s| {
            CidString::parse(s)
        });
    }

    #[test]
    fn converts() {
        let cid = crate::data::cid_for(crate::data::RAW, b"x");
        let s = CidString::from_cid(&cid);
        assert_eq!(s.to_cid().unwrap(), cid);
    }
}
