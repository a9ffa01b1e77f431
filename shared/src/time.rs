//! The device time base and its conversion to UTC.
//!
//! Devices need no real-time clock. Every reading's `t_ms` is milliseconds since the device
//! booted, from a monotonic clock that never steps back within one boot. Each batch says when
//! it was encoded on that same clock (`sent_at_ms`), and, if the device learned UTC (RTC,
//! SNTP), the UTC instant of its boot (`boot_utc_ms`).
//!
//! The gateway turns a reading into UTC this way:
//! - with `boot_utc_ms`: `utc = boot_utc_ms + t_ms` (as good as the device's clock);
//! - without: `utc = received_utc_ms - (sent_at_ms - t_ms)`, anchoring the device clock to the
//!   gateway's clock at arrival. The error is the transit time of the batch (milliseconds on a
//!   LAN; for batches resent after an outage, their queueing delay is not counted because the
//!   device stamps `sent_at_ms` when it re-encodes a batch) plus the device clock's drift over
//!   `sent_at_ms - t_ms`.

use crate::uplink::UplinkHeader;

/// The UTC time, in ms since the Unix epoch, of a reading taken at device time `t_ms` in a
/// batch received by the gateway at `received_utc_ms`. Saturates instead of overflowing.
pub fn reading_utc_ms(header: &UplinkHeader<'_>, t_ms: u64, received_utc_ms: i64) -> i64 {
    match header.boot_utc_ms {
        Some(boot) => i64::try_from(boot.saturating_add(t_ms)).unwrap_or(i64::MAX),
        None => {
            let age = header.sent_at_ms.saturating_sub(t_ms);
            received_utc_ms.saturating_sub(i64::try_from(age).unwrap_or(i64::MAX))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceId;

    fn header(sent_at_ms: u64, boot_utc_ms: Option<u64>) -> UplinkHeader<'static> {
        UplinkHeader {
            device_id: DeviceId::new("d").expect("valid"),
            boot: 1,
            first_seq: 0,
            held_from: 0,
            dropped: 0,
            sent_at_ms,
            boot_utc_ms,
            mac: None,
        }
    }

    #[test]
    fn anchors_to_arrival_without_rtc() {
        let h = header(10_000, None);
        assert_eq!(
            reading_utc_ms(&h, 7_500, 1_700_000_000_000),
            1_699_999_997_500
        );
    }

    #[test]
    fn uses_boot_time_when_known() {
        let h = header(10_000, Some(1_600_000_000_000));
        assert_eq!(
            reading_utc_ms(&h, 7_500, 1_700_000_000_000),
            1_600_000_007_500
        );
    }

    #[test]
    fn saturates() {
        let h = header(u64::MAX, Some(u64::MAX));
        assert_eq!(reading_utc_ms(&h, u64::MAX, 0), i64::MAX);
        let h = header(u64::MAX, None);
        assert_eq!(reading_utc_ms(&h, 0, i64::MIN), i64::MIN);
    }
}
