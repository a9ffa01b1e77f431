//! LEB128 varints for the stored record format ([`super::layout`]).
//!
//! Unsigned values are little-endian base-128 groups, low group first, the high bit of each
//! byte set when another follows: at most 10 bytes for a u64. Signed values are zigzag-mapped
//! first (0, -1, 1, -2 … → 0, 1, 2, 3 …), so small magnitudes of either sign stay short.
//! Decoding rejects a varint that runs past its input or past 64 bits; it never panics.

use super::layout::CorruptRecord;

/// Most bytes of a u64 varint.
const MAX_LEN: usize = 10;

/// Appends `value` as a varint.
pub fn put(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends `value` zigzag-mapped, as a varint.
pub fn put_signed(out: &mut Vec<u8>, value: i64) {
    put(out, ((value << 1) ^ (value >> 63)) as u64);
}

/// Takes a varint from the front of `input`.
pub fn take(input: &mut &[u8]) -> Result<u64, CorruptRecord> {
    let mut value = 0u64;
    for (i, &byte) in input.iter().enumerate().take(MAX_LEN) {
        let group = u64::from(byte & 0x7f);
        // The tenth byte carries only the top bit of a u64.
        if i == MAX_LEN - 1 && group > 1 {
            return Err(CorruptRecord);
        }
        value |= group << (7 * i);
        if byte & 0x80 == 0 {
            *input = &input[i + 1..];
            return Ok(value);
        }
    }
    Err(CorruptRecord)
}

/// Takes a zigzag varint from the front of `input`.
pub fn take_signed(input: &mut &[u8]) -> Result<i64, CorruptRecord> {
    let raw = take(input)?;
    Ok((raw >> 1) as i64 ^ -((raw & 1) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_every_length_and_sign() {
        let mut values: Vec<u64> = (0..64).flat_map(|b| [1u64 << b, (1u64 << b) - 1]).collect();
        values.extend([u64::MAX, 300, 127, 128]);
        for v in values {
            let mut out = Vec::new();
            put(&mut out, v);
            assert!(out.len() <= MAX_LEN);
            let mut input = out.as_slice();
            assert_eq!(take(&mut input), Ok(v));
            assert!(input.is_empty());
            for s in [v as i64, (v as i64).wrapping_neg()] {
                let mut out = Vec::new();
                put_signed(&mut out, s);
                let mut input = out.as_slice();
                assert_eq!(take_signed(&mut input), Ok(s), "{s}");
            }
        }
    }

    #[test]
    fn small_magnitudes_are_short() {
        for (v, len) in [
            (0i64, 1),
            (-1, 1),
            (63, 1),
            (-64, 1),
            (64, 2),
            (1_000_000, 3),
        ] {
            let mut out = Vec::new();
            put_signed(&mut out, v);
            assert_eq!(out.len(), len, "{v}");
        }
    }

    #[test]
    fn truncated_or_overlong_input_is_an_error() {
        let mut out = Vec::new();
        put(&mut out, u64::MAX);
        for cut in 0..out.len() {
            assert_eq!(take(&mut &out[..cut]), Err(CorruptRecord), "cut {cut}");
        }
        assert_eq!(take(&mut &[0xff; 11][..]), Err(CorruptRecord));
        // Ten bytes whose last carries more than the 64th bit.
        let mut over = vec![0xffu8; 9];
        over.push(0x02);
        assert_eq!(take(&mut over.as_slice()), Err(CorruptRecord));
    }
}
