//! `hydra-sentinel run`: the long-running service.
//!
//! Owns: the loop (one *cycle* of steps on an interval), shutdown on
//! SIGTERM/SIGINT, reloading the configuration on SIGHUP, the health state
//! behind `/healthz` and the systemd watchdog, the `/metrics` endpoint, and
//! what `systemctl status` shows (`STATUS=` lines).
//!
//! Must never: hold a database transaction across a shutdown (a cancelled
//! cycle rolls back the eval in flight; committed evals stay), ping the
//! watchdog without real progress of the loop (a hung Hydra download must
//! trip it), keep running on a configuration it could not validate (a bad
//! file on SIGHUP is refused and the old one kept), or depend on systemd
//! being there (all notification is best-effort and a no-op without
//! `NOTIFY_SOCKET`).
//!
//! Restart and idempotency: the service keeps no state outside the SQLite
//! database. Every step is written so that running it again after a crash
//! is harmless: ingest commits one eval per transaction and rediscovers
//! whatever is missing, so a kill at any moment followed by a restart ends
//! in the same database as an uninterrupted run (tested with SIGKILL at
//! random moments). Steps that act on the world (GitHub) must follow the
//! same rule through their ledger (intent, then result), not through memory.
//!
//! # Extension point: cycle steps
//!
//! A cycle runs a list of [`CycleStep`]s in order: [`IngestStep`], then
//! [`ActStep`] (plan, act or describe, and the weekly digest issue, which is
//! due once a week by its marker on GitHub, never by memory), then
//! [`ReportStep`] (the HTML report, when configured). Further steps
//! go in [`default_steps`]: each gets the [`CycleContext`] (the
//! current [`Settings`], the wall-clock `now`, and the [`PassControl`] whose
//! token it must honour and whose heartbeat it should call on progress),
//! decides for itself whether it is due (the digest: once a week, from its
//! ledger, never from memory), and reports a one-line summary for `STATUS=`.
//! A step that fails marks the cycle failed; the steps after it still run
//! unless they depend on it ([`CycleStep::needs_previous`]).
//!
//! # Seams
//!
//! Side effects enter through small seams so that the loop is testable in
//! process: [`Notifier`] (systemd), [`Clock`] (wall clock; the monotonic
//! clock is tokio's, which tests pause), and a channel of [`Signal`]s (the
//! binary forwards Unix signals into it with [`signals::forward`]).

mod health;
mod http;
pub mod metrics;
pub mod signals;
mod systemd;

pub use health::{Health, HealthReport, SetAside};
pub use systemd::{Notifier, Systemd};

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::hydra::{HydraClient, HydraError};
use crate::ingest::{IngestError, Ingestor, PassControl, PassOptions};
use crate::settings::Settings;
use crate::settings::SettingsError;
use crate::store::{Store, StoreError};

/// How long a cancelled cycle may take to wind down (roll back the eval in
/// flight) before it is dropped. `TimeoutStopSec=` in the unit is longer.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hydra(#[from] HydraError),
    #[error("cannot create the state directory {path}")]
    StateDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not writable: the service needs to write its database and, next to it, the WAL files"
    )]
    NotWritable {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr} for /metrics and /healthz")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install the metrics recorder")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
    #[error("a database task panicked")]
    TaskPanicked(#[from] tokio::task::JoinError),
}

/// Why a step did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Act(#[from] crate::act::ActError),
    #[error(transparent)]
    Hydra(#[from] HydraError),
    #[error("stopped on request")]
    Cancelled,
    /// A cycle dropped mid-ingest took the step's database connection with
    /// it; the next cycle opens it again.
    #[error("the database was lost by a dropped cycle")]
    DatabaseLost,
    #[error("the {task} task panicked")]
    Panicked {
        task: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    /// The act cycle ran to its end, but some actions failed (one line
    /// each, as in its report); they are planned again.
    #[error("{}", .0.join("; "))]
    ActionsFailed(Vec<String>),
}

/// Reads and validates [`Settings`] from disk (or the embedded defaults).
pub type Loader = Box<dyn FnMut() -> Result<Settings, SettingsError> + Send>;

/// A control message for the loop; the binary turns Unix signals into these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM, SIGINT: finish or roll back, then exit 0.
    Shutdown,
    /// SIGHUP: reload the settings, keeping the old ones if invalid.
    Reload,
}

/// The wall clock (Unix seconds) as the loop sees it.
pub trait Clock: Send + Sync {
    fn unix_now(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_now(&self) -> i64 {
        chrono::Utc::now().timestamp()
    }
}

/// What a step gets for one cycle.
pub struct CycleContext<'a> {
    pub settings: &'a Settings,
    /// Unix seconds at the start of the cycle.
    pub now: i64,
    /// Cancelled on shutdown; its heartbeat feeds the watchdog.
    pub control: PassControl,
    /// What `/healthz` answers; a step may add what it learned.
    pub health: &'a Mutex<Health>,
}

pub type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<String, StepError>> + Send + 'a>>;

/// One stage of a cycle. See the module documentation for how plan, act
/// and the digest join.
pub trait CycleStep: Send {
    fn name(&self) -> &'static str;
    /// Run once; returns a one-line summary for logs and `STATUS=`.
    /// Must stop promptly when `cx.control.cancel` fires, leaving nothing
    /// half-done, and call the heartbeat whenever it makes progress.
    fn run<'a>(&'a mut self, cx: &'a CycleContext<'a>) -> StepFuture<'a>;
    /// New settings were loaded (SIGHUP): rebuild what depends on them.
    fn reconfigure(&mut self, settings: &Settings) -> Result<(), StepError>;
    /// Skip this step when an earlier step of the cycle failed (act must not
    /// run on a plan made from stale data).
    fn needs_previous(&self) -> bool {
        false
    }
}

/// Ingest of every configured jobset: the first step of each cycle.
pub struct IngestStep {
    /// Lent to each pass; only lost if a cycle is dropped at shutdown.
    store: Option<Store>,
    client: HydraClient,
}

impl IngestStep {
    pub fn new(settings: &Settings, store: Store) -> Result<IngestStep, DaemonError> {
        Ok(IngestStep {
            store: Some(store),
            client: HydraClient::new(&settings.config.hydra)?,
        })
    }
}

impl CycleStep for IngestStep {
    fn name(&self) -> &'static str {
        "ingest"
    }

    fn run<'a>(&'a mut self, cx: &'a CycleContext<'a>) -> StepFuture<'a> {
        Box::pin(async move {
            let store = self.store.take().ok_or_else(|| StepError::DatabaseLost)?;
            let config = &cx.settings.config;
            let ingestor =
                Ingestor::new(config, self.client.clone(), store).with_control(cx.control.clone());
            let options = PassOptions {
                max_evals: None,
                now: cx.now,
            };
            let (reports, error) = ingestor.pass(&config.jobsets, &options).await;
            let store = ingestor.into_store();
            let (store, summaries) = tokio::task::spawn_blocking(move || {
                let summaries = store.jobset_summaries();
                (store, summaries)
            })
            .await
            .map_err(|source| StepError::Panicked {
                task: "database",
                source,
            })?;
            self.store = Some(store);
            metrics::record_summaries(&summaries?);
            match error {
                Some(IngestError::Cancelled) => Err(StepError::Cancelled),
                Some(e) => Err(e.into()),
                None => {
                    let evals: usize = reports.iter().map(|r| r.evals_ingested.len()).sum();
                    let builds: usize = reports.iter().map(|r| r.builds_written).sum();
                    let missing: usize = reports
                        .iter()
                        .filter_map(|r| r.pending.map(|p| p.missing))
                        .sum();
                    let learning = if missing > 0 {
                        format!("; {missing} builds of pending evals still to learn")
                    } else {
                        String::new()
                    };
                    Ok(format!(
                        "{evals} new eval{} ({builds} builds written) over {} jobset{}{learning}",
                        if evals == 1 { "" } else { "s" },
                        reports.len(),
                        if reports.len() == 1 { "" } else { "s" }
                    ))
                }
            }
        })
    }

    fn reconfigure(&mut self, settings: &Settings) -> Result<(), StepError> {
        self.client = HydraClient::new(&settings.config.hydra)?;
        Ok(())
    }
}

/// The steps of a cycle, in order. Plan, act and the digest go here, after
/// ingest (see the module documentation).
pub fn default_steps(
    settings: &Settings,
    store: Store,
) -> Result<Vec<Box<dyn CycleStep>>, DaemonError> {
    Ok(vec![
        Box::new(IngestStep::new(settings, store)?),
        Box::new(ActStep),
        Box::new(ReportStep),
        Box::new(PruneStep),
    ])
}

/// Batches of old history removed per cycle (see [`Store::prune`]): a
/// database that was never pruned is brought under the horizon over a few
/// cycles, without holding the database for long in any.
const PRUNE_BATCHES_PER_CYCLE: usize = 100;

/// Remove history older than `[database] keep_history_days`, a little every
/// cycle, in small transactions (a stop or a kill loses at most one).
pub struct PruneStep;

impl CycleStep for PruneStep {
    fn name(&self) -> &'static str {
        "prune"
    }

    fn needs_previous(&self) -> bool {
        false
    }

    fn run<'a>(&'a mut self, cx: &'a CycleContext<'a>) -> StepFuture<'a> {
        Box::pin(async move {
            let database = cx.settings.config.database.clone();
            let keep = cx.settings.config.retention.keep_history.as_secs();
            let before = cx
                .now
                .saturating_sub(i64::try_from(keep).unwrap_or(i64::MAX));
            let pruned = tokio::task::spawn_blocking(move || {
                Store::open(&database)?.prune(
                    before,
                    crate::store::PRUNE_BATCH,
                    Some(PRUNE_BATCHES_PER_CYCLE),
                )
            })
            .await
            .map_err(|source| StepError::Panicked {
                task: "prune",
                source,
            })??;
            cx.control.beat();
            Ok(format!(
                "{} spans and {} builds older than the horizon removed{}",
                pruned.spans,
                pruned.builds,
                if pruned.complete {
                    ""
                } else {
                    " (more next cycle)"
                }
            ))
        })
    }

    fn reconfigure(&mut self, _settings: &Settings) -> Result<(), StepError> {
        Ok(())
    }
}

/// Write the HTML report (`[report] html_dir`) at the end of a successful
/// cycle. A failure to write it is logged and counted
/// ([`metrics::REPORTS`] with `outcome="failed"`), never a failed cycle:
/// the site is a view of the database, and the next cycle writes it again.
pub struct ReportStep;

impl CycleStep for ReportStep {
    fn name(&self) -> &'static str {
        "report"
    }

    fn needs_previous(&self) -> bool {
        true
    }

    fn run<'a>(&'a mut self, cx: &'a CycleContext<'a>) -> StepFuture<'a> {
        Box::pin(async move {
            let Some(dir) = cx.settings.config.report.html_dir.clone() else {
                return Ok("off".to_owned());
            };
            let config = cx.settings.config.clone();
            let policy = cx.settings.policy.clone();
            let now = cx.now;
            let target = dir.clone();
            let written = tokio::task::spawn_blocking(move || {
                let store = Store::open_read_only(&config.database)?;
                let snapshot = crate::site::load(&store, &config, policy, None, now)?;
                crate::site::publish(&target, &snapshot)
            })
            .await;
            cx.control.beat();
            let written = match written {
                Ok(Ok(w)) => Ok(w),
                Ok(Err(e)) => Err(crate::error_chain(&e)),
                Err(e) => Err(format!("the report task panicked: {e}")),
            };
            match written {
                Ok(w) => {
                    metrics::report_written("ok");
                    tracing::info!(dir = %dir.display(), files = w.files, written = w.write.written, bytes = w.write.bytes, failing = w.failing, "HTML report written");
                    Ok(format!(
                        "{} failing packages in {} ({} of {} files changed)",
                        w.failing,
                        dir.display(),
                        w.write.written,
                        w.files
                    ))
                }
                Err(error) => {
                    metrics::report_written("failed");
                    tracing::error!(dir = %dir.display(), error, "could not write the HTML report; the cycle itself is unaffected");
                    Ok("FAILED to write the site (see the log)".to_owned())
                }
            }
        })
    }

    fn reconfigure(&mut self, _settings: &Settings) -> Result<(), StepError> {
        Ok(())
    }
}

/// Plan and act on what ingest stored (dry-run until `[act] enabled`), and
/// open the week's digest issue. It skips a cycle whose ingest failed: a
/// plan made from stale data must not act.
///
/// Restart safety is the act stage's: intents in the ledger, reconciled by
/// markers and branch names at the start of every cycle.
pub struct ActStep;

impl CycleStep for ActStep {
    fn name(&self) -> &'static str {
        "act"
    }

    fn needs_previous(&self) -> bool {
        true
    }

    fn run<'a>(&'a mut self, cx: &'a CycleContext<'a>) -> StepFuture<'a> {
        Box::pin(async move {
            let config = cx.settings.config.clone();
            let policy = cx.settings.policy.clone();
            let now = cx.now;
            // The store is not Sync: the cycle runs on a blocking thread of
            // its own, with its own connection.
            let control = cx.control.clone();
            let (outcome, set_aside) = tokio::task::spawn_blocking(move || {
                let store = Store::open(&config.database)?;
                let progress = move || control.beat();
                let mut facts = crate::act::cycle::plan_facts(&config, &policy, &store, now)?;
                let outcome = crate::act::cycle::run(
                    &config, &policy, &store, &mut facts, now, false, false, &progress, None,
                )
                .map_err(StepError::from);
                // Whatever the cycle did, what is set aside stays so:
                // assessed from the facts it planned from, with the ledger
                // (actions, opt-outs) as acting left it, since acting writes
                // nothing else a plan reads; so the history is read once a
                // cycle. A package acted on this cycle was listed by that
                // read, or it would not have been planned.
                let set_aside = store.ledger().map(|ledger| {
                    health::set_aside(&crate::policy::assess(&policy, &facts, &ledger, now))
                });
                Ok::<_, StepError>((outcome, set_aside))
            })
            .await
            .map_err(|source| StepError::Panicked {
                task: "act",
                source,
            })??;
            match set_aside {
                Ok(list) => lock(cx.health).set_aside(list, now),
                Err(e) => {
                    tracing::warn!(error = %crate::error_chain(&e), "cannot list the set-aside actions for /healthz")
                }
            }
            let outcome = outcome?;
            cx.control.beat();
            match outcome {
                crate::act::cycle::Outcome::DryRun(dry) => {
                    Ok(format!("dry run: {} planned", dry.planned))
                }
                crate::act::cycle::Outcome::Acted(report) if report.errors.is_empty() => {
                    Ok(format!("{} done on GitHub", report.lines.len()))
                }
                crate::act::cycle::Outcome::Acted(report) => {
                    Err(StepError::ActionsFailed(report.errors))
                }
            }
        })
    }

    fn reconfigure(&mut self, _settings: &Settings) -> Result<(), StepError> {
        Ok(())
    }
}

/// The service, wired up by the binary.
pub struct Daemon {
    pub loader: Loader,
    pub signals: mpsc::UnboundedReceiver<Signal>,
    pub notifier: Arc<dyn Notifier>,
    pub clock: Arc<dyn Clock>,
    /// Renders `/metrics`; None serves `/healthz` only.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl Daemon {
    /// Load the settings, open (and migrate) the database, bind the HTTP
    /// endpoint, then loop until told to stop. Errors before the loop starts
    /// are fatal; errors in a cycle are logged, counted and retried on the
    /// next interval.
    pub async fn run(mut self) -> Result<(), DaemonError> {
        self.notifier.status("starting: loading the configuration");
        let settings = (self.loader)()?;
        let config = &settings.config;
        self.notifier
            .status("starting: opening and migrating the database");
        if let Some(dir) = config
            .database
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|source| DaemonError::StateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        check_writable(&config.database)?;
        let path = config.database.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(&path)).await??;
        tracing::info!(database = %config.database.display(), "database ready");
        let health = Arc::new(Mutex::new(Health::new(Instant::now(), &config.daemon)));
        let stop_http = CancellationToken::new();
        if let Some(addr) = config.metrics.listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| DaemonError::Listen { addr, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| DaemonError::Listen { addr, source })?;
            tracing::info!(%bound, "serving /metrics and /healthz");
            tokio::spawn(http::serve(
                listener,
                http::State {
                    health: Arc::clone(&health),
                    metrics: self.metrics.clone(),
                },
                stop_http.clone(),
            ));
        }
        metrics::describe();
        let steps = default_steps(&settings, store)?;
        let result = run_loop(LoopParts {
            settings,
            steps,
            loader: self.loader,
            signals: self.signals,
            notifier: Arc::clone(&self.notifier),
            clock: self.clock,
            health,
        })
        .await;
        stop_http.cancel();
        self.notifier.stopping();
        result
    }
}

/// Refuse to start on a read-only database or state directory. SQLite
/// would open a write-protected file read-only without a word and every
/// cycle would then fail; saying so once, at start, is clearer. (A disk that
/// fills up or turns read-only later fails cycles with SQLite's own message,
/// and `/healthz` turns unhealthy.)
fn check_writable(database: &std::path::Path) -> Result<(), DaemonError> {
    let not_writable = |path: &std::path::Path| {
        let path = path.to_owned();
        move |source| DaemonError::NotWritable { path, source }
    };
    if database.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(database)
            .map_err(not_writable(database))?;
    }
    let dir = database
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    tempfile::Builder::new()
        .prefix(".hydra-sentinel-probe")
        .tempfile_in(dir)
        .map_err(not_writable(dir))?;
    Ok(())
}

/// Everything the loop owns; separate from [`Daemon::run`] so that unit
/// tests can drive it with their own steps and a paused clock.
pub(crate) struct LoopParts {
    pub settings: Settings,
    pub steps: Vec<Box<dyn CycleStep>>,
    pub loader: Loader,
    pub signals: mpsc::UnboundedReceiver<Signal>,
    pub notifier: Arc<dyn Notifier>,
    pub clock: Arc<dyn Clock>,
    pub health: Arc<Mutex<Health>>,
}

fn lock(health: &Mutex<Health>) -> std::sync::MutexGuard<'_, Health> {
    health.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a cycle ended.
#[derive(Debug, PartialEq, Eq)]
enum CycleEnd {
    Ok(String),
    Failed(String),
    /// Shutdown requested while it ran.
    Stopped,
}

pub(crate) async fn run_loop(parts: LoopParts) -> Result<(), DaemonError> {
    let LoopParts {
        mut settings,
        mut steps,
        mut loader,
        mut signals,
        notifier,
        clock,
        health,
    } = parts;
    let watchdog = notifier.watchdog_period();
    let stop_watchdog = CancellationToken::new();
    if let Some(period) = watchdog {
        tracing::info!(
            ?period,
            "systemd watchdog enabled; pinged only while the loop makes progress"
        );
        tokio::spawn(watchdog_task(
            period,
            Arc::clone(&health),
            Arc::clone(&notifier),
            stop_watchdog.clone(),
        ));
    }
    // While waiting, the loop itself proves it is alive this often.
    let beat_every = watchdog.map_or(Duration::from_secs(30), |w| {
        (w / 4).max(Duration::from_millis(100))
    });
    let heartbeat: Arc<dyn Fn() + Send + Sync> = {
        let health = Arc::clone(&health);
        Arc::new(move || lock(&health).progress(Instant::now()))
    };
    let mut ready_sent = false;
    let mut cycle: u64 = 0;
    let result = 'service: loop {
        cycle += 1;
        let started = Instant::now();
        let now = clock.unix_now();
        lock(&health).cycle_started(started);
        if !ready_sent {
            notifier.ready();
            ready_sent = true;
        }
        let cancel = CancellationToken::new();
        let mut reload_pending = false;
        let end = {
            let cx = CycleContext {
                settings: &settings,
                health: &health,
                now,
                control: PassControl {
                    cancel: cancel.clone(),
                    heartbeat: Some(Arc::clone(&heartbeat)),
                },
            };
            let mut run = std::pin::pin!(run_cycle(&mut steps, &cx, notifier.as_ref(), cycle));
            loop {
                tokio::select! {
                    end = &mut run => break end,
                    signal = signals.recv() => match signal {
                        Some(Signal::Reload) => {
                            tracing::info!("reload requested; it takes effect when this cycle ends");
                            reload_pending = true;
                        }
                        Some(Signal::Shutdown) | None => {
                            tracing::info!(grace = ?SHUTDOWN_GRACE, "shutdown requested during a cycle; stopping it");
                            notifier.status("stopping: winding down the cycle in flight");
                            cancel.cancel();
                            match tokio::time::timeout(SHUTDOWN_GRACE, &mut run).await {
                                Ok(_) => tracing::info!("cycle stopped cleanly"),
                                Err(_) => tracing::warn!("cycle did not stop within the grace period; dropping it (uncommitted work rolls back)"),
                            }
                            break CycleEnd::Stopped;
                        }
                    }
                }
            }
        };
        let finished = Instant::now();
        let elapsed = finished - started;
        match &end {
            CycleEnd::Stopped => break 'service Ok(()),
            CycleEnd::Ok(summary) => {
                let unix = clock.unix_now();
                lock(&health).cycle_succeeded(finished, unix);
                metrics::cycle_finished("ok", elapsed, Some(unix));
                tracing::info!(cycle, elapsed = ?elapsed, summary, "cycle done");
            }
            CycleEnd::Failed(error) => {
                lock(&health).cycle_failed(finished, error.clone());
                metrics::cycle_finished("failed", elapsed, None);
                tracing::error!(cycle, elapsed = ?elapsed, error, "cycle failed; trying again next interval");
            }
        }
        if reload_pending {
            reload(
                &mut settings,
                &mut steps,
                &mut loader,
                notifier.as_ref(),
                &health,
            );
        }
        // Wait for the next cycle, staying responsive to signals and proving
        // liveness to the watchdog as we go.
        loop {
            let next = started + settings.config.daemon.interval;
            let now = Instant::now();
            if now >= next {
                break;
            }
            notifier.status(&idle_status(&end, next - now));
            lock(&health).waiting(now);
            let wake = next.min(now + beat_every);
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                signal = signals.recv() => match signal {
                    Some(Signal::Reload) => reload(&mut settings, &mut steps, &mut loader, notifier.as_ref(), &health),
                    Some(Signal::Shutdown) | None => break 'service Ok(()),
                }
            }
        }
    };
    stop_watchdog.cancel();
    result
}

fn idle_status(end: &CycleEnd, until_next: Duration) -> String {
    let next = format!("next cycle in {}s", until_next.as_secs());
    match end {
        CycleEnd::Ok(summary) => format!("idle: last cycle ok: {summary}; {next}"),
        CycleEnd::Failed(error) => format!("idle: last cycle FAILED: {error}; {next}"),
        CycleEnd::Stopped => "stopping".into(),
    }
}

async fn run_cycle(
    steps: &mut [Box<dyn CycleStep>],
    cx: &CycleContext<'_>,
    notifier: &dyn Notifier,
    cycle: u64,
) -> CycleEnd {
    let mut summaries = Vec::new();
    let mut failures = Vec::new();
    for step in steps.iter_mut() {
        if step.needs_previous() && !failures.is_empty() {
            tracing::warn!(
                step = step.name(),
                "skipped: an earlier step of this cycle failed"
            );
            continue;
        }
        notifier.status(&format!("cycle {cycle}: {}", step.name()));
        if let Some(beat) = &cx.control.heartbeat {
            beat();
        }
        match step.run(cx).await {
            Ok(summary) => summaries.push(format!("{}: {summary}", step.name())),
            Err(StepError::Cancelled) => return CycleEnd::Stopped,
            Err(e) => failures.push(format!("{}: {}", step.name(), crate::error_chain(&e))),
        }
        if cx.control.cancel.is_cancelled() {
            return CycleEnd::Stopped;
        }
    }
    if failures.is_empty() {
        CycleEnd::Ok(summaries.join("; "))
    } else {
        CycleEnd::Failed(failures.join("; "))
    }
}

/// Replace the settings with freshly loaded ones, or keep the old ones and
/// say why. Keys that cannot change without a restart are reported.
fn reload(
    settings: &mut Settings,
    steps: &mut [Box<dyn CycleStep>],
    loader: &mut Loader,
    notifier: &dyn Notifier,
    health: &Mutex<Health>,
) {
    notifier.reloading();
    let outcome = match loader() {
        Err(e) => {
            // A configuration error already names the file, line and column.
            let error = match &e {
                SettingsError::Config(e) => e.to_string(),
                e => crate::error_chain(e),
            };
            tracing::error!(error, "new configuration refused; keeping the running one");
            lock(health).reload_refused(error);
            "refused"
        }
        Ok(new) => {
            let old = &settings.config;
            if new.config.database != old.database {
                tracing::warn!(running = %old.database.display(), "database.path changed; it takes effect at the next restart");
            }
            if new.config.metrics != old.metrics {
                tracing::warn!("metrics settings changed; they take effect at the next restart");
            }
            let mut new = new;
            new.config.database = old.database.clone();
            new.config.metrics = old.metrics.clone();
            match steps.iter_mut().try_for_each(|s| s.reconfigure(&new)) {
                Ok(()) => {
                    lock(health).reconfigure(&new.config.daemon);
                    tracing::info!(
                        interval = ?new.config.daemon.interval,
                        jobsets = new.config.jobsets.len(),
                        "configuration reloaded"
                    );
                    *settings = new;
                    "ok"
                }
                Err(e) => {
                    let error = crate::error_chain(&e);
                    tracing::error!(
                        error,
                        "new configuration could not be applied; keeping the running one"
                    );
                    for step in steps.iter_mut() {
                        let _ = step.reconfigure(settings);
                    }
                    lock(health).reload_refused(error);
                    "refused"
                }
            }
        }
    };
    metrics::reloaded(outcome);
    notifier.ready();
}

/// Ping the watchdog only while the loop makes progress: a step that
/// hangs (a Hydra download that stopped sending) stops the pings, and
/// systemd restarts the service after `WatchdogSec=`.
async fn watchdog_task(
    period: Duration,
    health: Arc<Mutex<Health>>,
    notifier: Arc<dyn Notifier>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(period / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stalled = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let now = Instant::now();
        let since = lock(&health).since_progress(now);
        if since < period {
            notifier.watchdog_ping();
            if stalled {
                tracing::info!("progress again; watchdog pings resumed");
                stalled = false;
            }
        } else if !stalled {
            stalled = true;
            tracing::error!(since_progress = ?since, "no progress; withholding watchdog pings so that systemd restarts the service");
            notifier.status(&format!(
                "STALLED: no progress for {}s; the watchdog will restart the service",
                since.as_secs()
            ));
        }
    }
}

#[cfg(test)]
mod tests;
