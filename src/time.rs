//! Clock helpers for the command line: `--now`, durations like `1h`, run ids.
//! The only module that reads the system clock besides `main`-level defaults.

/// `--now`: RFC 3339 or Unix seconds.
pub fn parse_now(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i64>() {
        return Ok(n);
    }
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.timestamp())
        .map_err(|_| format!("`--now` must be RFC 3339 or Unix seconds, e.g. `2026-11-20T12:00:00Z` or `1795176000`; got `{s}`"))
}

/// `1h`, `30m`, `90s`, `2d`, or plain seconds.
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
    // Bounded so that arithmetic on times and durations can never overflow.
    n.checked_mul(mult)
        .filter(|secs| *secs <= MAX_DURATION_SECS)
        .ok_or_else(|| format!("`{s}` is longer than a duration msgcapi takes (at most 3650d)"))
}

/// Ten years: far beyond any window or wait that makes sense here.
const MAX_DURATION_SECS: i64 = 3650 * 86_400;

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
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("2d"), Ok(172_800));
        assert!(parse_duration("1w").is_err());
        assert_eq!(parse_duration("3650d"), Ok(315_360_000));
        for huge in ["3651d", "9223372036854775807d", "99999999999999999999"] {
            assert!(parse_duration(huge).is_err(), "{huge}");
        }
    }
}
