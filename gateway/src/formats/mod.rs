//! The shapes readings leave the gateway in: Kinesis records (the forwarder), files (the
//! export), and what `gateway tail` reads back. A long-lived contract with consumers: change
//! a shape only with a new version number (`v` in CBOR, a new field set in JSON) and a note in
//! the README. The stages import these; they never import each other for them.
//!
//! # `record_format = "cbor"`: one device's batches per Kinesis record
//!
//! ```cddl
//! record = {
//!   "v": 1,                  ; format version
//!   "device": tstr,          ; device ID (= partition key)
//!   "batches": [+ batch],    ; in (boot, seq) order
//! }
//! batch = [
//!   boot: uint,              ; device boot counter
//!   first_seq: uint,         ; readings[i] has sequence number first_seq + i
//!   received_ms: int,        ; gateway UTC ms when the batch arrived
//!   utc_offset_ms: int,      ; a reading's UTC ms = t_ms + utc_offset_ms
//!   readings: [+ reading],
//! ]
//! reading = [t_ms: uint, channel: uint, kind: uint, value: float32]
//! ```
//!
//! # `record_format = "json"`: newline-delimited JSON, one object per reading
//!
//! Every line complete on its own (Firehose delivers records back to back, so Athena sees one
//! row per line; a Lambda splits on `\n`); the object is [`json`]'s, also used by the export.
//!
//! # `kpl-cbor` and `kpl-json` (default `kpl-cbor`): KPL aggregated records
//!
//! One Kinesis record is a KPL aggregate ([`kpl`]) of user records, each with its device ID as
//! partition key: in `kpl-cbor` a user record is one device's consecutive batches as the CBOR
//! record above; in `kpl-json` one reading as the JSON object above (no newline). KCL, the
//! `aws-kinesis-agg` libraries and Firehose (from a data stream) unpack them; every user
//! record of an aggregate belongs to the shard the aggregate is sent to (ExplicitHashKey =
//! the first user record's hash key).
//!
//! # Identity and order
//!
//! `(device, boot, seq)` identifies a reading. Delivery is at least once: a crash between
//! Kinesis accepting a record and the buffer deleting it sends the record again, so
//! consumers drop duplicates by that triple. Order per device: records leave in log order,
//! which is `(boot, seq)` order; a record that failed (throttled or an error) is resent
//! before anything newer of its shard is sent, but newer records of the same device that were
//! already in flight may be accepted before it. So the stream holds each device's readings in
//! order except around a retry; consumers that need strict order sort by `(boot, seq)`.

pub mod cbor;
pub mod json;
pub mod kpl;
pub mod read;
