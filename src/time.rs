//! Times and durations as the command line writes them (`--now`, `1h`, `30` seconds), parsed
//! once at the edge into bounded values, and the run id. The only module besides `config` that
//! reads the system clock.

use std::time::Duration;

/// Ten years: far beyond any window or wait that makes sense here, and small enough that
/// arithmetic on times and durations can never overflow.
pub const MAX_DURATION_SECS: i64 = 3650 * 86_400;

/// `--now`: RFC 3339 or Unix seconds.
pub fn parse_now(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i64>() {
        // Bounded like durations: `now` minus a window must not overflow.
        if n.unsigned_abs() > (i64::MAX / 4) as u64 {
            return Err(format!("`{s}` is too far from today to be a clock"));
        }
        return Ok(n);
    }
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.timestamp())
        .map_err(|_| format!("expected RFC 3339 or Unix seconds, e.g. `2026-11-20T12:00:00Z` or `1795176000`; got `{s}`"))
}

/// `1h`, `30m`, `90s`, `2d`, or plain seconds; at most ten years.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("expected a duration such as `1h`, `30m` or `0`; got `{s}`"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("unknown unit `{unit}` in `{s}`; use s, m, h or d")),
    };
    n.checked_mul(mult)
        .filter(|secs| *secs <= MAX_DURATION_SECS)
        .ok_or_else(|| format!("`{s}` is longer than a duration msgcapi takes (at most 3650d)"))
}

/// A clap parser for `--max-retry-time` and friends: [`parse_duration`] as a `Duration`.
pub fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map(|secs| Duration::from_secs(secs.unsigned_abs()))
}

/// A clap parser for seconds given as a number, fractions allowed (`--grace 2.5`): finite, not
/// negative, at most ten years. `inf`, `nan` and `1e300` are errors, never a panic.
pub fn seconds_arg(s: &str) -> Result<Duration, String> {
    let x: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected a number of seconds, e.g. `30` or `2.5`; got `{s}`"))?;
    if !x.is_finite() || x < 0.0 {
        return Err(format!(
            "expected a number of seconds, e.g. `30` or `2.5`; got `{s}`"
        ));
    }
    if x > MAX_DURATION_SECS as f64 {
        return Err(format!(
            "`{s}` seconds is longer than msgcapi waits (at most ten years)"
        ));
    }
    Duration::try_from_secs_f64(x).map_err(|e| format!("`{s}`: {e}"))
}

/// [`seconds_arg`], above zero (`--timeout`).
pub fn positive_seconds_arg(s: &str) -> Result<Duration, String> {
    match seconds_arg(s)? {
        d if d.is_zero() => Err(format!(
            "expected a positive number of seconds, e.g. `30`; got `{s}`"
        )),
        d => Ok(d),
    }
}

/// A duration as the flags write it: `30m`, `90s`, `2h`, `1h30m`.
pub fn flag_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, 0) => format!("{m}m"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, 0) => format!("{h}h{m}m"),
        _ => format!("{s}s"),
    }
}

/// The wall clock in Unix seconds (`--now` pins the event window, not this: the ledger's
/// timestamps and cache ages are real time).
pub fn wall_clock() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The clock, in Unix seconds, unless `--now` pinned it.
pub fn now_or_clock(now: Option<i64>) -> i64 {
    now.unwrap_or_else(|| chrono::Utc::now().timestamp())
}

/// A run id: UTC start time and process id, e.g. `20261124T201500Z-4242`.
pub fn run_id() -> String {
    format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        std::process::id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_and_durations() {
        assert_eq!(parse_now("1795176000"), Ok(1_795_176_000));
        assert_eq!(parse_now("2026-11-20T12:00:00Z"), Ok(1_795_176_000));
        assert!(parse_now("yesterday").is_err());
        assert!(parse_now("9223372036854775807").is_err());
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("2d"), Ok(172_800));
        assert!(parse_duration("1w").is_err());
        assert_eq!(parse_duration("3650d"), Ok(315_360_000));
        for huge in ["3651d", "9223372036854775807d", "99999999999999999999"] {
            assert!(parse_duration(huge).is_err(), "{huge}");
        }
    }

    #[test]
    fn seconds_are_finite_bounded_and_never_panic() {
        assert_eq!(seconds_arg("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(seconds_arg("0"), Ok(Duration::ZERO));
        assert_eq!(positive_seconds_arg("30"), Ok(Duration::from_secs(30)));
        for bad in [
            "inf",
            "-inf",
            "nan",
            "NaN",
            "-1",
            "1e300",
            "18446744073709551615",
            "",
            "ten",
        ] {
            assert!(seconds_arg(bad).is_err(), "{bad}");
        }
        assert!(positive_seconds_arg("0").is_err());
        assert!(duration_arg("30m").is_ok_and(|d| d == Duration::from_secs(1800)));
    }
}
