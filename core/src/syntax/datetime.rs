use chrono::{DateTime, Datelike, FixedOffset, SecondsFormat, Utc};

use super::{SyntaxError, string_newtype};

/// An ATProto datetime: RFC 3339 with a mandatory timezone, upper-case `T`
/// and `Z`, as the lexicon `datetime` format requires. The original string is
/// kept (records must round-trip byte for byte).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Datetime(String);

string_newtype!(Datetime);

fn digits(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_digit)
}

impl Datetime {
    fn validate(s: &str) -> Result<(), SyntaxError> {
        let err = |reason| Err(SyntaxError::new("datetime", reason));
        let b = s.as_bytes();
        if b.len() > 64 {
            return err("longer than 64 characters");
        }
        let shape_ok = b.len() >= 20
            && digits(&b[0..4])
            && b[4] == b'-'
            && digits(&b[5..7])
            && b[7] == b'-'
            && digits(&b[8..10])
            && b[10] == b'T'
            && digits(&b[11..13])
            && b[13] == b':'
            && digits(&b[14..16])
            && b[16] == b':'
            && digits(&b[17..19]);
        if !shape_ok {
            return err("not of the form YYYY-MM-DDTHH:MM:SS");
        }
        let mut rest = &b[19..];
        if let Some(frac) = rest.strip_prefix(b".") {
            let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 || n > 20 {
                return err("fractional seconds must be 1 to 20 digits");
            }
            rest = &frac[n..];
        }
        match rest {
            b"Z" => {}
            [b'+' | b'-', h1, h2, b':', m1, m2] if digits(&[*h1, *h2, *m1, *m2]) => {
                if rest == b"-00:00" {
                    return err("\"-00:00\" is not an allowed offset");
                }
            }
            _ => return err("needs a timezone: \"Z\" or \"+HH:MM\""),
        }
        let parsed = DateTime::parse_from_rfc3339(s)
            .map_err(|_| SyntaxError::new("datetime", "not a valid date and time"))?;
        if parsed.with_timezone(&Utc).year() < 0 {
            return err("falls before year 0 in UTC");
        }
        Ok(())
    }

    /// The current time, in the canonical form (`...T..:..:...sssZ`).
    pub fn now() -> Self {
        Self::from_utc(Utc::now())
    }

    /// A UTC time in the canonical form, with millisecond precision.
    pub fn from_utc(time: DateTime<Utc>) -> Self {
        Self(time.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    /// The time this datetime denotes.
    pub fn to_chrono(&self) -> DateTime<FixedOffset> {
        // Validated at construction; the epoch is an unreachable fallback.
        DateTime::parse_from_rfc3339(&self.0).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interop_vectors() {
        crate::syntax::vectors::check(
            "datetime_syntax_valid.txt",
            "datetime_syntax_invalid.txt",
            |s| Datetime::parse(s),
        );
        crate::syntax::vectors::check(
            "datetime_syntax_valid.txt",
            "datetime_parse_invalid.txt",
            |s| Datetime::parse(s),
        );
    }

    #[test]
    fn now_round_trips() {
        let now = Datetime::now();
        assert!(now.as_str().ends_with('Z'));
        assert_eq!(Datetime::parse(now.as_str()).unwrap(), now);
        assert_eq!(Datetime::from_utc(now.to_chrono().with_timezone(&Utc)), now);
    }
}
