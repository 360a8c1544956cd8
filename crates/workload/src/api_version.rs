//! The `api-version` query parameter every workload route requires.
//!
//! The daemon knows 2018-06-28 … 2022-08-03 and every route accepts ≥ 2018-06-28. SDKs send
//! `IOTEDGE_APIVERSION` (Python) or a fixed 2018-06-28 (Node); we accept any well-formed date from
//! the minimum on, so a newer SDK does not break on a version we have not heard of.

use std::fmt;
use std::str::FromStr;

/// The oldest version the workload API accepts.
pub const MIN_API_VERSION: ApiVersion = ApiVersion {
    year: 2018,
    month: 6,
    day: 28,
};

/// A workload API version, a `YYYY-MM-DD` date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion {
    year: u16,
    month: u8,
    day: u8,
}

/// Why an `api-version` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiVersionError {
    /// The parameter is absent.
    #[error("the api-version query parameter is required (for example api-version=2019-01-30)")]
    Missing,
    /// Not a `YYYY-MM-DD` date.
    #[error("api-version {0:?} is not a YYYY-MM-DD date")]
    Malformed(String),
    /// Older than [`MIN_API_VERSION`].
    #[error("api-version {0:?} is older than the oldest supported version 2018-06-28")]
    TooOld(String),
}

impl FromStr for ApiVersion {
    type Err = ApiVersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || ApiVersionError::Malformed(s.to_owned());
        let mut parts = s.split('-');
        let (Some(y), Some(m), Some(d), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(malformed());
        }
        let year: u16 = y.parse().map_err(|_| malformed())?;
        let month: u8 = m.parse().map_err(|_| malformed())?;
        let day: u8 = d.parse().map_err(|_| malformed())?;
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return Err(malformed());
        }
        Ok(Self { year, month, day })
    }
}

impl ApiVersion {
    /// Parses and checks a query value: present, well-formed, not older than the minimum.
    pub fn check(value: Option<&str>) -> Result<Self, ApiVersionError> {
        let raw = value.ok_or(ApiVersionError::Missing)?;
        let version: Self = raw.parse()?;
        if version < MIN_API_VERSION {
            return Err(ApiVersionError::TooOld(raw.to_owned()));
        }
        Ok(version)
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

pub(crate) use ApiVersionError as VersionError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_version_the_daemon_knows_is_accepted() {
        for v in [
            "2018-06-28",
            "2019-01-30",
            "2019-10-22",
            "2019-11-05",
            "2020-07-07",
            "2021-12-07",
            "2022-08-03",
        ] {
            assert_eq!(ApiVersion::check(Some(v)).unwrap().to_string(), v);
        }
    }

    #[test]
    fn newer_unknown_versions_are_accepted() {
        assert!(ApiVersion::check(Some("2031-01-01")).is_ok());
    }

    #[test]
    fn missing_old_and_malformed_versions_are_refused() {
        assert_eq!(ApiVersion::check(None), Err(ApiVersionError::Missing));
        assert!(matches!(
            ApiVersion::check(Some("2018-06-27")),
            Err(ApiVersionError::TooOld(_))
        ));
        for bad in [
            "",
            "2019",
            "2019-1-30",
            "2019-13-01",
            "20x9-01-30",
            "2019-01-30-1",
        ] {
            assert!(
                matches!(
                    ApiVersion::check(Some(bad)),
                    Err(ApiVersionError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }
}
