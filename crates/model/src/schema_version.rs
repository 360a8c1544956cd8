//! `schemaVersion` values, parsed the way IoT Edge parses them (`System.Version`), and the rules
//! for which versions the agent and the hub accept (reference `iotedge-runtime.md` §1.2 and §1.9).
//!
//! - `$edgeAgent`: major 1 and at most `1.1.0` by `System.Version` ordering, where a missing
//!   component sorts below 0. Accepted: `1.0`, `1.0.x`, `1.1`, `1.1.0`; rejected: `1.1.1`,
//!   `1.1.0.0`, `1.2`, `2.0`.
//! - `$edgeHub`: major 1, minor 0 to 3 (the minor picks the model; build and revision are ignored).

use std::fmt;
use std::str::FromStr;

/// The `$edgeAgent` versions, for messages.
pub(crate) const AGENT_SUPPORTED: &str = "1.0 and 1.1 (\"1.0\", \"1.0.x\", \"1.1\", \"1.1.0\")";
/// The `$edgeHub` versions, for messages.
pub(crate) const HUB_SUPPORTED: &str = "1.0, 1.1, 1.2 and 1.3";

/// A version of two to four dot-separated numbers, like .NET's `System.Version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SchemaVersion {
    /// The first number.
    pub major: u32,
    /// The second number.
    pub minor: u32,
    /// The optional third number.
    pub build: Option<u32>,
    /// The optional fourth number (only with a build number).
    pub revision: Option<u32>,
}

/// A `schemaVersion` that is not two to four non-negative numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a version of the form major.minor[.build[.revision]]")]
pub struct SchemaVersionParseError;

impl SchemaVersion {
    /// A two-part version `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self {
            major,
            minor,
            build: None,
            revision: None,
        }
    }

    /// Whether the `$edgeAgent` accepts this version.
    pub fn is_supported_by_agent(&self) -> bool {
        self.major == 1
            && match self.minor {
                0 => true,
                1 => match (self.build, self.revision) {
                    (None, _) | (Some(0), None) => true,
                    (Some(_), _) => false,
                },
                _ => false,
            }
    }

    /// Whether the `$edgeHub` accepts this version.
    pub fn is_supported_by_hub(&self) -> bool {
        self.major == 1 && self.minor <= 3
    }

    /// Whether this is at least `major.minor` (build and revision ignored).
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl FromStr for SchemaVersion {
    type Err = SchemaVersionParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // System.Version components are Int32s, so they stop at i32::MAX.
        let max = u32::try_from(i32::MAX).map_err(|_| SchemaVersionParseError)?;
        let mut parts = Vec::with_capacity(4);
        for part in s.split('.') {
            if part.is_empty() || part.len() > 10 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(SchemaVersionParseError);
            }
            let n: u32 = part.parse().map_err(|_| SchemaVersionParseError)?;
            if n > max {
                return Err(SchemaVersionParseError);
            }
            parts.push(n);
        }
        match parts[..] {
            [major, minor] => Ok(Self::new(major, minor)),
            [major, minor, build] => Ok(Self {
                build: Some(build),
                ..Self::new(major, minor)
            }),
            [major, minor, build, revision] => Ok(Self {
                build: Some(build),
                revision: Some(revision),
                ..Self::new(major, minor)
            }),
            _ => Err(SchemaVersionParseError),
        }
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if let Some(build) = self.build {
            write!(f, ".{build}")?;
            if let Some(revision) = self.revision {
                write!(f, ".{revision}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> SchemaVersion {
        s.parse().unwrap()
    }

    #[test]
    fn agent_accepts_1_0_family_and_1_1_and_1_1_0_only() {
        for ok in ["1.0", "1.0.0", "1.0.7", "1.0.9.9", "1.1", "1.1.0"] {
            assert!(v(ok).is_supported_by_agent(), "{ok}");
        }
        for bad in ["1.1.1", "1.1.0.0", "1.2", "2.0", "0.9", "1.10"] {
            assert!(!v(bad).is_supported_by_agent(), "{bad}");
        }
    }

    #[test]
    fn hub_accepts_minor_0_to_3_with_any_build() {
        for ok in ["1.0", "1.1", "1.1.0", "1.2", "1.3", "1.3.7"] {
            assert!(v(ok).is_supported_by_hub(), "{ok}");
        }
        for bad in ["1.4", "2.0", "0.1"] {
            assert!(!v(bad).is_supported_by_hub(), "{bad}");
        }
    }

    #[test]
    fn parsing_needs_two_to_four_plain_numbers() {
        for bad in [
            "",
            "1",
            "1.",
            ".1",
            "1..0",
            "1.0.0.0.0",
            "v1.0",
            "1.0-beta",
            " 1.0",
            "1.x",
            "+1.0",
            "2147483648.0",
            "99999999999.0",
        ] {
            assert!(bad.parse::<SchemaVersion>().is_err(), "{bad:?}");
        }
        assert_eq!(v("2147483647.0").major, 2_147_483_647);
    }

    #[test]
    fn display_prints_the_components_given() {
        for s in ["1.0", "1.1.0", "1.0.3.4"] {
            assert_eq!(v(s).to_string(), s);
        }
        assert_eq!(v("01.1").to_string(), "1.1");
    }

    #[test]
    fn at_least_compares_major_and_minor() {
        assert!(v("1.2").at_least(1, 2));
        assert!(v("1.3").at_least(1, 2));
        assert!(!v("1.1.9").at_least(1, 2));
    }
}
