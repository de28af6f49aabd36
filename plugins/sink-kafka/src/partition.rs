//! Which partition a repo's events go to.
//!
//! Kafka's default partitioner (the Java client's, and librdkafka's
//! `murmur2_random`): the 32-bit murmur2 hash of the key with seed
//! `0x9747b28c`, its sign bit cleared, modulo the partition count. The key
//! is the DID, so every event of one repo lands in one partition, in order,
//! and other producers keyed by DID with the default partitioner agree with
//! this sink.

/// The partition of `key` among `partitions` (which must be positive).
pub(crate) fn partition_for(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Kafka's `Utils.murmur2`.
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Kafka hashes the length as a Java int; keys are far below 2^32 bytes.
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let mut h = SEED ^ len;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        if tail.len() == 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Kafka's UtilsTest.testMurmur2 vectors (signed Java ints).
        for (key, expected) in [
            ("21", -973_932_308_i32),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ] {
            assert_eq!(
                i32::from_ne_bytes(murmur2(key.as_bytes()).to_ne_bytes()),
                expected,
                "{key}"
            );
        }
    }

    #[test]
    fn partitions_are_stable_and_in_range() {
        let did = b"did:plc:ewvi7nxzyoun6zhxrhs64oiz";
        for n in 1..20 {
            let p = partition_for(did, n);
            assert!(p < n);
            assert_eq!(p, partition_for(did, n));
        }
        assert_eq!(partition_for(did, 0), 0);
    }
}
