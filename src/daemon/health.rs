//! The loop's health, as plain data with pure rules: what `/healthz`
//! answers and whether the watchdog may be pinged. Times are arguments, so
//! the rules are tested without sleeping.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::config::DaemonSettings;

#[derive(Debug, Clone)]
pub struct Health {
    started: Instant,
    /// The last time the loop did something real: a step began or made
    /// progress, or the loop woke up while waiting for the next cycle.
    last_progress: Instant,
    last_success: Option<Instant>,
    last_success_unix: Option<i64>,
    consecutive_failures: u32,
    cycles: u64,
    last_error: Option<String>,
    last_reload_error: Option<String>,
    phase: &'static str,
    interval: Duration,
    unhealthy_after_cycles: u32,
}

/// The body of `/healthz`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HealthReport {
    pub healthy: bool,
    /// `running` (a cycle), `waiting` (for the next one) or `starting`.
    pub phase: &'static str,
    pub cycles: u64,
    pub consecutive_failures: u32,
    pub last_success_unix: Option<i64>,
    pub seconds_since_progress: u64,
    pub last_error: Option<String>,
    pub last_reload_error: Option<String>,
    /// Why it is unhealthy, in words.
    pub reason: Option<String>,
}

impl Health {
    pub fn new(now: Instant, settings: &DaemonSettings) -> Health {
        Health {
            started: now,
            last_progress: now,
            last_success: None,
            last_success_unix: None,
            consecutive_failures: 0,
            cycles: 0,
            last_error: None,
            last_reload_error: None,
            phase: "starting",
            interval: settings.interval,
            unhealthy_after_cycles: settings.unhealthy_after_cycles,
        }
    }

    pub fn reconfigure(&mut self, settings: &DaemonSettings) {
        self.interval = settings.interval;
        self.unhealthy_after_cycles = settings.unhealthy_after_cycles;
        self.last_reload_error = None;
    }

    pub fn progress(&mut self, now: Instant) {
        self.last_progress = self.last_progress.max(now);
    }

    pub fn cycle_started(&mut self, now: Instant) {
        self.phase = "running";
        self.progress(now);
    }

    /// The loop woke up between cycles: waiting is healthy progress.
    pub fn waiting(&mut self, now: Instant) {
        self.phase = "waiting";
        self.progress(now);
    }

    pub fn cycle_succeeded(&mut self, now: Instant, unix_now: i64) {
        self.cycles += 1;
        self.consecutive_failures = 0;
        self.last_success = Some(now);
        self.last_success_unix = Some(unix_now);
        self.last_error = None;
        self.progress(now);
    }

    pub fn cycle_failed(&mut self, now: Instant, error: String) {
        self.cycles += 1;
        self.consecutive_failures += 1;
        self.last_error = Some(error);
        self.progress(now);
    }

    pub fn reload_refused(&mut self, error: String) {
        self.last_reload_error = Some(error);
    }

    pub fn since_progress(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_progress)
    }

    /// Healthy while some cycle succeeded within the last
    /// `unhealthy_after_cycles` intervals (counting from the start before the
    /// first success). Faults that retries ride out keep it healthy;
    /// cycles that keep failing, or one that hangs, do not.
    pub fn report(&self, now: Instant) -> HealthReport {
        let allowed = self.interval * self.unhealthy_after_cycles;
        let since = now.saturating_duration_since(self.last_success.unwrap_or(self.started));
        let healthy = since <= allowed;
        let reason = (!healthy).then(|| {
            format!(
                "no successful cycle for {}s (allowed: {} intervals of {}s){}",
                since.as_secs(),
                self.unhealthy_after_cycles,
                self.interval.as_secs(),
                self.last_error
                    .as_ref()
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            )
        });
        HealthReport {
            healthy,
            phase: self.phase,
            cycles: self.cycles,
            consecutive_failures: self.consecutive_failures,
            last_success_unix: self.last_success_unix,
            seconds_since_progress: self.since_progress(now).as_secs(),
            last_error: self.last_error.clone(),
            last_reload_error: self.last_reload_error.clone(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DaemonSettings {
        DaemonSettings {
            interval: Duration::from_secs(60),
            unhealthy_after_cycles: 3,
        }
    }

    #[test]
    fn healthy_at_start_until_the_allowed_intervals_pass_without_success() {
        let t0 = Instant::now();
        let mut health = Health::new(t0, &settings());
        assert!(health.report(t0 + Duration::from_secs(180)).healthy);
        health.cycle_failed(t0 + Duration::from_secs(10), "Hydra down".into());
        let report = health.report(t0 + Duration::from_secs(181));
        assert!(!report.healthy);
        assert!(report.reason.unwrap().contains("last error: Hydra down"));
    }

    #[test]
    fn a_success_resets_the_clock_and_failures_after_it_count_from_it() {
        let t0 = Instant::now();
        let mut health = Health::new(t0, &settings());
        health.cycle_succeeded(t0 + Duration::from_secs(100), 1_000);
        health.cycle_failed(t0 + Duration::from_secs(160), "x".into());
        health.cycle_failed(t0 + Duration::from_secs(220), "x".into());
        let report = health.report(t0 + Duration::from_secs(280));
        assert!(report.healthy);
        assert_eq!(report.consecutive_failures, 2);
        assert_eq!(report.last_success_unix, Some(1_000));
        assert!(!health.report(t0 + Duration::from_secs(281)).healthy);
    }

    #[test]
    fn progress_never_goes_backwards_and_is_measured_from_the_newest_beat() {
        let t0 = Instant::now();
        let mut health = Health::new(t0, &settings());
        health.progress(t0 + Duration::from_secs(30));
        health.progress(t0 + Duration::from_secs(10));
        assert_eq!(
            health.since_progress(t0 + Duration::from_secs(45)),
            Duration::from_secs(15)
        );
    }

    #[test]
    fn a_reload_changes_the_allowance() {
        let t0 = Instant::now();
        let mut health = Health::new(t0, &settings());
        health.reload_refused("bad".into());
        health.reconfigure(&DaemonSettings {
            interval: Duration::from_secs(600),
            unhealthy_after_cycles: 1,
        });
        let report = health.report(t0 + Duration::from_secs(500));
        assert!(report.healthy);
        assert_eq!(report.last_reload_error, None);
    }
}
