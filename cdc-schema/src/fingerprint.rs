//! A small stable hash. It must give the same answer in the proc macro and
//! at run time on every platform and Rust version, which rules out
//! `std::hash` (its algorithms are not guaranteed stable).

/// FNV-1a, 64 bit, over a sequence of byte strings separated by a 0xff byte
/// (which never occurs in UTF-8, so `["ab", "c"]` and `["a", "bc"]` differ).
pub fn fnv1a64<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for part in parts {
        for &byte in part.iter().chain(std::iter::once(&0xff)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a of the single byte 0xff.
    const PINNED_EMPTY: u64 = 0xaf64_724c_8602_eb6e;

    #[test]
    fn separator_matters_and_value_is_stable() {
        let a = fnv1a64([b"ab".as_slice(), b"c"]);
        let b = fnv1a64([b"a".as_slice(), b"bc"]);
        assert_ne!(a, b);
        // Pinned: a different hash would orphan every installed capture.
        assert_eq!(fnv1a64([b"".as_slice()]), PINNED_EMPTY);
    }
}
