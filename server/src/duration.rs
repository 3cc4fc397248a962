//! Parsing of human durations used by the CERTCTL_* settings (`30s`, `5m`, `2160h`, `90d`).

use std::time::Duration;

/// Parses `<number><unit>` where unit is `ms`, `s`, `m`, `h` or `d`; a bare number means seconds.
///
/// # Errors
/// Returns a message describing the accepted forms when the text does not parse.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().map_err(|_| format!("expected a duration like 30s, 5m, 2h or 90d, got {text:?}"))?;
    let seconds_per_unit = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "ms" => return Ok(Duration::from_millis(value)),
        other => return Err(format!("unknown duration unit {other:?} in {text:?}: use ms, s, m, h or d")),
    };
    value.checked_mul(seconds_per_unit).map(Duration::from_secs).ok_or_else(|| format!("duration {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2160h"), Ok(Duration::from_secs(2160 * 3600)));
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86_400)));
    }

    #[test]
    fn rejects_garbage_with_a_hint() {
        assert!(parse_duration("").unwrap_err().contains("30s"));
        assert!(parse_duration("5 weeks").unwrap_err().contains("unit"));
        assert!(parse_duration("-1s").is_err());
    }
}
