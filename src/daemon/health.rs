//! The loop's health, as plain data with pure rules: what `/healthz`
//! answers and whether the watchdog may be pinged. Times are arguments, so
//! the rules are tested without sleeping.
//!
//! Two kinds of trouble are told apart: a failed cycle (`last_error`: a
//! network error, a 5xx, a rate limit, a token GitHub refuses; the next
//! cycle tries again, and cycles that keep failing turn it unhealthy), and
//! actions set aside for good (`set_aside`: GitHub refused one request as
//! invalid or its conversation is locked, or the nixpkgs editor cannot make
//! the edit; never sent again for that failure, to be done by hand, as the
//! digest lists them). The second kind never makes the service unhealthy.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::config::DaemonSettings;
use crate::policy::Assessment;

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
    set_aside: Vec<SetAside>,
    set_aside_as_of: Option<i64>,
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
    /// Actions refused for good and set aside, to be done by hand (see the
    /// module documentation): as of the last act step, newest first.
    pub set_aside: Vec<SetAside>,
    /// When (Unix seconds, the cycle's clock) the act step that listed
    /// `set_aside` ran; `null` before the first. An act step that could not
    /// read the history keeps the older list, and this says how old it is.
    pub set_aside_as_of: Option<i64>,
    /// Why it is unhealthy, in words.
    pub reason: Option<String>,
}

/// An action refused for good in the package's current failure.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SetAside {
    pub attr: String,
    /// `mark_broken`, `retire`, `remind`, ...
    pub kind: String,
    pub step: Option<String>,
    /// When it was settled (Unix seconds).
    pub at: i64,
    /// GitHub's or the nixpkgs editor's reason, in words.
    pub reason: String,
    pub issue: Option<u64>,
    pub pr: Option<u64>,
}

/// The set-aside actions of an assessment: each package's newest refusal
/// in its current failure, newest first.
pub fn set_aside(assessment: &Assessment) -> Vec<SetAside> {
    let mut all: Vec<SetAside> = assessment
        .attrs
        .values()
        .filter_map(|a| a.refused.first().map(|r| (a, r)))
        .map(|(a, r)| SetAside {
            attr: a.attr.clone(),
            kind: r.kind.as_str().to_owned(),
            step: r.step.clone(),
            at: r.done_at.unwrap_or(r.planned_at),
            reason: r.refused.clone().unwrap_or_default(),
            issue: r.issue,
            pr: r.pr,
        })
        .collect();
    all.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.attr.cmp(&b.attr)));
    all
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
            set_aside: Vec::new(),
            set_aside_as_of: None,
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

    /// What the act step of the cycle at `as_of` (Unix seconds) found set aside.
    pub fn set_aside(&mut self, set_aside: Vec<SetAside>, as_of: i64) {
        self.set_aside = set_aside;
        self.set_aside_as_of = Some(as_of);
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
            set_aside: self.set_aside.clone(),
            set_aside_as_of: self.set_aside_as_of,
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
    fn set_aside_actions_are_listed_apart_and_never_make_it_unhealthy() {
        let t0 = Instant::now();
        let mut health = Health::new(t0, &settings());
        let refused = SetAside {
            attr: "hello".into(),
            kind: "mark_broken".into(),
            step: None,
            at: 1_000,
            reason: "GitHub refused it as invalid (422)".into(),
            issue: Some(3),
            pr: None,
        };
        health.cycle_succeeded(t0, 1_000);
        health.set_aside(vec![refused.clone()], 1_000);
        let report = health.report(t0 + Duration::from_secs(10));
        assert!(report.healthy);
        assert_eq!(report.last_error, None);
        assert_eq!(report.set_aside, vec![refused]);
        assert_eq!(report.set_aside_as_of, Some(1_000));
    }

    #[test]
    fn a_set_aside_list_kept_through_a_failed_cycle_says_which_cycle_listed_it() {
        let t0 = Instant::now();
        let mut health = Health::new(t0, &settings());
        assert_eq!(
            health.report(t0).set_aside_as_of,
            None,
            "nothing listed yet"
        );
        health.cycle_succeeded(t0, 1_000);
        health.set_aside(Vec::new(), 1_000);
        health.cycle_failed(
            t0 + Duration::from_secs(900),
            "act: reading the history: database is locked".into(),
        );
        let report = health.report(t0 + Duration::from_secs(901));
        assert_eq!(
            (report.set_aside_as_of, report.last_error.is_some()),
            (Some(1_000), true),
            "the older list, with its age and the error that kept it: {report:?}"
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
