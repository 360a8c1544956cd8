//! Restart decisions: `restartPolicy` and kubelet's CrashLoopBackOff schedule (the first restart
//! is immediate, then the delay starts at `initial` and doubles up to `max`; a container that ran
//! for at least twice `max` starts over).

use std::time::Duration;

/// A pod's `restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restart on any exit.
    Always,
    /// Restart on a non-zero exit.
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// From the spec string; unknown or missing values mean `Always` (the API default).
    pub fn from_spec(value: Option<&str>) -> Self {
        match value {
            Some("OnFailure") => Self::OnFailure,
            Some("Never") => Self::Never,
            _ => Self::Always,
        }
    }

    /// Whether a container that exited with `exit_code` is started again.
    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            Self::Always => true,
            Self::OnFailure => exit_code != 0,
            Self::Never => false,
        }
    }
}

/// Back-off settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffSettings {
    /// The first non-zero delay (kubelet: 10 s).
    pub initial: Duration,
    /// The longest delay (kubelet: 5 min).
    pub max: Duration,
}

impl Default for BackoffSettings {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
        }
    }
}

/// One container's back-off state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    settings: BackoffSettings,
    current: Option<Duration>,
}

impl Backoff {
    /// A fresh back-off.
    pub fn new(settings: BackoffSettings) -> Self {
        Self {
            settings,
            current: None,
        }
    }

    /// The delay before restarting a container that exited after running for `ran_for`.
    pub fn next_delay(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.settings.max.saturating_mul(2) {
            self.current = None;
        }
        let delay = self.current.unwrap_or(Duration::ZERO);
        self.current = Some(match self.current {
            None => self.settings.initial,
            Some(d) => d.saturating_mul(2).min(self.settings.max),
        });
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_restart_is_immediate_then_delays_double_up_to_the_cap() {
        let mut b = Backoff::new(BackoffSettings::default());
        let short = Duration::from_secs(1);
        let delays: Vec<u64> = (0..8).map(|_| b.next_delay(short).as_secs()).collect();
        assert_eq!(delays, [0, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn a_long_run_resets_the_backoff() {
        let mut b = Backoff::new(BackoffSettings::default());
        b.next_delay(Duration::ZERO);
        b.next_delay(Duration::ZERO);
        assert_eq!(b.next_delay(Duration::from_secs(600)), Duration::ZERO);
        assert_eq!(b.next_delay(Duration::ZERO), Duration::from_secs(10));
    }

    #[test]
    fn restart_policies_follow_the_exit_code() {
        assert!(RestartPolicy::Always.restarts(0));
        assert!(!RestartPolicy::OnFailure.restarts(0));
        assert!(RestartPolicy::OnFailure.restarts(3));
        assert!(!RestartPolicy::Never.restarts(3));
        assert_eq!(RestartPolicy::from_spec(None), RestartPolicy::Always);
        assert_eq!(
            RestartPolicy::from_spec(Some("Never")),
            RestartPolicy::Never
        );
    }
}
