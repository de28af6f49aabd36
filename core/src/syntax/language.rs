use super::{SyntaxError, string_newtype};

/// A language tag (lexicon `language` format): a BCP-47 tag of the shape
/// `<primary>(-<subtag>)*`, where the primary subtag is a 2–3 letter
/// lower-case code, `i` (grandfathered tags) or `x`/`X` (private use) and
/// each subtag is 1–8 letters and digits; variants and extension
/// singletons do not repeat. The subtag registry is not consulted.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Language(String);

string_newtype!(Language);

impl Language {
    fn validate(s: &str) -> Result<(), SyntaxError> {
        let err = |reason| Err(SyntaxError::new("language", reason));
        if s.len() > 128 {
            return err("longer than 128 characters");
        }
        let mut parts = s.split('-');
        let primary = parts.next().unwrap_or_default();
        let primary_ok = matches!(primary, "i" | "x" | "X")
            || ((2..=3).contains(&primary.len())
                && primary.bytes().all(|b| b.is_ascii_lowercase()));
        if !primary_ok {
            return err("primary subtag must be 2-3 lower-case letters, i or x");
        }
        // Before private use (`x`), an extension singleton may not repeat,
        // nor may a variant subtag (case-insensitively).
        let mut singletons: Vec<String> = Vec::new();
        let mut variants: Vec<String> = Vec::new();
        let mut private = matches!(primary, "x" | "X");
        for subtag in parts {
            if subtag.is_empty()
                || subtag.len() > 8
                || !subtag.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return err("subtags are 1-8 letters or digits");
            }
            if private {
                continue;
            }
            let lower = subtag.to_ascii_lowercase();
            let is_variant =
                lower.len() >= 5 || (lower.len() == 4 && lower.as_bytes()[0].is_ascii_digit());
            if lower == "x" {
                private = true;
            } else if lower.len() == 1 {
                if singletons.contains(&lower) {
                    return err("an extension singleton repeats");
                }
                singletons.push(lower);
            } else if singletons.is_empty() && is_variant {
                if variants.contains(&lower) {
                    return err("a variant subtag repeats");
                }
                variants.push(lower);
            }
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
            "language_syntax_valid.txt",
            "language_syntax_invalid.txt",
            |s| Language::parse(s),
        );
        crate::syntax::vectors::check(
            "language_syntax_valid.txt",
            "language_parse_invalid.txt",
            |s| Language::parse(s),
        );
    }
}
