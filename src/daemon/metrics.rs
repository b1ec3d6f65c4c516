//! Prometheus metrics: the recorder, the names and their help texts.
//!
//! Owns: installing the global `metrics` recorder (once per process),
//! describing every metric the program records, and the gauges the loop
//! sets after each cycle. Counters themselves are recorded where things
//! happen (`hydra` client, `ingest`, `store`'s plan reads) with the
//! `metrics` macros; without a recorder (tests, one-shot commands) those
//! macros cost nothing.
//!
//! Must never: put unbounded values (job names, URLs, error texts) in
//! labels; labels are jobsets, status classes and small fixed enums.

use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::store::JobsetSummary;

/// Names of metrics recorded today.
pub const EVALS_INGESTED: &str = "hydra_sentinel_evals_ingested_total";
pub const BUILDS_WRITTEN: &str = "hydra_sentinel_builds_written_total";
pub const BUILDS_REFUSED: &str = "hydra_sentinel_builds_refused_total";
pub const BUILDS_RECHECKED: &str = "hydra_sentinel_builds_rechecked_total";
pub const BUILDS_CHANGED: &str = "hydra_sentinel_builds_changed_total";
pub const HYDRA_REQUESTS: &str = "hydra_sentinel_hydra_requests_total";
/// Requests taken from the passes' budgets (`ingest.requests_per_pass`).
pub const HYDRA_REQUESTS_BUDGETED: &str = "hydra_sentinel_hydra_requests_budgeted_total";
/// Builds of an eval still to be learned (0 once none is pending).
pub const EVAL_BUILDS_MISSING: &str = "hydra_sentinel_eval_builds_missing";
pub const HYDRA_ERRORS: &str = "hydra_sentinel_hydra_errors_total";
pub const JOBS: &str = "hydra_sentinel_jobs";
pub const EVALS_STORED: &str = "hydra_sentinel_evals_stored";
pub const CYCLES: &str = "hydra_sentinel_cycles_total";
pub const LAST_SUCCESS: &str = "hydra_sentinel_last_success_timestamp_seconds";
pub const LAST_CYCLE_DURATION: &str = "hydra_sentinel_last_cycle_duration_seconds";
pub const RELOADS: &str = "hydra_sentinel_reloads_total";
pub const HEALTHY: &str = "hydra_sentinel_healthy";
pub const SINCE_PROGRESS: &str = "hydra_sentinel_seconds_since_progress";

/// HTML reports written after a cycle, by `outcome` (ok, failed).
pub const REPORTS: &str = "hydra_sentinel_reports_total";
/// Reads of a plan's facts from the store, by `for` (plan, report): their
/// count is how often a cycle reads the history. Recorded by `store`.
pub const PLAN_READS: &str = "hydra_sentinel_plan_read_seconds";

/// Names reserved for the steps still to come (plan/act, GitHub): described
/// now so that dashboards and alerts can be written against them. They
/// appear in `/metrics` once first recorded.
/// Labels: `kind` (notify, remind, mark_broken, close_pr, retire, escalate,
/// hold, digest) and `outcome` (done, dry_run, skipped, failed).
pub const ACTIONS: &str = "hydra_sentinel_actions_total";
/// Labels `endpoint` (a small fixed set, like the Hydra one) and `answer`
/// (2xx, not_modified, 4xx, 5xx, network). Recorded by `forge`.
pub const GITHUB_REQUESTS: &str = "hydra_sentinel_github_requests_total";
/// Label `kind` (network, 4xx, 5xx, rate_limited). Recorded by `forge`.
pub const GITHUB_ERRORS: &str = "hydra_sentinel_github_errors_total";

/// Install the global recorder and return the handle `/metrics` renders.
pub fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    PrometheusBuilder::new().install_recorder()
}

/// Help texts for every metric (idempotent).
pub fn describe() {
    describe_counter!(
        REPORTS,
        "HTML reports written after a cycle ([report] html_dir), by outcome: ok or failed."
    );
    describe_histogram!(
        PLAN_READS,
        Unit::Seconds,
        "Reads of the history a plan needs, by what for: plan (once a cycle) or report (the HTML report)."
    );
    describe_counter!(EVALS_INGESTED, "Evals written to the database, per jobset.");
    describe_counter!(
        BUILDS_WRITTEN,
        "Builds written (new or changed), per jobset."
    );
    describe_counter!(
        BUILDS_REFUSED,
        "Builds refused (implausible job names, foreign jobsets), per jobset."
    );
    describe_counter!(
        BUILDS_RECHECKED,
        "Unsettled or failed builds asked about again, per jobset."
    );
    describe_counter!(
        BUILDS_CHANGED,
        "Rechecked builds whose status had changed, per jobset."
    );
    describe_counter!(
        HYDRA_REQUESTS_BUDGETED,
        "Hydra requests taken from the passes' request budgets, per jobset."
    );
    describe_gauge!(
        EVAL_BUILDS_MISSING,
        "Builds of the eval being learned over several passes that are still to be asked about, per jobset (0: none pending)."
    );
    describe_counter!(
        HYDRA_REQUESTS,
        "HTTP requests sent to Hydra, by endpoint (retries included)."
    );
    describe_counter!(
        HYDRA_ERRORS,
        "Failed Hydra requests by kind: network, 4xx, 5xx, body (truncated or malformed)."
    );
    describe_gauge!(
        JOBS,
        "Jobs in the newest stored eval, per jobset and status class."
    );
    describe_gauge!(EVALS_STORED, "Evals stored, per jobset.");
    describe_counter!(
        CYCLES,
        "Cycles of the service loop, by outcome (ok, failed)."
    );
    describe_gauge!(
        LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of the last successful cycle."
    );
    describe_gauge!(
        LAST_CYCLE_DURATION,
        Unit::Seconds,
        "How long the last cycle took."
    );
    describe_counter!(
        RELOADS,
        "Configuration reloads (SIGHUP), by outcome (ok, refused)."
    );
    describe_gauge!(HEALTHY, "1 while /healthz answers 200, else 0.");
    describe_gauge!(
        SINCE_PROGRESS,
        Unit::Seconds,
        "Seconds since the loop last made progress (the watchdog's view)."
    );
    describe_counter!(ACTIONS, "Actions by kind and outcome (plan/act; reserved).");
    describe_counter!(
        GITHUB_REQUESTS,
        "Requests sent to GitHub, by endpoint and answer (a 304, not_modified, costs no quota)."
    );
    describe_counter!(
        GITHUB_ERRORS,
        "Failed GitHub requests by kind: network, 4xx, 5xx, rate_limited."
    );
}

pub(crate) fn record_summaries(summaries: &[JobsetSummary]) {
    for summary in summaries {
        let jobset = format!("{}:{}", summary.project, summary.jobset);
        gauge!(EVALS_STORED, "jobset" => jobset.clone()).set(summary.evals as f64);
        for class in crate::history::StatusClass::ALL {
            let count = summary.jobs.get(&class).copied().unwrap_or(0);
            gauge!(JOBS, "jobset" => jobset.clone(), "class" => class.as_str()).set(count as f64);
        }
    }
}

pub(crate) fn cycle_finished(outcome: &'static str, elapsed: Duration, success_unix: Option<i64>) {
    metrics::counter!(CYCLES, "outcome" => outcome).increment(1);
    gauge!(LAST_CYCLE_DURATION).set(elapsed.as_secs_f64());
    if let Some(unix) = success_unix {
        gauge!(LAST_SUCCESS).set(unix as f64);
    }
}

pub(crate) fn reloaded(outcome: &'static str) {
    metrics::counter!(RELOADS, "outcome" => outcome).increment(1);
}

pub(crate) fn health(healthy: bool, since_progress: Duration) {
    gauge!(HEALTHY).set(if healthy { 1.0 } else { 0.0 });
    gauge!(SINCE_PROGRESS).set(since_progress.as_secs_f64());
}

/// Count an HTML report written (`ok`) or not (`failed`).
pub fn report_written(outcome: &'static str) {
    metrics::counter!(REPORTS, "outcome" => outcome).increment(1);
}
