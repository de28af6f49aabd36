use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

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

    /// The TID of `micros` since the Unix epoch and a 10-bit clock id.
    pub fn from_parts(micros: u64, clock_id: u16) -> Self {
        let value = ((micros & ((1 << 53) - 1)) << 10) | u64::from(clock_id & 0x3ff);
        let mut out = [b'2'; 13];
        for (i, c) in out.iter_mut().enumerate() {
            let shift = 60 - 5 * i;
            *c = ALPHABET[usize::try_from((value >> shift) & 0x1f).unwrap_or(0)];
        }
        Self(out.iter().map(|&b| char::from(b)).collect())
    }

    /// The 64-bit value this TID encodes.
    pub fn value(&self) -> u64 {
        self.0.bytes().fold(0u64, |acc, b| {
            let digit = ALPHABET.iter().position(|&a| a == b).unwrap_or(0) as u64;
            (acc << 5) | digit
        })
    }

    /// Microseconds since the Unix epoch.
    pub fn timestamp_micros(&self) -> u64 {
        self.value() >> 10
    }

    /// The clock id.
    pub fn clock_id(&self) -> u16 {
        u16::try_from(self.value() & 0x3ff).unwrap_or(0)
    }

    /// A new TID from the process-wide [`TidClock`].
    pub fn now() -> Self {
        TidClock::global().next()
    }
}

/// A monotonic TID generator: every TID it returns is greater than the one
/// before, even if the system clock steps back or two calls fall in the same
/// microsecond.
#[derive(Debug)]
pub struct TidClock {
    last: AtomicU64,
    clock_id: u16,
}

impl TidClock {
    /// A generator with a random clock id.
    pub fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Self::with_clock_id(u16::try_from(nanos % 1024).unwrap_or(0))
    }

    /// A generator with the given clock id (its low 10 bits).
    pub fn with_clock_id(clock_id: u16) -> Self {
        Self {
            last: AtomicU64::new(0),
            clock_id: clock_id & 0x3ff,
        }
    }

    /// The process-wide generator.
    pub fn global() -> &'static Self {
        static GLOBAL: std::sync::OnceLock<TidClock> = std::sync::OnceLock::new();
        GLOBAL.get_or_init(Self::new)
    }

    fn now_micros() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    /// The next TID: the current time, or one microsecond after the last TID
    /// issued, whichever is later.
    pub fn next(&self) -> Tid {
        self.next_after_micros(0)
    }

    /// The next TID that is also greater than `previous` (a repo's last
    /// `rev`, which may come from another clock).
    pub fn next_after(&self, previous: &Tid) -> Tid {
        self.next_after_micros(previous.timestamp_micros())
    }

    fn next_after_micros(&self, floor: u64) -> Tid {
        let now = Self::now_micros();
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1).max(floor + 1);
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Tid::from_parts(next, self.clock_id),
                Err(actual) => last = actual,
            }
        }
    }
}

impl Default for TidClock {
    fn default() -> Self {
        Self::new()
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
    fn parts_round_trip() {
        let t = Tid::from_parts(1_700_000_000_000_000, 0x2a5);
        assert_eq!(Tid::parse(t.as_str()).unwrap(), t);
        assert_eq!(t.timestamp_micros(), 1_700_000_000_000_000);
        assert_eq!(t.clock_id(), 0x2a5);
        // A known value: zero is all '2's.
        assert_eq!(Tid::from_parts(0, 0).as_str(), "2222222222222");
    }

    #[test]
    fn clock_is_strictly_monotonic() {
        let clock = TidClock::with_clock_id(7);
        let mut prev = clock.next();
        for _ in 0..10_000 {
            let next = clock.next();
            assert!(next > prev, "{next:?} <= {prev:?}");
            prev = next;
        }
        // A repo rev from a clock far in the future is still exceeded.
        let future = Tid::from_parts(TidClock::now_micros() + 3_600_000_000, 1);
        assert!(clock.next_after(&future) > future);
        let now = Tid::now();
        assert!(now.timestamp_micros() > 1_600_000_000_000_000);
    }

    #[test]
    fn orders_like_time() {
        let a = Tid::parse("3jzfcijpj2z2a").unwrap();
        let b = Tid::parse("3jzfcijpj2z2b").unwrap();
        assert!(a < b);
    }
}
