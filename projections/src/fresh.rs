//! What a build that started on empty tables has written: a batch of a rebuild need
//! not ask the database for a row no earlier batch wrote.
//!
//! A projector that starts at checkpoint 0 starts on empty tables (every row is written
//! by a batch that moves the checkpoint, in the same transaction), so a row is in the
//! database only if a batch of this build wrote its key. Most keys a rebuild's batch
//! names are new (an upload's first events, its dataset, its references), and reading
//! them finds nothing; on Postgres those reads took a fifth of the server's time in a
//! replay (BENCHMARKS.md, "Event layer", round 14).
//!
//! The keys are kept in a Bloom filter of fixed size: it may say a key was written when
//! it was not (the batch then reads it and finds nothing, as before), never the
//! reverse. Memory stays [`BYTES`] however long the log; past tens of millions of keys
//! more of them read as written, which only costs reads.

use std::hash::{DefaultHasher, Hash, Hasher};

/// The filter's size: 2^26 bits.
const BITS_LOG2: u32 = 26;
const BYTES: usize = 1 << (BITS_LOG2 - 3);
/// Bits set per key.
const PROBES: u64 = 3;

/// The keys written since the build started, by table.
#[derive(Debug)]
pub(crate) struct Written {
    bits: Vec<u64>,
}

impl Written {
    pub fn new() -> Self {
        Self {
            bits: vec![0; BYTES / 8],
        }
    }

    /// Records that rows of `table` with `key` may be in the database.
    pub fn insert<K: Hash + ?Sized>(&mut self, table: &str, key: &K) {
        for bit in Self::probes(table, key) {
            self.bits[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    /// False only when no row of `table` with `key` was written by this build.
    pub fn may_hold<K: Hash + ?Sized>(&self, table: &str, key: &K) -> bool {
        Self::probes(table, key).all(|bit| self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    /// The bits of `key`: double hashing from one 64-bit hash (the std hasher with
    /// its fixed keys: the same bits in every run).
    fn probes<K: Hash + ?Sized>(table: &str, key: &K) -> impl Iterator<Item = u64> {
        let mut h = DefaultHasher::new();
        table.hash(&mut h);
        key.hash(&mut h);
        let hash = h.finish();
        let (a, b) = (hash, (hash >> 32) | 1);
        let mask = (1u64 << BITS_LOG2) - 1;
        (0..PROBES).map(move |i| a.wrapping_add(i.wrapping_mul(b)) & mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_key_is_always_held_and_others_rarely() {
        let mut w = Written::new();
        for i in 0..200_000u32 {
            w.insert("uploads", &format!("upld_{i}"));
        }
        for i in 0..200_000u32 {
            assert!(w.may_hold("uploads", &format!("upld_{i}")));
        }
        // Another table, or keys never written: almost never held.
        let false_positives = (0..100_000u32)
            .filter(|i| w.may_hold("datasets", &format!("upld_{i}")))
            .count()
            + (200_000..300_000u32)
                .filter(|i| w.may_hold("uploads", &format!("upld_{i}")))
                .count();
        assert!(false_positives < 20, "{false_positives} false positives");
    }
}
