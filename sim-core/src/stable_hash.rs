//! The stable 64-bit hash (FNV-1a with fixed encodings): the trace hash and the seeds that
//! random streams derive from names. Compiled in both builds, simulated and real.

/// FNV-1a, 64 bits, with fixed little-endian encodings of integers.
///
/// Written by hand rather than through `std::hash::Hash` so that the encoding of every field is
/// ours and cannot change with a compiler version.
#[derive(Clone, Debug)]
pub struct StableHasher {
    state: u64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher { state: FNV_OFFSET }
    }
}

impl StableHasher {
    /// Feeds raw bytes.
    pub fn bytes(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.state ^= u64::from(*byte);
            self.state = self.state.wrapping_mul(FNV_PRIME);
        }
    }
    /// Feeds one byte (used for enum tags).
    pub fn u8(&mut self, value: u8) {
        self.bytes(&[value]);
    }
    /// Feeds a `u32`, little-endian.
    pub fn u32(&mut self, value: u32) {
        self.bytes(&value.to_le_bytes());
    }
    /// Feeds a `u64`, little-endian.
    pub fn u64(&mut self, value: u64) {
        self.bytes(&value.to_le_bytes());
    }
    /// Feeds an `i64`, little-endian.
    pub fn i64(&mut self, value: i64) {
        self.bytes(&value.to_le_bytes());
    }
    /// Feeds a string, length first so that concatenations cannot collide.
    pub fn str(&mut self, value: &str) {
        self.u64(value.len() as u64);
        self.bytes(value.as_bytes());
    }
    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.state
    }
}

/// Hashes a string with FNV-1a (used to derive seeds from names).
pub fn hash_str(value: &str) -> u64 {
    let mut hasher = StableHasher::default();
    hasher.str(value);
    hasher.finish()
}
