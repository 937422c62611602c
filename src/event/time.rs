//! PURE: `event_time` text → Unix seconds, by the mapping's format and time zone.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone};

use crate::mapping::TimeFormat;

/// Parses event_time text to Unix seconds. Whatever `format` says, the forms Parquet timestamp and
/// date columns are rendered in (RFC 3339 with `Z`, naive `YYYY-MM-DDTHH:MM:SS`, `YYYY-MM-DD`) are
/// accepted too, so typed columns work with any mapping.
pub fn parse_time(text: &str, format: &TimeFormat, tz: &chrono_tz::Tz) -> Result<i64, String> {
    let t = text.trim();
    let primary = match format {
        TimeFormat::Unix => parse_unix(t, 1),
        TimeFormat::UnixMs => parse_unix(t, 1000),
        TimeFormat::Rfc3339 => parse_iso(t, tz),
        TimeFormat::Pattern(p) => parse_pattern(t, p, tz),
    };
    if let Some(s) = primary {
        return Ok(s);
    }
    if !matches!(format, TimeFormat::Rfc3339)
        && let Some(s) = parse_iso(t, tz)
    {
        return Ok(s);
    }
    let expected = match format {
        TimeFormat::Unix => "Unix seconds, e.g. `1795176000`".to_string(),
        TimeFormat::UnixMs => "Unix milliseconds, e.g. `1795176000000`".to_string(),
        TimeFormat::Rfc3339 => "RFC 3339, e.g. `2026-11-20T10:00:00Z`".to_string(),
        TimeFormat::Pattern(p) => format!("the pattern `{p}`"),
    };
    Err(format!("event_time `{t}` does not match {expected}"))
}

fn parse_unix(t: &str, per_sec: i64) -> Option<i64> {
    if let Ok(n) = t.parse::<i64>() {
        // Exports often hold milli- or microseconds under a "unix" column: a value beyond the
        // year 5000 in seconds cannot be meant as seconds, so read it by its magnitude.
        let per_sec = match n.unsigned_abs() {
            _ if per_sec != 1 => per_sec,
            m if m >= 100_000_000_000_000 => 1_000_000,
            m if m >= 100_000_000_000 => 1_000,
            _ => 1,
        };
        return Some(n.div_euclid(per_sec));
    }
    let f = super::number::parse_number(t)?;
    Some((f / per_sec as f64).floor() as i64)
}

fn local_to_unix(naive: NaiveDateTime, tz: &chrono_tz::Tz) -> Option<i64> {
    // Ambiguous wall times (DST fold) resolve to the earlier instant; skipped ones fail.
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|d| d.timestamp())
}

fn parse_iso(t: &str, tz: &chrono_tz::Tz) -> Option<i64> {
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.timestamp());
    }
    let spaced = t.replacen(' ', "T", 1);
    if let Ok(d) = DateTime::parse_from_rfc3339(&spaced) {
        return Some(d.timestamp());
    }
    // Offsets without a colon (`+0000`, `-0300`), as many databases print them.
    if let Ok(d) = DateTime::parse_from_str(&spaced, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(d.timestamp());
    }
    // A trailing zone name for UTC (`2026-11-19 10:15:00 UTC`).
    for suffix in [" UTC", " GMT", "UTC", " Z"] {
        if let Some(rest) = t.strip_suffix(suffix) {
            return parse_iso(rest.trim_end(), &chrono_tz::UTC);
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(&spaced, fmt) {
            return local_to_unix(n, tz);
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return local_to_unix(d.and_hms_opt(0, 0, 0)?, tz);
    }
    None
}

fn parse_pattern(t: &str, p: &str, tz: &chrono_tz::Tz) -> Option<i64> {
    if p.contains("%z") || p.contains("%:z") || p.contains("%#z") {
        return DateTime::parse_from_str(t, p).ok().map(|d| d.timestamp());
    }
    if let Ok(n) = NaiveDateTime::parse_from_str(t, p) {
        return local_to_unix(n, tz);
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, p) {
        return local_to_unix(d.and_hms_opt(0, 0, 0)?, tz);
    }
    None
}
