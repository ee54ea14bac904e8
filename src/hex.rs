//! Lower-case hex for ids and tokens, by table (eight loads per u64).

/// Two hex digits for every byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 15]];
        i += 1;
    }
    t
};

/// `v` as 16 hex digits, most significant first.
pub fn hex16(v: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (pair, byte) in out.chunks_exact_mut(2).zip(v.to_be_bytes()) {
        pair.copy_from_slice(&HEX_PAIRS[byte as usize]);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn digits() {
        assert_eq!(&super::hex16(0x0123_4567_89ab_cdef), b"0123456789abcdef");
        assert_eq!(&super::hex16(0), b"0000000000000000");
    }
}
