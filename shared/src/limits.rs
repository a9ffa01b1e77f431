//! Size limits of the protocol. Both sides enforce them: the encoder refuses to produce a
//! message the decoder would reject.

/// Most readings one uplink batch may carry.
pub const MAX_READINGS_PER_BATCH: usize = 128;

/// Largest encoded uplink payload in bytes. A full batch with 64-bit timestamps and
/// single-precision values needs at most 128 × 21 + 140 bytes, so this leaves headroom while
/// staying far below Kinesis's 1 MiB record limit and small enough for an MCU's MQTT buffer.
pub const MAX_UPLINK_BYTES: usize = 4096;

/// Largest encoded ack payload in bytes.
pub const MAX_ACK_BYTES: usize = 128;

/// Longest device ID in bytes (also the Kinesis partition key, which allows 256).
pub const MAX_DEVICE_ID_LEN: usize = 64;

/// Longest per-batch message authentication code (reserved field, key 9).
pub const MAX_MAC_LEN: usize = 32;

/// Longest MQTT topic this protocol produces: prefix, device ID and suffix.
pub const MAX_TOPIC_LEN: usize = 96;

/// Largest TLS record the gateway sends, counted as rustls counts `max_fragment_size`: the
/// 5-byte header plus plaintext. A microcontroller's TLS stack buffers whole records, so the
/// gateway keeps them this small (TLS's own limit is 16 KiB).
pub const TLS_MAX_FRAGMENT: usize = 2048;

/// Largest TLS 1.3 record on the wire from the gateway: [`TLS_MAX_FRAGMENT`] plus the inner
/// content type (1 byte) and the AEAD tag (16 bytes). A device's receive buffer holds one.
pub const TLS_MAX_RECORD: usize = TLS_MAX_FRAGMENT + 17;
