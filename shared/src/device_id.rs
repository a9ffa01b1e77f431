//! Device IDs: the one validation function every component uses.
//!
//! A device ID is 1 to [`MAX_DEVICE_ID_LEN`] bytes of ASCII letters, digits, `-`, `_` and `.`,
//! and does not start with `.`. That makes it safe as an MQTT topic level (no `/`, `+`, `#`),
//! as an MQTT client ID and username, as a file name component in exports, and as a Kinesis
//! partition key (1 to 256 Unicode characters).

use crate::limits::MAX_DEVICE_ID_LEN;

/// A validated device ID borrowed from its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DeviceId<'a>(&'a str);

/// Why a string is not a device ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DeviceIdError {
    /// The string is empty.
    Empty,
    /// The string is longer than [`MAX_DEVICE_ID_LEN`] bytes.
    TooLong,
    /// A byte outside `[A-Za-z0-9._-]`, or a leading `.`.
    BadCharacter,
}

impl core::fmt::Display for DeviceIdError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty",
            Self::TooLong => "longer than 64 bytes",
            Self::BadCharacter => "characters other than A-Z a-z 0-9 . _ - (or a leading .)",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DeviceIdError {}

/// Checks `s` against the device ID rules. This is the only place those rules live.
pub fn validate(s: &str) -> Result<(), DeviceIdError> {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err(DeviceIdError::Empty);
    }
    if bytes.len() > MAX_DEVICE_ID_LEN {
        return Err(DeviceIdError::TooLong);
    }
    if bytes[0] == b'.' {
        return Err(DeviceIdError::BadCharacter);
    }
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if bytes.iter().all(allowed) {
        Ok(())
    } else {
        Err(DeviceIdError::BadCharacter)
    }
}

impl<'a> DeviceId<'a> {
    /// Validates `s` as a device ID.
    pub fn new(s: &'a str) -> Result<Self, DeviceIdError> {
        validate(s).map(|()| Self(s))
    }

    /// The ID as text.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

impl core::fmt::Display for DeviceId<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.0)
    }
}

impl<'a> TryFrom<&'a str> for DeviceId<'a> {
    type Error = DeviceIdError;
    fn try_from(s: &'a str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_typical_ids() {
        for id in ["a", "sensor-0001", "site_3.room-12", "A1", &"x".repeat(64)] {
            assert_eq!(validate(id), Ok(()), "{id}");
        }
    }

    #[test]
    fn rejects_topic_wildcards_separators_and_bad_lengths() {
        assert_eq!(validate(""), Err(DeviceIdError::Empty));
        assert_eq!(validate(&"x".repeat(65)), Err(DeviceIdError::TooLong));
        for id in ["a/b", "a+", "#", "a b", ".hidden", "é", "a\0"] {
            assert_eq!(validate(id), Err(DeviceIdError::BadCharacter), "{id:?}");
        }
    }
}
