//! A small deterministic mutator: a SplitMix64 random number generator and
//! the byte- and token-level mutations the campaign applies to corpus
//! entries.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::Flavor;

/// SplitMix64: tiny, fast, and the same sequence on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        let Ok(n64) = u64::try_from(n) else {
            return 0;
        };
        if n64 == 0 {
            return 0;
        }
        usize::try_from(self.next_u64() % n64).unwrap_or(0)
    }

    /// True once in `n` times on average.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64().to_le_bytes()[0]
    }

    /// A random element of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }
}

/// A 64-bit FNV-1a hash, to derive per-target seeds from names.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Bytes that sit on boundaries: zero, signs, CBOR heads of every major
/// type and length size, tags, simple values and floats.
const INTERESTING_BYTES: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0xff, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1f, 0x20, 0x37, 0x38, 0x3b,
    0x40, 0x57, 0x58, 0x5b, 0x5f, 0x60, 0x77, 0x78, 0x7b, 0x80, 0x97, 0x98, 0x9b, 0x9f, 0xa0, 0xb7,
    0xb8, 0xbb, 0xbf, 0xc0, 0xc2, 0xd8, 0x2a, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfe,
];

/// Characters that separate or escape things in tokens and query strings.
const INTERESTING_CHARS: &[u8] = b"./:%=&#-_\"{}[],+ \\\n\t\0\x7f@?*~";

/// Multi-byte big-endian boundary values.
const INTERESTING_INTS: &[&[u8]] = &[
    &[0x00, 0x00],
    &[0xff, 0xff],
    &[0x7f, 0xff],
    &[0x80, 0x00],
    &[0x01, 0x00],
    &[0x00, 0x00, 0x00, 0x00],
    &[0xff, 0xff, 0xff, 0xff],
    &[0x7f, 0xff, 0xff, 0xff],
    &[0x80, 0x00, 0x00, 0x00],
    &[0x00, 0x01, 0x00, 0x00],
    &[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
];

/// Decimal numbers on boundaries of the integer and time types.
const INTERESTING_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "127",
    "255",
    "256",
    "1000",
    "1001",
    "65535",
    "2147483647",
    "-2147483648",
    "4294967296",
    "9007199254740993",
    "9223372036854775807",
    "-9223372036854775808",
    "-9223372036854775807",
    "9223372036854775800",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "1699999999",
    "1700000000",
    "1700000060",
    "1700003600",
    "8210266876799",
    "8210266876800",
    "-62135596800",
    "1e3",
    "1.5",
    "1.0",
    "0x10",
];

/// Tokens for DAG-CBOR and CAR: CID heads, the data model's reserved keys,
/// boundary integers, indefinite lengths, floats, CAR header keys and
/// long varints.
pub const CBOR_DICTIONARY: &[&[u8]] = &[
    b"\xd8\x2a\x58\x25\x00\x01\x71\x12\x20",
    b"\xd8\x2a\x58\x25\x00\x01\x55\x12\x20",
    b"\xd8\x2a\x58\x22\x00\x12\x20",
    b"\x65$type",
    b"\x65$link",
    b"\x66$bytes",
    b"\x64blob",
    b"\x63ref",
    b"\x68mimeType",
    b"\x64size",
    b"\xa0",
    b"\x80",
    b"\xf6",
    b"\xf5",
    b"\x40",
    b"\x60",
    b"\x1b\x7f\xff\xff\xff\xff\xff\xff\xff",
    b"\x3b\x7f\xff\xff\xff\xff\xff\xff\xff",
    b"\x1b\x80\x00\x00\x00\x00\x00\x00\x00",
    b"\x3b\x80\x00\x00\x00\x00\x00\x00\x00",
    b"\x9f\xff",
    b"\xbf\xff",
    b"\xfb\x3f\xf0\x00\x00\x00\x00\x00\x00",
    b"\xf9\x3c\x00",
    b"\x67version",
    b"\x65roots",
    b"\x80\x01",
    b"\xff\xff\xff\xff\x0f",
    b"\x81\x81\x81\x81\x81\x81\x81\x81",
    b"\x01\x71\x12\x20",
    b"\x01\x70\x12\x20",
    b"\x12\x20",
];

/// Tokens for MST nodes (see [`crate::mst_load`]): field names, node
/// indexes, key parts.
pub const MST_DICTIONARY: &[&[u8]] = &[
    b"\x61e",
    b"\x61l",
    b"\x61p",
    b"\x61k",
    b"\x61t",
    b"\x61v",
    b"\x01",
    b"\x02",
    b"\x03",
    b"\x18\x20",
    b"\xf6",
    b"\x80",
    b"\xa0",
    b"\x53app.bsky.feed.post/",
    b"\x4d3jzfcijpj2z2a",
    b"/",
    b"app.bsky.feed.like/",
    b"\xa4\x61k\x41a\x61p\x00\x61t\xf6\x61v",
    b"\xd8\x2a\x58\x25\x00\x01\x71\x12\x20",
];

/// Tokens for event-stream frames: header and body field names, event
/// types, `op` values.
pub const FRAME_DICTIONARY: &[&[u8]] = &[
    b"\x62op",
    b"\x61t",
    b"\x01",
    b"\x20",
    b"\x02",
    b"\x67#commit",
    b"\x69#identity",
    b"\x68#account",
    b"\x65#sync",
    b"\x65#info",
    b"\x63seq",
    b"\x66blocks",
    b"\x63ops",
    b"\x65blobs",
    b"\x65error",
    b"\x67message",
    b"\x64name",
    b"\x64repo",
    b"\x63rev",
    b"\x65since",
    b"\x66commit",
    b"\x68prevData",
    b"\x64time",
    b"\x66handle",
    b"\x66active",
    b"\x66status",
    b"\x66action",
    b"\x64path",
    b"\x63cid",
    b"\x64prev",
    b"\xd8\x2a\x58\x25\x00\x01\x71\x12\x20",
    b"\xf6",
    b"\xf4",
    b"\x1b\x7f\xff\xff\xff\xff\xff\xff\xff",
];

/// Tokens for JWTs: header values, claim names, algorithm names, JSON
/// punctuation.
pub const JWT_DICTIONARY: &[&[u8]] = &[
    b"\"alg\":\"none\"",
    b"\"HS256\"",
    b"\"ES256K\"",
    b"\"ES256\"",
    b"\"RS256\"",
    b"\"at+jwt\"",
    b"\"refresh+jwt\"",
    b"\"dpop+jwt\"",
    b"\"JWT\"",
    b"\"crit\":[\"x\"],",
    b"\"x\":\"\xc3\x28\",",
    b"\"x\":\"\\ud800\",",
    b"\"kid\":\"k1\",",
    b"\"jwk\":",
    b"\"d\":\"AAAA\",",
    b"\"exp\":",
    b"\"iat\":",
    b"\"nbf\":",
    b"\"aud\":[",
    b"\"scope\":\"com.atproto.refresh\",",
    b"\"scope\":\"com.atproto.access\",",
    b"\"ath\":",
    b"\"nonce\":",
    b"\"lxm\":",
    b"\"cnf\":{\"jkt\":\"x\"},",
    b"null",
    b"true",
    b"[]",
    b"{}",
    b"\"\"",
    b"\\u0000",
    b"\\ud800",
    b"1e308",
    b"-0.0",
    b"did:plc:",
    b"did:web:",
    b"#",
    b"=",
    b"..",
];

/// Tokens for query strings and identifiers.
pub const XRPC_DICTIONARY: &[&[u8]] = &[
    b"did:",
    b"did:plc:",
    b"did:web:",
    b"did:key:z",
    b"at://",
    b"%",
    b"%3A",
    b"%2F",
    b"%00",
    b"%FF",
    b"%zz",
    b"&",
    b"=",
    b"+",
    b"repo=",
    b"collection=",
    b"rkey=",
    b"cursor=",
    b"limit=",
    b"cid=",
    b"cids=",
    b"since=",
    b"did=",
    b"handle=",
    b"uri=",
    b"lxm=",
    b"aud=",
    b"exp=",
    b"reverse=true",
    b"app.bsky.feed.post",
    b".test",
    b"xn--",
    b"-",
    b"..",
    b"T",
    b"Z",
    b".000",
    b"+00:00",
    b"-00:00",
    b"+23:59",
    b"bafyrei",
    b"bafkrei",
    b"Qm",
    b"z",
    b"x-",
    b"\xc3\xa9",
    b"\xf0\x9f\x98\x80",
];

/// Applies random mutations to inputs.
#[derive(Debug, Clone)]
pub struct Mutator {
    rng: Rng,
    flavor: Flavor,
    dictionary: &'static [&'static [u8]],
    /// Longest mutant produced.
    pub max_len: usize,
}

impl Mutator {
    /// A mutator for inputs of `flavor`, inserting tokens of `dictionary`.
    pub fn new(seed: u64, flavor: Flavor, dictionary: &'static [&'static [u8]]) -> Self {
        Self {
            rng: Rng::new(seed),
            flavor,
            dictionary,
            max_len: 64 * 1024,
        }
    }

    /// The mutator's random number generator (for choosing inputs).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// A mutant of `base`: one to six stacked mutations; `other` is
    /// another corpus entry to splice from.
    pub fn mutate(&mut self, base: &[u8], other: &[u8]) -> Vec<u8> {
        let mut out = base.to_vec();
        let mut rounds = 1 + self.rng.below(2);
        if self.rng.one_in(4) {
            rounds += self.rng.below(5);
        }
        for _ in 0..rounds {
            self.mutate_once(&mut out, other);
        }
        out.truncate(self.max_len);
        out
    }

    fn mutate_once(&mut self, out: &mut Vec<u8>, other: &[u8]) {
        match self.rng.below(16) {
            0 => self.flip_bit(out),
            1 => self.set_byte(out, true),
            2 => self.set_byte(out, false),
            3 => self.insert_bytes(out),
            4 => self.delete_range(out),
            5 => {
                let at = self.rng.below(out.len() + 1);
                out.truncate(at);
            }
            6 => self.duplicate_range(out),
            7 => {
                // Splice: the head of this input and the tail of another.
                let at = self.rng.below(out.len() + 1);
                let from = self.rng.below(other.len() + 1);
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
            8 => {
                let (start, end) = self.range(other.len(), 64);
                let at = self.rng.below(out.len() + 1);
                out.splice(at..at, other[start..end].iter().copied());
            }
            9 => self.arithmetic(out),
            10 | 11 => match self.flavor {
                Flavor::Binary => self.tweak_length(out),
                Flavor::Text => self.replace_number(out),
            },
            12 | 13 => self.dictionary(out),
            14 => match self.flavor {
                Flavor::Binary => self.interesting_int(out),
                Flavor::Text => self.mutate_segment(out),
            },
            _ => match self.flavor {
                Flavor::Binary => self.swap_ranges(out),
                Flavor::Text => self.replace_number(out),
            },
        }
    }

    /// A random range of at most `max` bytes within `len`.
    fn range(&mut self, len: usize, max: usize) -> (usize, usize) {
        let start = self.rng.below(len + 1);
        let size = self.rng.below(max.min(len - start) + 1);
        (start, start + size)
    }

    fn flip_bit(&mut self, out: &mut [u8]) {
        if out.is_empty() {
            return;
        }
        let i = self.rng.below(out.len());
        out[i] ^= 1 << self.rng.below(8);
    }

    fn interesting_byte(&mut self) -> u8 {
        let table = match self.flavor {
            Flavor::Binary => INTERESTING_BYTES,
            Flavor::Text => INTERESTING_CHARS,
        };
        self.rng.pick(table).copied().unwrap_or(0)
    }

    fn set_byte(&mut self, out: &mut [u8], interesting: bool) {
        if out.is_empty() {
            return;
        }
        let i = self.rng.below(out.len());
        out[i] = if interesting {
            self.interesting_byte()
        } else {
            self.rng.byte()
        };
    }

    fn insert_bytes(&mut self, out: &mut Vec<u8>) {
        let at = self.rng.below(out.len() + 1);
        let n = 1 + self.rng.below(4);
        let bytes: Vec<u8> = (0..n)
            .map(|_| {
                if self.rng.one_in(2) {
                    self.interesting_byte()
                } else {
                    self.rng.byte()
                }
            })
            .collect();
        out.splice(at..at, bytes);
    }

    fn delete_range(&mut self, out: &mut Vec<u8>) {
        let (start, end) = self.range(out.len(), 16);
        out.drain(start..end);
    }

    fn duplicate_range(&mut self, out: &mut Vec<u8>) {
        let (start, end) = self.range(out.len(), 256);
        let chunk = out[start..end].to_vec();
        let times = if self.rng.one_in(8) {
            2 + self.rng.below(64)
        } else {
            1
        };
        let at = self.rng.below(out.len() + 1);
        let repeated: Vec<u8> = chunk
            .iter()
            .copied()
            .cycle()
            .take(chunk.len() * times)
            .collect();
        out.splice(at..at, repeated);
    }

    fn arithmetic(&mut self, out: &mut [u8]) {
        if out.is_empty() {
            return;
        }
        let i = self.rng.below(out.len());
        let delta = 1 + self.rng.byte() % 35;
        out[i] = if self.rng.one_in(2) {
            out[i].wrapping_add(delta)
        } else {
            out[i].wrapping_sub(delta)
        };
    }

    /// Changes the length (or value) argument of a CBOR head: a byte
    /// string, text, array or map gets a length one off, zero, or a longer
    /// encoding; or the last byte of a multi-byte argument moves by one.
    fn tweak_length(&mut self, out: &mut [u8]) {
        let heads: Vec<usize> = out
            .iter()
            .enumerate()
            .filter(|(_, b)| matches!(*b >> 5, 2..=5) && (*b & 0x1f) < 28)
            .map(|(i, _)| i)
            .collect();
        let Some(&i) = self.rng.pick(&heads) else {
            return self.arithmetic(out);
        };
        let (major, info) = (out[i] >> 5, out[i] & 0x1f);
        if (24..=27).contains(&info) && self.rng.one_in(2) {
            let last = i + (1usize << (info - 24));
            if let Some(b) = out.get_mut(last) {
                *b = if self.rng.one_in(2) {
                    b.wrapping_add(1)
                } else {
                    b.wrapping_sub(1)
                };
            }
            return;
        }
        let choices = [
            info.wrapping_add(1) & 0x1f,
            info.wrapping_sub(1) & 0x1f,
            0,
            23,
            24,
            25,
            27,
            31,
        ];
        let new_info = self.rng.pick(&choices).copied().unwrap_or(info);
        out[i] = (major << 5) | new_info;
    }

    fn interesting_int(&mut self, out: &mut Vec<u8>) {
        let Some(&value) = self.rng.pick(INTERESTING_INTS) else {
            return;
        };
        let at = self.rng.below(out.len() + 1);
        let end = (at + value.len()).min(out.len());
        if self.rng.one_in(2) {
            out.splice(at..end, value.iter().copied());
        } else {
            out.splice(at..at, value.iter().copied());
        }
    }

    fn dictionary(&mut self, out: &mut Vec<u8>) {
        let Some(&token) = self.rng.pick(self.dictionary) else {
            return self.insert_bytes(out);
        };
        let at = self.rng.below(out.len() + 1);
        if self.rng.one_in(2) {
            let end = (at + token.len()).min(out.len());
            out.splice(at..end, token.iter().copied());
        } else {
            out.splice(at..at, token.iter().copied());
        }
    }

    /// Replaces a run of decimal digits (with its sign) by a boundary
    /// number, or inserts one where there are none. Runs that are values
    /// (after `:` in JSON or `=` in a query) are chosen more often than
    /// digits inside names.
    fn replace_number(&mut self, out: &mut Vec<u8>) {
        let mut runs = Vec::new();
        let mut values = Vec::new();
        let mut i = 0;
        while i < out.len() {
            if out[i].is_ascii_digit() {
                let start = if i > 0 && out[i - 1] == b'-' {
                    i - 1
                } else {
                    i
                };
                while i < out.len() && out[i].is_ascii_digit() {
                    i += 1;
                }
                runs.push((start, i));
                if start > 0 && matches!(out[start - 1], b':' | b'=') {
                    values.push((start, i));
                }
            } else {
                i += 1;
            }
        }
        let number = self.rng.pick(INTERESTING_NUMBERS).copied().unwrap_or("0");
        let candidates = if !values.is_empty() && !self.rng.one_in(4) {
            &values
        } else {
            &runs
        };
        let (start, end) = self.rng.pick(candidates).copied().unwrap_or_else(|| {
            let at = self.rng.below(out.len() + 1);
            (at, at)
        });
        out.splice(start..end, number.bytes());
    }

    /// Mutates the decoded bytes of one base64url segment of a
    /// dot-separated token, and encodes them again.
    fn mutate_segment(&mut self, out: &mut Vec<u8>) {
        let mut bounds = Vec::new();
        let mut start = 0;
        for (i, b) in out.iter().enumerate() {
            if *b == b'.' {
                bounds.push((start, i));
                start = i + 1;
            }
        }
        bounds.push((start, out.len()));
        let Some(&(start, end)) = self.rng.pick(&bounds) else {
            return;
        };
        let Ok(mut decoded) = URL_SAFE_NO_PAD.decode(&out[start..end]) else {
            return self.replace_number(out);
        };
        let rounds = 1 + self.rng.below(3);
        for _ in 0..rounds {
            match self.rng.below(7) {
                0 => self.flip_bit(&mut decoded),
                1 => self.set_byte(&mut decoded, true),
                2 => self.insert_bytes(&mut decoded),
                3 => self.delete_range(&mut decoded),
                4 => self.dictionary(&mut decoded),
                5 => self.swap_ranges(&mut decoded),
                _ => self.replace_number(&mut decoded),
            }
        }
        let encoded = URL_SAFE_NO_PAD.encode(decoded);
        out.splice(start..end, encoded.into_bytes());
    }

    /// Swaps two non-overlapping chunks.
    fn swap_ranges(&mut self, out: &mut Vec<u8>) {
        if out.len() < 2 {
            return self.insert_bytes(out);
        }
        let mid = 1 + self.rng.below(out.len() - 1);
        let (a_start, a_end) = self.range(mid, 32);
        let (b_start, b_end) = self.range(out.len() - mid, 32);
        let (b_start, b_end) = (b_start + mid, b_end + mid);
        let mut swapped = Vec::with_capacity(out.len());
        swapped.extend_from_slice(&out[..a_start]);
        swapped.extend_from_slice(&out[b_start..b_end]);
        swapped.extend_from_slice(&out[a_end..b_start]);
        swapped.extend_from_slice(&out[a_start..a_end]);
        swapped.extend_from_slice(&out[b_end..]);
        *out = swapped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_deterministic_and_spread() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            counts[a.below(4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
        assert_eq!(a.below(0), 0);
    }

    #[test]
    fn mutants_are_bounded_and_reproducible() {
        let base = b"repo=did%3Aplc%3Aabc&limit=50&cursor=3jzfcijpj2z2a";
        let other = b"\xa2\x61a\x01\x61b\x82\x01\x02";
        for flavor in [Flavor::Binary, Flavor::Text] {
            let mut m1 = Mutator::new(1, flavor, XRPC_DICTIONARY);
            let mut m2 = Mutator::new(1, flavor, XRPC_DICTIONARY);
            m1.max_len = 200;
            m2.max_len = 200;
            let mut changed = 0;
            for _ in 0..2000 {
                let x = m1.mutate(base, other);
                assert_eq!(x, m2.mutate(base, other));
                assert!(x.len() <= 200);
                changed += usize::from(x != base);
            }
            assert!(changed > 1800, "{flavor:?}: only {changed} mutants differ");
            // Empty inputs are fine too.
            for _ in 0..200 {
                let _ = m1.mutate(b"", b"");
            }
        }
    }
}
