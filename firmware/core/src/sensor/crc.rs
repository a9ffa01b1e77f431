//! The CRC-8 that Sensirion sensors append to every 16-bit word: polynomial 0x31
//! (x^8 + x^5 + x^4 + 1), initial value 0xFF, no reflection, no final XOR.

/// CRC-8 of `data` as Sensirion computes it.
pub fn sensirion_crc8(data: &[u8]) -> u8 {
    let mut crc: u8 = 0xFF;
    for &byte in data {
        crc ^= byte;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x31
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(any(test, feature = "target-tests"))]
// Test code: a failed expectation is the test failing (clippy.toml allows this under
// `#[cfg(test)]` only, which this module is not when `target-tests` compiles it for a target).
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
pub(crate) mod tests {
    use super::*;

    #[cfg_attr(test, test)]
    pub(crate) fn datasheet_example() {
        // Sensirion datasheets: CRC(0xBEEF) = 0x92.
        assert_eq!(sensirion_crc8(&[0xBE, 0xEF]), 0x92);
        assert_eq!(sensirion_crc8(&[0x00, 0x00]), 0x81);
    }
}
