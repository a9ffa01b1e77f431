use crate::device_id::DeviceIdError;

/// Why a payload was rejected. Every variant has a stable [`reason`](Self::reason) label that
/// the gateway uses as the metric label of its rejection counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DecodeError {
    /// Not well-formed CBOR, or a value of the wrong CBOR type for its field.
    Malformed,
    /// The payload is longer than the limit for its message type.
    TooLarge,
    /// Bytes follow the end of the message.
    TrailingBytes,
    /// The schema version is not [`SCHEMA_VERSION`](crate::SCHEMA_VERSION).
    UnsupportedVersion,
    /// A required map key is absent (the key number).
    MissingField(u8),
    /// A map key appears twice.
    DuplicateField(u8),
    /// Indefinite-length maps and arrays are not part of the contract.
    IndefiniteLength,
    /// The device ID breaks [`DeviceId`](crate::DeviceId)'s rules.
    DeviceId(DeviceIdError),
    /// The batch has no readings.
    EmptyBatch,
    /// The batch has more than [`MAX_READINGS_PER_BATCH`](crate::limits::MAX_READINGS_PER_BATCH).
    TooManyReadings,
    /// `first_seq + readings - 1` does not fit in a u32.
    SequenceOverflow,
    /// `held_from` is greater than `first_seq`.
    HeldFromAfterFirstSeq,
    /// A reading's value is NaN or infinite.
    NonFiniteValue,
    /// A reading's timestamp is later than the batch's `sent_at_ms`.
    ReadingAfterSend,
    /// The MAC field is longer than [`MAX_MAC_LEN`](crate::limits::MAX_MAC_LEN).
    MacTooLong,
}

impl DecodeError {
    /// A stable, lower-case label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed_cbor",
            Self::TooLarge => "too_large",
            Self::TrailingBytes => "trailing_bytes",
            Self::UnsupportedVersion => "unsupported_version",
            Self::MissingField(_) => "missing_field",
            Self::DuplicateField(_) => "duplicate_field",
            Self::IndefiniteLength => "indefinite_length",
            Self::DeviceId(_) => "invalid_device_id",
            Self::EmptyBatch => "empty_batch",
            Self::TooManyReadings => "too_many_readings",
            Self::SequenceOverflow => "sequence_overflow",
            Self::HeldFromAfterFirstSeq => "held_from_after_first_seq",
            Self::NonFiniteValue => "non_finite_value",
            Self::ReadingAfterSend => "reading_after_send",
            Self::MacTooLong => "mac_too_long",
        }
    }
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::MissingField(k) => write!(f, "required field {k} is missing"),
            Self::DuplicateField(k) => write!(f, "field {k} appears twice"),
            Self::DeviceId(e) => write!(f, "invalid device id: {e}"),
            other => f.write_str(other.reason()),
        }
    }
}

impl From<minicbor::decode::Error> for DecodeError {
    fn from(_: minicbor::decode::Error) -> Self {
        Self::Malformed
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}

/// Why a message could not be encoded. The encoder checks the same rules as the decoder, so
/// a message that encodes is a message the gateway accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer is too small.
    BufferTooSmall,
    /// The message breaks a rule of the contract (the decoder would reject it).
    Invalid(DecodeError),
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BufferTooSmall => f.write_str("output buffer too small"),
            Self::Invalid(e) => write!(f, "message breaks the contract: {e}"),
        }
    }
}

impl<E> From<minicbor::encode::Error<E>> for EncodeError {
    fn from(_: minicbor::encode::Error<E>) -> Self {
        Self::BufferTooSmall
    }
}

#[cfg(feature = "std")]
impl std::error::Error for EncodeError {}
