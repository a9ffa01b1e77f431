//! CBOR helpers shared by every message: integer-keyed maps with duplicate detection,
//! unknown-key skipping and a trailing-bytes check. Decoding never panics: every path returns
//! a [`DecodeError`].

use crate::error::DecodeError;
use minicbor::Decoder;
use minicbor::data::Type;

/// Reads a definite-length map with unsigned integer keys. `field` is called for every entry
/// and returns `Ok(false)` for keys it does not know, which are skipped (forward compatibility:
/// newer senders may add keys). Returns the bit set of known keys below 32 that were seen.
pub(crate) fn read_map<'b>(
    d: &mut Decoder<'b>,
    mut field: impl FnMut(u32, &mut Decoder<'b>) -> Result<bool, DecodeError>,
) -> Result<u32, DecodeError> {
    let entries = d.map()?.ok_or(DecodeError::IndefiniteLength)?;
    let mut seen: u32 = 0;
    for _ in 0..entries {
        let key = d.u32()?;
        if key < 32 {
            let bit = 1u32 << key;
            if seen & bit != 0 {
                return Err(DecodeError::DuplicateField(key as u8));
            }
            seen |= bit;
        }
        if !field(key, d)? {
            d.skip()?;
        }
    }
    Ok(seen)
}

/// Fails with [`DecodeError::MissingField`] for the first key of `required` absent in `seen`.
pub(crate) fn require(seen: u32, required: &[u8]) -> Result<(), DecodeError> {
    match required.iter().find(|&&k| seen & (1u32 << k) == 0) {
        Some(&k) => Err(DecodeError::MissingField(k)),
        None => Ok(()),
    }
}

/// Fails unless the decoder consumed every byte.
pub(crate) fn finish(d: &Decoder<'_>) -> Result<(), DecodeError> {
    if d.position() == d.input().len() {
        Ok(())
    } else {
        Err(DecodeError::TrailingBytes)
    }
}

/// Reads the schema version and rejects any other than ours.
pub(crate) fn version(d: &mut Decoder<'_>) -> Result<(), DecodeError> {
    if d.u8()? == crate::SCHEMA_VERSION {
        Ok(())
    } else {
        Err(DecodeError::UnsupportedVersion)
    }
}

/// Reads any CBOR number (integer or half/single/double float) as an `f32`, rounding to
/// nearest. Other encoders (Python, JavaScript) often pick the width by value.
pub(crate) fn number(d: &mut Decoder<'_>) -> Result<f32, DecodeError> {
    Ok(match d.datatype()? {
        Type::F16 => half(d)?,
        Type::F32 => d.f32()?,
        Type::F64 => d.f64()? as f32,
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => d.u64()? as f32,
        Type::I8 | Type::I16 | Type::I32 | Type::I64 => d.i64()? as f32,
        _ => return Err(DecodeError::Malformed),
    })
}

/// Reads a half-precision float (major type 7, additional info 25) without the `half` crate.
fn half(d: &mut Decoder<'_>) -> Result<f32, DecodeError> {
    let at = d.position();
    let bytes = d.input().get(at..at + 3).ok_or(DecodeError::Malformed)?;
    let bits = u16::from_be_bytes([bytes[1], bytes[2]]);
    d.set_position(at + 3);
    Ok(f16_to_f32(bits))
}

/// IEEE 754 binary16 to binary32, exact for every input (RFC 8949 appendix D).
fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits & 0x8000) << 16;
    let exp = u32::from((bits >> 10) & 0x1f);
    let mant = u32::from(bits & 0x3ff);
    match exp {
        // Subnormal: mant × 2^-24, both exact in binary32.
        0 => {
            let two_pow_minus_24 = f32::from_bits((127 - 24) << 23);
            let magnitude = mant as f32 * two_pow_minus_24;
            f32::from_bits(magnitude.to_bits() | sign)
        }
        31 => f32::from_bits(sign | (0xff << 23) | (mant << 13)),
        _ => f32::from_bits(sign | ((exp + 127 - 15) << 23) | (mant << 13)),
    }
}

#[cfg(test)]
mod tests {
    use super::f16_to_f32;

    #[test]
    fn half_precision_matches_rfc_8949_examples() {
        assert_eq!(f16_to_f32(0x0000), 0.0);
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0x3e00), 1.5);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert_eq!(f16_to_f32(0x0400), 6.103_515_6e-5);
        assert_eq!(f16_to_f32(0xc400), -4.0);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
    }
}
