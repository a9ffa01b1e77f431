//! What an export takes from the log, the time formats the CLI accepts, and the partition
//! calendar (UTC hours as `dt=YYYY-MM-DD/hour=HH`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Milliseconds per hour.
pub const HOUR_MS: i64 = 3_600_000;

/// Which readings a run exports. Empty fields select everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// Readings with UTC time at or after this (ms since the epoch).
    pub from_ms: Option<i64>,
    /// Readings with UTC time before this (ms since the epoch).
    pub to_ms: Option<i64>,
    /// Only these devices (empty: all).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub devices: BTreeSet<String>,
}

impl Selection {
    /// True if the device is selected.
    pub fn device(&self, device: &str) -> bool {
        self.devices.is_empty() || self.devices.contains(device)
    }

    /// True if a reading at `utc_ms` is selected.
    pub fn time(&self, utc_ms: i64) -> bool {
        self.from_ms.is_none_or(|f| utc_ms >= f) && self.to_ms.is_none_or(|t| utc_ms < t)
    }

    /// True when no reading can be excluded by time.
    pub fn all_times(&self) -> bool {
        self.from_ms.is_none() && self.to_ms.is_none()
    }
}

/// Parses a time for `--from` / `--to`: ms since the epoch (`1764000000000`), a date
/// (`2026-11-27`, midnight UTC), or RFC 3339 (`2026-11-27T10:00:00Z`,
/// `2026-11-27T10:00:00.250+01:00`; seconds optional).
pub fn parse_time(text: &str) -> Result<i64, String> {
    let s = text.trim();
    let bad = || {
        format!(
            "invalid time {text:?}: use ms since the epoch, YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS[.fff]]Z"
        )
    };
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| bad());
    }
    let num = |a: usize, b: usize| -> Result<i64, String> {
        s.get(a..b)
            .filter(|d| d.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|d| d.parse().ok())
            .ok_or_else(bad)
    };
    if s.len() < 10 || s.as_bytes()[4] != b'-' || s.as_bytes()[7] != b'-' {
        return Err(bad());
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return Err(bad());
    }
    let day_ms = days_from_civil(y, mo, d) * 86_400_000;
    if s.len() == 10 {
        return Ok(day_ms);
    }
    let rest = &s[10..];
    if !(rest.starts_with('T') || rest.starts_with(' ')) || s.len() < 16 || &s[13..14] != ":" {
        return Err(bad());
    }
    let (h, mi) = (num(11, 13)?, num(14, 16)?);
    let mut at = 16;
    let mut sec = 0;
    let mut ms = 0;
    if s.as_bytes().get(at) == Some(&b':') {
        sec = num(at + 1, at + 3)?;
        at += 3;
        if s.as_bytes().get(at) == Some(&b'.') {
            let digits = s[at + 1..].bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let frac = &s[at + 1..at + 1 + digits.min(3)];
            ms = frac.parse::<i64>().map_err(|_| bad())? * 10_i64.pow(3 - frac.len() as u32);
            at += 1 + digits;
        }
    }
    if h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let offset_ms = match &s[at..] {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) => {
            let (oh, om) = (num(at + 1, at + 3)?, num(at + 4, at + 6)?);
            if &tz[3..4] != ":" || oh > 23 || om > 59 {
                return Err(bad());
            }
            let o = (oh * 60 + om) * 60_000;
            if tz.starts_with('-') { -o } else { o }
        }
        _ => return Err(bad()),
    };
    Ok(day_ms + ((h * 60 + mi) * 60 + sec) * 1000 + ms - offset_ms)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// The partition (UTC hour number since the epoch) of a reading's UTC time.
pub fn hour_of(utc_ms: i64) -> i64 {
    utc_ms.div_euclid(HOUR_MS)
}

/// The partition directory of an hour: `dt=YYYY-MM-DD/hour=HH`.
pub fn partition_path(hour: i64) -> String {
    let (y, m, d) = civil_from_days(hour.div_euclid(24));
    format!("dt={y:04}-{m:02}-{d:02}/hour={:02}", hour.rem_euclid(24))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_accepted_form() {
        assert_eq!(parse_time("1764000000000"), Ok(1_764_000_000_000));
        assert_eq!(parse_time("1970-01-01"), Ok(0));
        assert_eq!(parse_time("2026-11-27T10:00:00Z"), Ok(1_795_773_600_000));
        assert_eq!(parse_time("2026-11-27T10:00Z"), Ok(1_795_773_600_000));
        assert_eq!(
            parse_time("2026-11-27T11:00:00.25+01:00"),
            Ok(1_795_773_600_250)
        );
        assert_eq!(
            parse_time("2024-02-29"),
            Ok(days_from_civil(2024, 2, 29) * 86_400_000)
        );
        for bad in [
            "",
            "2026-13-01",
            "2023-02-29",
            "2026-11-27T25:00Z",
            "yesterday",
            "2026-11-27T10:00",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn calendar_round_trips_and_names_partitions() {
        for z in [-800_000, -1, 0, 1, 19_000, 20_419, 2_000_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), z);
        }
        assert_eq!(
            partition_path(hour_of(1_795_773_600_000)),
            "dt=2026-11-27/hour=10"
        );
        assert_eq!(partition_path(hour_of(-1)), "dt=1969-12-31/hour=23");
    }

    #[test]
    fn selection_bounds_are_half_open() {
        let s = Selection {
            from_ms: Some(10),
            to_ms: Some(20),
            devices: ["a".to_string()].into(),
        };
        assert!(s.time(10) && s.time(19) && !s.time(20) && !s.time(9));
        assert!(s.device("a") && !s.device("b"));
        assert!(Selection::default().device("x") && Selection::default().all_times());
    }
}
