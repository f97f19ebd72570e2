//! Unmasking client payloads (RFC 6455 section 5.3), eight bytes at a time.

/// XORs `buf` with `mask`, `buf[0]` being byte `offset` of the frame's
/// payload, so a payload can be unmasked in pieces as it arrives.
pub(crate) fn unmask(buf: &mut [u8], mask: [u8; 4], offset: u64) {
    let shift = (offset % 4) as usize;
    let key: [u8; 4] = std::array::from_fn(|i| mask[(shift + i) % 4]);
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &[u8], mask: [u8; 4], offset: u64) -> Vec<u8> {
        buf.iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[((offset as usize) + i) % 4])
            .collect()
    }

    #[test]
    fn matches_the_byte_by_byte_definition_at_every_offset_and_length() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let data: Vec<u8> = (0..=40).collect();
        for offset in 0..8 {
            for len in 0..data.len() {
                let mut buf = data[..len].to_vec();
                unmask(&mut buf, mask, offset);
                assert_eq!(buf, naive(&data[..len], mask, offset), "{offset} {len}");
            }
        }
    }

    #[test]
    fn pieces_unmask_like_the_whole() {
        let mask = [1, 2, 3, 4];
        let data: Vec<u8> = (0..100).collect();
        let mut whole = data.clone();
        unmask(&mut whole, mask, 0);
        let mut pieces = data.clone();
        let (a, rest) = pieces.split_at_mut(7);
        let (b, c) = rest.split_at_mut(30);
        unmask(a, mask, 0);
        unmask(b, mask, 7);
        unmask(c, mask, 37);
        assert_eq!(pieces, whole);
    }
}
