//! `since`/`until` of `GetModuleLogs`: a Unix timestamp, an RFC 3339 time, or a duration back
//! from now (`90m`, `1d`, `2h30m`, `1 day`, `2 days 3 hours 2 minutes`), as IoT Edge accepts them.

use jiff::{SignedDuration, Timestamp};

/// Parses `value` relative to `now`.
pub fn parse(value: &str, now: Timestamp) -> Result<Timestamp, String> {
    let v = value.trim();
    if v.is_empty() {
        return Err("empty time".into());
    }
    if let Ok(secs) = v.parse::<i64>() {
        return Timestamp::from_second(secs).map_err(|e| format!("{v:?}: {e}"));
    }
    if let Ok(t) = v.parse::<Timestamp>() {
        return Ok(t);
    }
    let ago = duration(v).ok_or_else(|| {
        format!(
            "{v:?} is neither a Unix time, an RFC 3339 time nor a duration such as 90m, 1d or \"2 hours\""
        )
    })?;
    now.checked_sub(ago).map_err(|e| format!("{v:?}: {e}"))
}

/// A duration such as `90m`, `1d`, `2h30m`, `1 day`, `2 days 3 hours 2 minutes`.
fn duration(v: &str) -> Option<SignedDuration> {
    let compact: String = v.chars().filter(|c| !c.is_whitespace()).collect();
    let mut total = 0i64;
    let mut digits = String::new();
    let mut unit = String::new();
    let mut parts = Vec::new();
    for c in compact.chars() {
        if c.is_ascii_digit() {
            if !unit.is_empty() {
                parts.push((std::mem::take(&mut digits), std::mem::take(&mut unit)));
            }
            digits.push(c);
        } else if c.is_ascii_alphabetic() {
            unit.push(c.to_ascii_lowercase());
        } else {
            return None;
        }
    }
    parts.push((digits, unit));
    for (n, unit) in parts {
        let n: i64 = n.parse().ok()?;
        let secs = match unit.as_str() {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 604_800,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(secs)?)?;
    }
    Some(SignedDuration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepted_form_gives_the_same_instant() {
        let now: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let day_before: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        for v in [
            "1d",
            "1 day",
            "24h",
            "1440m",
            "23h60m",
            "2026-01-01T00:00:00Z",
            "1767225600",
        ] {
            assert_eq!(parse(v, now).unwrap(), day_before, "{v}");
        }
        assert_eq!(
            parse("2 days 3 hours 2 minutes", now).unwrap(),
            now - SignedDuration::from_secs(2 * 86_400 + 3 * 3600 + 120)
        );
    }

    #[test]
    fn nonsense_is_refused_with_the_accepted_forms() {
        for v in ["", "soon", "5 fortnights", "-3h", "1.5h"] {
            let err = parse(v, Timestamp::now()).unwrap_err();
            assert!(!err.is_empty(), "{v}");
        }
    }
}
