//! A small stable hash. It must give the same answer in the proc macro and
//! at run time on every platform and Rust version, which rules out
//! `std::hash` (its algorithms are not guaranteed stable).

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

fn fold(hash: u64, bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(hash, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// FNV-1a, 64 bit, of `bytes`: a short, stable digest (message ids,
/// names derived from paths).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fold(OFFSET, bytes.iter().copied())
}

/// FNV-1a, 64 bit, over a sequence of byte strings separated by a 0xff byte
/// (which never occurs in UTF-8, so `["ab", "c"]` and `["a", "bc"]` differ).
pub fn fnv1a64<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    parts.into_iter().fold(OFFSET, |h, part| fold(h, part.iter().copied().chain([0xff])))
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
