//! Reading records back: the readings in a Kinesis record's data (or a user record's), in
//! any of the gateway's shapes. Used by `gateway tail` and the tests.

use minicbor::Decoder;
use serde::{Deserialize, Serialize};

/// One reading as a consumer sees it: the JSON object of [`super::json`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Device ID.
    pub device: String,
    /// Boot counter.
    pub boot: u32,
    /// Sequence number within the boot.
    pub seq: u64,
    /// Device time (ms since boot, or UTC ms when the device knows the time).
    pub t_ms: u64,
    /// UTC ms.
    pub time_ms: i64,
    /// Gateway arrival, UTC ms.
    pub received_ms: i64,
    /// Sensor channel.
    pub channel: u8,
    /// Kind of quantity.
    pub kind: u8,
    /// Value (JSON `null` for a non-finite one, which ingest never admits).
    pub value: Option<f32>,
}

/// Why a record's data is not one of the gateway's shapes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a gateway record: {0}")]
pub struct ShapeError(pub String);

/// The readings in `data`: a CBOR record or JSON (lines of) reading objects.
pub fn readings(data: &[u8]) -> Result<Vec<Reading>, ShapeError> {
    match data.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => json_readings(data),
        Some(_) => cbor_readings(data).map_err(|e| ShapeError(format!("CBOR: {e}"))),
        None => Err(ShapeError("empty".into())),
    }
}

fn json_readings(data: &[u8]) -> Result<Vec<Reading>, ShapeError> {
    data.split(|&b| b == b'\n')
        .filter(|line| line.iter().any(|b| !b.is_ascii_whitespace()))
        .map(|line| serde_json::from_slice(line).map_err(|e| ShapeError(format!("JSON: {e}"))))
        .collect()
}

fn cbor_readings(data: &[u8]) -> Result<Vec<Reading>, minicbor::decode::Error> {
    let mut d = Decoder::new(data);
    let fields = d
        .map()?
        .ok_or_else(|| minicbor::decode::Error::message("indefinite map"))?;
    let mut device = None;
    let mut out = Vec::new();
    let mut pending = Vec::new();
    for _ in 0..fields {
        match d.str()? {
            "v" => {
                let v = d.u8()?;
                if v != super::cbor::CBOR_VERSION {
                    return Err(minicbor::decode::Error::message("unknown version"));
                }
            }
            "device" => device = Some(d.str()?.to_owned()),
            "batches" => {
                let batches = d
                    .array()?
                    .ok_or_else(|| minicbor::decode::Error::message("indefinite array"))?;
                for _ in 0..batches {
                    d.array()?;
                    let (boot, first_seq) = (d.u32()?, d.u32()?);
                    let (received_ms, utc_offset_ms) = (d.i64()?, d.i64()?);
                    let n = d
                        .array()?
                        .ok_or_else(|| minicbor::decode::Error::message("indefinite array"))?;
                    for i in 0..n {
                        d.array()?;
                        let t_ms = d.u64()?;
                        let (channel, kind) = (d.u8()?, d.u8()?);
                        let value = d.f32()?;
                        pending.push(Reading {
                            device: String::new(),
                            boot,
                            seq: u64::from(first_seq) + i,
                            t_ms,
                            time_ms: (t_ms as i64).saturating_add(utc_offset_ms),
                            received_ms,
                            channel,
                            kind,
                            value: Some(value),
                        });
                    }
                }
            }
            _ => d.skip()?,
        }
    }
    let device = device.ok_or_else(|| minicbor::decode::Error::message("no device"))?;
    for mut r in pending {
        r.device.clone_from(&device);
        out.push(r);
    }
    Ok(out)
}
