//! The Kinesis Producer Library's aggregated record: many user records (each with its own
//! partition key) in one Kinesis record, which KCL, `aws-kinesis-agg` (Lambda, Python, Node,
//! Java) and Firehose de-aggregate by themselves.
//!
//! ```text
//! F3 89 9A C2 | protobuf AggregatedRecord | MD5 of the protobuf (16 bytes)
//!
//! message AggregatedRecord { repeated string partition_key_table = 1;
//!                            repeated string explicit_hash_key_table = 2;
//!                            repeated Record records = 3; }
//! message Record { required uint64 partition_key_index = 1;
//!                  optional uint64 explicit_hash_key_index = 2;
//!                  required bytes data = 3;
//!                  repeated Tag tags = 4; }
//! ```
//!
//! Hand-written (a dozen lines of protobuf wire format, no code generator in the build).
//! `partition_key_index` is proto2 `required`: it is always written, also when 0 (strict
//! parsers such as KCL's reject a record without it). Every user record of an aggregate must
//! hash into the shard the aggregate lands on, or KCL drops it: the forwarder aggregates per
//! predicted shard (see `forward/lane.rs`).

use md5::{Digest, Md5};
use std::collections::HashMap;

/// The first four bytes of an aggregated record.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// Bytes around the protobuf: magic and MD5.
pub const FRAMING: usize = MAGIC.len() + 16;

const PARTITION_KEY_TABLE: u8 = (1 << 3) | 2;
const EXPLICIT_HASH_KEY_TABLE: u8 = (2 << 3) | 2;
const RECORDS: u8 = (3 << 3) | 2;
const RECORD_PARTITION_KEY_INDEX: u8 = 1 << 3;
const RECORD_EXPLICIT_HASH_KEY_INDEX: u8 = 2 << 3;
const RECORD_DATA: u8 = (3 << 3) | 2;

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes of a length-delimited field of `len` bytes (key, length, contents).
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// The contents of one `Record` message.
fn record_body_len(key_index: usize, data_len: usize) -> usize {
    1 + varint_len(key_index as u64) + field_len(data_len)
}

/// The exact size of an aggregate as user records are added, so a caller can stop before a
/// limit. Keys are counted once each (the partition key table).
#[derive(Debug, Default, Clone)]
pub struct SizeCounter {
    keys: HashMap<String, usize>,
    records: usize,
    /// Protobuf bytes so far.
    protobuf: usize,
}

impl SizeCounter {
    /// An empty aggregate.
    pub fn new() -> Self {
        Self::default()
    }

    /// User records counted.
    pub fn records(&self) -> usize {
        self.records
    }

    /// The aggregate's size in bytes (framing included).
    pub fn size(&self) -> usize {
        FRAMING + self.protobuf
    }

    /// The size after adding a user record of `data_len` bytes under `key`.
    pub fn size_with(&self, key: &str, data_len: usize) -> usize {
        let (index, new_key) = match self.keys.get(key) {
            Some(&i) => (i, 0),
            None => (self.keys.len(), field_len(key.len())),
        };
        self.size() + new_key + field_len(record_body_len(index, data_len))
    }

    /// Counts a user record.
    pub fn add(&mut self, key: &str, data_len: usize) {
        self.protobuf = self.size_with(key, data_len) - FRAMING;
        if !self.keys.contains_key(key) {
            self.keys.insert(key.to_owned(), self.keys.len());
        }
        self.records += 1;
    }
}

/// The aggregated record of `records` (partition key, data), in order. Its length is what a
/// [`SizeCounter`] fed the same records says.
pub fn encode<'a>(records: impl IntoIterator<Item = (&'a str, &'a [u8])> + Clone) -> Vec<u8> {
    let mut keys: HashMap<&str, usize> = HashMap::new();
    let mut table: Vec<&str> = Vec::new();
    for (key, _) in records.clone() {
        if !keys.contains_key(key) {
            keys.insert(key, table.len());
            table.push(key);
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    for key in &table {
        out.push(PARTITION_KEY_TABLE);
        put_varint(&mut out, key.len() as u64);
        out.extend_from_slice(key.as_bytes());
    }
    for (key, data) in records {
        let index = keys.get(key).copied().unwrap_or_default();
        out.push(RECORDS);
        put_varint(&mut out, record_body_len(index, data.len()) as u64);
        out.push(RECORD_PARTITION_KEY_INDEX);
        put_varint(&mut out, index as u64);
        out.push(RECORD_DATA);
        put_varint(&mut out, data.len() as u64);
        out.extend_from_slice(data);
    }
    let digest = Md5::digest(&out[MAGIC.len()..]);
    out.extend_from_slice(&digest);
    out
}

/// One user record read back from an aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRecord<'a> {
    /// Its partition key.
    pub partition_key: &'a str,
    /// Its explicit hash key (a decimal string), if it has one.
    pub explicit_hash_key: Option<&'a str>,
    /// Its data.
    pub data: &'a [u8],
}

/// Why an aggregated record could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KplError {
    /// The MD5 at the end does not match (KCL then treats the bytes as one plain record).
    #[error("the aggregate's MD5 does not match")]
    Digest,
    /// The protobuf is malformed or an index points outside its table.
    #[error("malformed aggregate: {0}")]
    Malformed(&'static str),
}

/// A protobuf reader over a slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, KplError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self
                .0
                .split_first()
                .ok_or(KplError::Malformed("truncated varint"))?;
            self.0 = rest;
            v |= u64::from(b & 0x7F) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(KplError::Malformed("varint too long"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], KplError> {
        let len = usize::try_from(self.varint()?).map_err(|_| KplError::Malformed("length"))?;
        if len > self.0.len() {
            return Err(KplError::Malformed("length past the end"));
        }
        let (value, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(value)
    }

    /// Skips a field of `wire_type` (unknown fields are allowed, as protobuf requires).
    fn skip(&mut self, wire_type: u64) -> Result<(), KplError> {
        match wire_type {
            0 => self.varint().map(drop),
            1 => self.advance(8),
            2 => self.bytes().map(drop),
            5 => self.advance(4),
            _ => Err(KplError::Malformed("wire type")),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), KplError> {
        if n > self.0.len() {
            return Err(KplError::Malformed("truncated field"));
        }
        self.0 = &self.0[n..];
        Ok(())
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, KplError> {
    std::str::from_utf8(bytes).map_err(|_| KplError::Malformed("key is not UTF-8"))
}

/// The user records of `data` if it is an aggregated record; `Ok(None)` if it is a plain
/// record (no magic, or too short to be an aggregate).
pub fn deaggregate<'a>(data: &'a [u8]) -> Result<Option<Vec<UserRecord<'a>>>, KplError> {
    if data.len() < FRAMING || data[..MAGIC.len()] != MAGIC {
        return Ok(None);
    }
    let protobuf = &data[MAGIC.len()..data.len() - 16];
    if Md5::digest(protobuf).as_slice() != &data[data.len() - 16..] {
        return Err(KplError::Digest);
    }
    let mut keys = Vec::new();
    let mut hash_keys = Vec::new();
    let mut raw_records = Vec::new();
    let mut r = Reader(protobuf);
    while !r.0.is_empty() {
        let key = r.varint()?;
        match (key >> 3, key & 7) {
            (1, 2) => keys.push(utf8(r.bytes()?)?),
            (2, 2) => hash_keys.push(utf8(r.bytes()?)?),
            (3, 2) => raw_records.push(r.bytes()?),
            (_, wire_type) => r.skip(wire_type)?,
        }
    }
    let mut out = Vec::with_capacity(raw_records.len());
    for body in raw_records {
        let mut r = Reader(body);
        let (mut key, mut hash_key, mut data) = (None, None, None);
        while !r.0.is_empty() {
            let field = r.varint()?;
            match (field >> 3, field & 7) {
                (1, 0) => key = Some(r.varint()?),
                (2, 0) => hash_key = Some(r.varint()?),
                (3, 2) => data = Some(r.bytes()?),
                (_, wire_type) => r.skip(wire_type)?,
            }
        }
        let lookup = |table: &Vec<&'a str>, i: u64| {
            usize::try_from(i)
                .ok()
                .and_then(|i| table.get(i).copied())
                .ok_or(KplError::Malformed("index outside its table"))
        };
        let partition_key = lookup(&keys, key.ok_or(KplError::Malformed("no key index"))?)?;
        let explicit_hash_key = hash_key.map(|i| lookup(&hash_keys, i)).transpose()?;
        out.push(UserRecord {
            partition_key,
            explicit_hash_key,
            data: data.ok_or(KplError::Malformed("no data"))?,
        });
    }
    Ok(Some(out))
}

// Field keys are spelled out above for the encoder; the decoder matches on numbers. Keep the
// two in step.
const _: () = assert!(EXPLICIT_HASH_KEY_TABLE == 0x12 && RECORD_EXPLICIT_HASH_KEY_INDEX == 0x10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_exact_sizes() {
        let data: Vec<Vec<u8>> = (0..300).map(|i| vec![i as u8; i * 3]).collect();
        let keys = ["node-a", "node-b", "node-a", "node-c"];
        let mut size = SizeCounter::new();
        let records: Vec<(&str, &[u8])> = data
            .iter()
            .enumerate()
            .map(|(i, d)| (keys[i % keys.len()], d.as_slice()))
            .collect();
        for (key, d) in &records {
            let expected = size.size_with(key, d.len());
            size.add(key, d.len());
            assert_eq!(size.size(), expected);
        }
        let bytes = encode(records.iter().copied());
        assert_eq!(bytes.len(), size.size());
        let users = deaggregate(&bytes).unwrap().unwrap();
        assert_eq!(users.len(), 300);
        for (i, u) in users.iter().enumerate() {
            assert_eq!(u.partition_key, keys[i % keys.len()]);
            assert_eq!(u.data, data[i].as_slice());
            assert_eq!(u.explicit_hash_key, None);
        }
    }

    #[test]
    fn the_first_key_index_is_written_even_though_it_is_zero() {
        let bytes = encode([("k", &b"x"[..])]);
        // magic, key table "k", then record: 1A len 08 00 1A 01 'x'
        assert_eq!(&bytes[4..7], &[0x0A, 1, b'k']);
        assert_eq!(&bytes[7..14], &[0x1A, 5, 0x08, 0x00, 0x1A, 1, b'x']);
    }

    #[test]
    fn plain_and_damaged_records_are_told_apart() {
        assert_eq!(deaggregate(b"{\"device\":\"a\"}").unwrap(), None);
        assert_eq!(deaggregate(&MAGIC).unwrap(), None);
        let mut bytes = encode([("k", &b"data"[..])]);
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        assert_eq!(deaggregate(&bytes), Err(KplError::Digest));
        // Garbage with a valid digest never panics.
        for len in 0..64 {
            let mut junk: Vec<u8> = MAGIC.to_vec();
            junk.extend((0..len).map(|i| (i * 37 + 11) as u8));
            let digest = Md5::digest(&junk[4..]);
            junk.extend_from_slice(&digest);
            let _ = deaggregate(&junk);
        }
    }
}
