//! The sensor's settings: first from the environment (SimulatedTemperatureSensor's names, read
//! case-insensitively as .NET configuration does), then overridden at run time by the desired
//! properties `SendData` and `SendInterval`.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `MessageCount` | readings to send; negative: forever | 500 |
//! | `SendInterval` | seconds between readings (fractions allowed) | 5 |
//! | `MessageDelay` | the same as a .NET TimeSpan `hh:mm:ss[.fff]` | |
//! | `SendData` | `false` pauses sending | true |
//! | `machineTempMin`, `machineTempMax` | machine temperature range | 21, 100 |
//! | `machinePressureMin`, `machinePressureMax` | pressure range | 1, 10 |
//! | `ambientTemp`, `ambientHumidity` | room means | 21, 25 |
//! | `SimulatorSeed` | seed for reproducible readings | random |

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::simulator::SimulatorParameters;

/// Shortest interval accepted (protects the edge hub from a typo).
const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Longest interval accepted.
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{name}={value:?} is invalid: {reason}")]
pub struct SettingsError {
    /// The variable or desired property.
    pub name: String,
    /// Its value.
    pub value: String,
    /// What is wrong.
    pub reason: String,
}

fn invalid(name: &str, value: &str, reason: &str) -> SettingsError {
    SettingsError {
        name: name.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

/// What the sensor does.
#[derive(Clone, Debug, PartialEq)]
pub struct SensorSettings {
    /// Time between readings.
    pub send_interval: Duration,
    /// How many readings to send; `None`: forever.
    pub message_count: Option<u64>,
    /// Whether readings are sent at all.
    pub send_data: bool,
    /// The simulation.
    pub parameters: SimulatorParameters,
    /// Seed of the simulation; `None` picks one at start.
    pub seed: Option<u64>,
}

impl Default for SensorSettings {
    fn default() -> Self {
        Self {
            send_interval: Duration::from_secs(5),
            message_count: Some(500),
            send_data: true,
            parameters: SimulatorParameters::default(),
            seed: None,
        }
    }
}

impl SensorSettings {
    /// Settings from environment variables (pass `std::env::vars()`).
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, SettingsError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars: BTreeMap<String, (String, String)> = vars
            .into_iter()
            .map(|(k, v)| {
                let k = k.into();
                (k.to_ascii_lowercase(), (k, v.into()))
            })
            .collect();
        let get = |name: &str| {
            vars.get(&name.to_ascii_lowercase())
                .map(|(k, v)| (k.as_str(), v.trim()))
        };
        let mut s = Self::default();
        if let Some((k, v)) = get("MessageCount") {
            let n: i64 = v
                .parse()
                .map_err(|_| invalid(k, v, "expected a whole number"))?;
            s.message_count = u64::try_from(n).ok();
        }
        if let Some((k, v)) = get("MessageDelay") {
            s.send_interval = parse_interval(k, v)?;
        }
        if let Some((k, v)) = get("SendInterval") {
            s.send_interval = parse_interval(k, v)?;
        }
        if let Some((k, v)) = get("SendData") {
            s.send_data = parse_bool(k, v)?;
        }
        let p = &mut s.parameters;
        for (name, slot) in [
            ("machineTempMin", &mut p.machine_temp_min),
            ("machineTempMax", &mut p.machine_temp_max),
            ("machinePressureMin", &mut p.machine_pressure_min),
            ("machinePressureMax", &mut p.machine_pressure_max),
            ("ambientTemp", &mut p.ambient_temp),
        ] {
            if let Some((k, v)) = get(name) {
                *slot = v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| invalid(k, v, "expected a number"))?;
            }
        }
        if let Some((k, v)) = get("ambientHumidity") {
            p.humidity_percent = v
                .parse::<i64>()
                .ok()
                .filter(|h| (0..=100).contains(h))
                .ok_or_else(|| invalid(k, v, "expected a whole number from 0 to 100"))?;
        }
        if p.machine_temp_min >= p.machine_temp_max {
            return Err(invalid(
                "machineTempMin",
                &p.machine_temp_min.to_string(),
                "must be below machineTempMax",
            ));
        }
        if let Some((k, v)) = get("SimulatorSeed") {
            s.seed = Some(
                v.parse()
                    .map_err(|_| invalid(k, v, "expected an unsigned number"))?,
            );
        }
        Ok(s)
    }

    /// Applies `SendData` and `SendInterval` from desired properties (a full set or a patch);
    /// on an error nothing changes.
    pub fn apply_desired(&mut self, desired: &Value) -> Result<bool, SettingsError> {
        let mut next = self.clone();
        if let Some(v) = desired.get("SendData").filter(|v| !v.is_null()) {
            next.send_data = match v {
                Value::Bool(b) => *b,
                Value::String(s) => parse_bool("SendData", s)?,
                other => {
                    return Err(invalid(
                        "SendData",
                        &other.to_string(),
                        "expected true or false",
                    ));
                }
            };
        }
        if let Some(v) = desired.get("SendInterval").filter(|v| !v.is_null()) {
            next.send_interval = match v {
                Value::Number(n) => seconds("SendInterval", &n.to_string(), n.as_f64())?,
                Value::String(s) => parse_interval("SendInterval", s)?,
                other => {
                    return Err(invalid(
                        "SendInterval",
                        &other.to_string(),
                        "expected seconds",
                    ));
                }
            };
        }
        let changed = next != *self;
        *self = next;
        Ok(changed)
    }

    /// The reported properties that say what the sensor does now.
    pub fn reported(&self) -> Value {
        json!({
            "SendData": self.send_data,
            "SendInterval": self.send_interval.as_secs_f64(),
            "MessageCount": self.message_count.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)),
        })
    }
}

fn parse_bool(name: &str, v: &str) -> Result<bool, SettingsError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(invalid(name, v, "expected true or false")),
    }
}

/// Seconds (`5`, `0.5`), milliseconds (`500ms`) or a .NET TimeSpan (`00:00:05`, `00:00:00.250`).
fn parse_interval(name: &str, v: &str) -> Result<Duration, SettingsError> {
    if let Some(ms) = v.strip_suffix("ms") {
        return seconds(name, v, ms.trim().parse::<f64>().ok().map(|m| m / 1000.0));
    }
    if v.contains(':') {
        let parts: Vec<&str> = v.split(':').collect();
        let [h, m, s] = parts.as_slice() else {
            return Err(invalid(name, v, "expected hh:mm:ss"));
        };
        let total = match (h.parse::<f64>(), m.parse::<f64>(), s.parse::<f64>()) {
            (Ok(h), Ok(m), Ok(s)) => Some(h * 3600.0 + m * 60.0 + s),
            _ => None,
        };
        return seconds(name, v, total);
    }
    seconds(
        name,
        v,
        v.strip_suffix('s').unwrap_or(v).trim().parse().ok(),
    )
}

fn seconds(name: &str, v: &str, secs: Option<f64>) -> Result<Duration, SettingsError> {
    let d = secs
        .filter(|s| s.is_finite() && *s >= 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| invalid(name, v, "expected a duration in seconds"))?;
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&d) {
        return Err(invalid(name, v, "must be between 10 ms and 24 h"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_variables_give_the_simulated_temperature_sensors_defaults() {
        let s = SensorSettings::from_vars(Vec::<(String, String)>::new()).unwrap();
        assert_eq!(s, SensorSettings::default());
        assert_eq!(s.send_interval, Duration::from_secs(5));
        assert_eq!(s.message_count, Some(500));
    }

    #[test]
    fn variables_are_read_case_insensitively_in_every_interval_form() {
        let s = SensorSettings::from_vars([
            ("messagecount", "-1"),
            ("MESSAGEDELAY", "00:00:02.5"),
            ("MachineTempMax", "40"),
            ("SimulatorSeed", "42"),
            ("SendData", "False"),
        ])
        .unwrap();
        assert_eq!(s.message_count, None);
        assert_eq!(s.send_interval, Duration::from_millis(2500));
        assert_eq!(s.parameters.machine_temp_max, 40.0);
        assert_eq!(s.seed, Some(42));
        assert!(!s.send_data);
        for (v, ms) in [
            ("0.2", 200),
            ("250ms", 250),
            ("3s", 3000),
            ("00:01:00", 60_000),
        ] {
            let s = SensorSettings::from_vars([("SendInterval", v)]).unwrap();
            assert_eq!(s.send_interval, Duration::from_millis(ms), "{v}");
        }
    }

    #[test]
    fn bad_variables_are_named_with_the_reason() {
        for (k, v, reason) in [
            ("MessageCount", "many", "whole number"),
            ("SendInterval", "0", "between"),
            ("SendInterval", "soon", "duration"),
            ("MessageDelay", "1:2", "hh:mm:ss"),
            ("machineTempMin", "200", "below"),
            ("ambientHumidity", "150", "0 to 100"),
        ] {
            let err = SensorSettings::from_vars([(k, v)]).unwrap_err();
            assert!(err.to_string().contains(reason), "{k}={v}: {err}");
        }
    }

    #[test]
    fn desired_properties_override_and_bad_ones_change_nothing() {
        let mut s = SensorSettings::default();
        assert!(
            s.apply_desired(&json!({"SendInterval": 0.5, "SendData": false, "$version": 3}))
                .unwrap()
        );
        assert_eq!(s.send_interval, Duration::from_millis(500));
        assert!(!s.send_data);
        assert!(!s.apply_desired(&json!({"other": 1})).unwrap());
        let before = s.clone();
        assert!(
            s.apply_desired(&json!({"SendData": true, "SendInterval": -1}))
                .is_err()
        );
        assert_eq!(s, before);
        assert_eq!(
            s.reported(),
            json!({"SendData": false, "SendInterval": 0.5, "MessageCount": 500})
        );
    }
}
