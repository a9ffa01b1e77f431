//! A device ID from the chip when none is set at build time: `<prefix>-<hex of the unique ID>`.

use heapless::String;
use telemetry_wire::limits::MAX_DEVICE_ID_LEN;

/// `prefix-` followed by `unique` in lower-case hex, cut to [`MAX_DEVICE_ID_LEN`] bytes.
/// The result satisfies the contract's rules whenever `prefix` does.
pub fn from_unique_id(prefix: &str, unique: &[u8]) -> String<MAX_DEVICE_ID_LEN> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::new();
    for c in prefix.chars().chain(core::iter::once('-')) {
        let _ = id.push(c);
    }
    for b in unique {
        let _ = id.push(char::from(HEX[usize::from(b >> 4)]));
        let _ = id.push(char::from(HEX[usize::from(b & 0xF)]));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_suffix_is_a_valid_device_id() {
        let id = from_unique_id("f429", &[0x00, 0xAB, 0x3F]);
        assert_eq!(id.as_str(), "f429-00ab3f");
        assert!(telemetry_wire::device_id::validate(&id).is_ok());
        let long = from_unique_id("x", &[0xFF; 40]);
        assert_eq!(long.len(), MAX_DEVICE_ID_LEN);
    }
}
