//! Module log processing for `GetModuleLogs`, as IoT Edge's `LogsProcessor` does it: parse each
//! line (`<level> timestamp text`, the recommended IoT Edge format; anything else is level 6),
//! filter by time, level and regex, keep the last `tail` lines, and render as text or JSON
//! records, optionally gzipped. Pure.

use std::io::Write;

use base64::Engine;
use jiff::Timestamp;
use regex::Regex;
use serde_json::{Value, json};

/// Level of lines that name none (Informational).
pub const DEFAULT_LEVEL: u8 = 6;

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When it was written: the line's own timestamp, else the one Kubernetes recorded.
    pub timestamp: Option<Timestamp>,
    /// Syslog severity 0–7.
    pub level: u8,
    /// The line as the module wrote it.
    pub raw: String,
    /// The text after the level and timestamp.
    pub text: String,
}

/// Which lines to keep.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Keep the last `tail` lines (after the other filters).
    pub tail: Option<usize>,
    /// Only lines written at or after this time.
    pub since: Option<Timestamp>,
    /// Only lines written at or before this time.
    pub until: Option<Timestamp>,
    /// Only lines of exactly this level.
    pub level: Option<u8>,
    /// Only lines whose text matches.
    pub regex: Option<Regex>,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// The lines as written.
    Text,
    /// `[{iothub, device, id, stream, loglevel, text, timestamp}]`.
    Json,
}

/// Output encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `payload`: a string.
    None,
    /// `payloadBytes`: base64 of the gzipped content.
    Gzip,
}

/// Parses the output of `pods/log?timestamps=true` (`<RFC 3339> <line>` per line).
pub fn parse_kube_log(text: &str) -> Vec<LogLine> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (kube_time, raw) = match line.split_once(' ') {
                Some((t, rest)) => match t.parse::<Timestamp>() {
                    Ok(ts) => (Some(ts), rest),
                    Err(_) => (None, line),
                },
                None => (line.parse::<Timestamp>().ok(), ""),
            };
            parse_line(raw, kube_time)
        })
        .collect()
}

/// Parses `<6> 2019-02-14 16:15:35.243 -08:00 text` (level and timestamp both optional).
pub fn parse_line(raw: &str, fallback: Option<Timestamp>) -> LogLine {
    let mut rest = raw.trim_start();
    let mut level = DEFAULT_LEVEL;
    if let Some(after) = rest.strip_prefix('<')
        && let Some((digit, tail)) = after.split_once('>')
        && digit.len() == 1
        && let Ok(l) = digit.parse::<u8>()
        && l <= 7
    {
        level = l;
        rest = tail.trim_start();
    }
    let mut timestamp = fallback;
    // `yyyy-MM-dd HH:mm:ss.fff zzz` is 30 characters.
    if let Some(candidate) = rest.get(..30)
        && let Some(ts) = parse_edge_time(candidate)
    {
        timestamp = Some(ts);
        rest = rest[30..].trim_start();
    }
    LogLine {
        timestamp,
        level,
        raw: raw.to_string(),
        text: rest.to_string(),
    }
}

/// `2019-02-14 16:15:35.243 -08:00` → a timestamp.
fn parse_edge_time(s: &str) -> Option<Timestamp> {
    let (date_time, offset) = s.rsplit_once(' ')?;
    let iso = format!("{}{offset}", date_time.replacen(' ', "T", 1));
    iso.parse().ok()
}

impl Filter {
    /// The lines that pass, oldest first.
    pub fn apply(&self, lines: Vec<LogLine>) -> Vec<LogLine> {
        let kept: Vec<LogLine> = lines
            .into_iter()
            .filter(|l| match (self.since, l.timestamp) {
                (Some(since), Some(t)) => t >= since,
                _ => true,
            })
            .filter(|l| match (self.until, l.timestamp) {
                (Some(until), Some(t)) => t <= until,
                _ => true,
            })
            .filter(|l| self.level.is_none_or(|lv| l.level == lv))
            .filter(|l| self.regex.as_ref().is_none_or(|r| r.is_match(&l.text)))
            .collect();
        match self.tail {
            Some(n) if kept.len() > n => kept[kept.len() - n..].to_vec(),
            _ => kept,
        }
    }
}

/// Who wrote the lines, for JSON records.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// Hub name.
    pub iothub: &'a str,
    /// Device id.
    pub device: &'a str,
    /// Module name.
    pub module: &'a str,
}

/// Renders lines in `content_type`.
pub fn render(lines: &[LogLine], content_type: ContentType, source: Source<'_>) -> String {
    match content_type {
        ContentType::Text => lines.iter().map(|l| format!("{}\n", l.raw)).collect(),
        ContentType::Json => {
            let records: Vec<Value> = lines
                .iter()
                .map(|l| {
                    json!({
                        "iothub": source.iothub,
                        "device": source.device,
                        "id": source.module,
                        "stream": "stdout",
                        "loglevel": l.level,
                        "text": l.text,
                        "timestamp": l.timestamp.map(|t| t.to_string()),
                    })
                })
                .collect();
            Value::Array(records).to_string()
        }
    }
}

/// One item of the response: `{id, payload}` or `{id, payloadBytes}`.
pub fn item(module: &str, content: &str, encoding: Encoding) -> Value {
    match encoding {
        Encoding::None => json!({"id": module, "payload": content}),
        Encoding::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            // Writing into a Vec cannot fail.
            let _ = gz.write_all(content.as_bytes());
            let bytes = gz.finish().unwrap_or_default();
            json!({
                "id": module,
                "payloadBytes": base64::engine::general_purpose::STANDARD.encode(bytes),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
2026-01-01T00:00:01Z <6> 2026-01-01 00:00:01.000 +00:00 [INF] started
2026-01-01T00:00:02Z <4> 2026-01-01 00:00:02.000 +00:00 [WRN] temperature high
2026-01-01T00:00:03Z plain line without a level
2026-01-01T00:00:04Z <3> 2026-01-01 00:00:04.000 +00:00 [ERR] sensor lost
";

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn lines_are_parsed_in_the_iot_edge_format_or_default_to_level_six() {
        let lines = parse_kube_log(LOG);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1].level, 4);
        assert_eq!(lines[1].text, "[WRN] temperature high");
        assert_eq!(lines[1].timestamp, Some(ts("2026-01-01T00:00:02Z")));
        assert_eq!(lines[2].level, 6);
        assert_eq!(lines[2].text, "plain line without a level");
        assert_eq!(lines[2].timestamp, Some(ts("2026-01-01T00:00:03Z")));
        let offset = parse_line("<7> 2019-02-14 16:15:35.243 -08:00 hi", None);
        assert_eq!(offset.timestamp, Some(ts("2019-02-15T00:15:35.243Z")));
    }

    #[test]
    fn filters_combine_and_tail_applies_last() {
        let lines = parse_kube_log(LOG);
        let f = Filter {
            since: Some(ts("2026-01-01T00:00:02Z")),
            until: Some(ts("2026-01-01T00:00:03Z")),
            ..Filter::default()
        };
        assert_eq!(f.apply(lines.clone()).len(), 2);
        let f = Filter {
            level: Some(3),
            ..Filter::default()
        };
        assert_eq!(f.apply(lines.clone())[0].text, "[ERR] sensor lost");
        let f = Filter {
            regex: Some(Regex::new("temp|sensor").unwrap()),
            tail: Some(1),
            ..Filter::default()
        };
        let kept = f.apply(lines);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].text, "[ERR] sensor lost");
    }

    #[test]
    fn json_records_and_gzip_round_trip() {
        let lines = parse_kube_log(LOG);
        let source = Source {
            iothub: "hub",
            device: "dev1",
            module: "sensor",
        };
        let json: Value = serde_json::from_str(&render(&lines, ContentType::Json, source)).unwrap();
        assert_eq!(json[3]["loglevel"], 3);
        assert_eq!(json[3]["id"], "sensor");
        let text = render(&lines, ContentType::Text, source);
        let item = item("sensor", &text, Encoding::Gzip);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(item["payloadBytes"].as_str().unwrap())
            .unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut out)
            .unwrap();
        assert_eq!(out, text);
    }
}
