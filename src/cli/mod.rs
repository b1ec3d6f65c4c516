//! Command-line glue: each subcommand wires library pieces together. The only
//! place besides `main` where `anyhow` is used.

mod act;
mod config;
mod demo;
mod doctor;
mod generate;
mod policy;
mod site;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use hydra_sentinel::config::Config;
use hydra_sentinel::format::HydraLinks;
use hydra_sentinel::hydra::HydraClient;
use hydra_sentinel::ingest::{Ingestor, PassOptions};
use hydra_sentinel::nixpkgs::cli as nixpkgs_cli;
use hydra_sentinel::report;
use hydra_sentinel::store::{PRUNE_BATCH, Store, StoreError};

#[derive(Debug, Parser)]
#[command(
    name = "hydra-sentinel",
    version,
    about = "Watches Hydra for failing nixpkgs jobs and tells the people who can fix them"
)]
pub struct Cli {
    /// The service configuration (TOML). Without it, embedded defaults apply:
    /// hydra.nixos.org, nixpkgs:trunk, ./hydra-sentinel.sqlite.
    #[arg(
        long,
        global = true,
        env = "HYDRA_SENTINEL_CONFIG",
        value_name = "PATH"
    )]
    config: Option<PathBuf>,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One pass over every configured jobset: new evals, then rechecks.
    Ingest {
        /// At most this many new evals per jobset (bounds a first backfill).
        #[arg(long, value_name = "N")]
        max_evals: Option<usize>,
    },
    /// The service: ingest on an interval until SIGTERM; SIGHUP reloads the
    /// configuration. Speaks systemd's notify protocol and serves /metrics
    /// and /healthz (see `[daemon]` and `[metrics]` in the configuration).
    Run,
    /// Evals stored and jobs per class, per jobset.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Per system: current class, streak, last success, and Hydra links.
    History {
        /// An attribute path, e.g. python3Packages.requests.
        attr: String,
        #[arg(long)]
        json: bool,
    },
    /// Half a year of nixpkgs in under a minute, offline: a Hydra and a
    /// GitHub look-alike on loopback, a small nixpkgs tree and a bare fork in
    /// a temporary folder, a real cycle a simulated day, and everything the
    /// bot sent printed as maintainers read it.
    Demo {
        /// Keep the demo database here (a new file) instead of a temporary folder.
        #[arg(long, value_name = "PATH")]
        database: Option<PathBuf>,
        /// Print the story as JSON (who got which step, on which platforms, when) instead of the text.
        #[arg(long)]
        json: bool,
    },
    /// Print the file defining each attribute in a nixpkgs checkout, or why
    /// it is refused.
    Locate(nixpkgs_cli::LocateArgs),
    /// Mark a package broken, on some platforms or all (prints a diff unless --write).
    MarkBroken(nixpkgs_cli::MarkBrokenArgs),
    /// Move a long-broken package to the attic with a throw alias (prints the
    /// change unless --write).
    Retire(nixpkgs_cli::RetireArgs),
    /// What the policy says should happen now (a dry run).
    Plan(policy::PlanArgs),
    /// One cycle: ingest, then plan and act (dry-run until `[act] enabled`).
    Once(act::OnceArgs),
    /// Plan and act on what is stored, without ingesting (`--dry-run` prints
    /// every text that would be sent).
    Act(act::ActArgs),
    /// In words: a package's history per platform, the rule that applies,
    /// what happens next and when, and how to stop it.
    Explain(policy::ExplainArgs),
    /// Replay the stored history day by day under a policy and count what it
    /// would have done.
    Backtest(policy::BacktestArgs),
    /// The Markdown of the weekly digest issue.
    Digest(policy::DigestArgs),
    /// Write a static HTML site from the database: failing packages (by
    /// age, platforms, blast radius), one page per package and maintainer,
    /// roots with their victims, and the policy's next step for each.
    Report(site::ReportArgs),
    /// Whether this setup can act on GitHub: the configuration, the token
    /// (kind, scopes, whose), the fork and push access to it, the role on
    /// the repository, whom the mention reaches, Hydra and the nixpkgs
    /// checkout. Reads only; exits non-zero on a problem, saying how to fix it.
    Doctor,
    /// Remove history older than `[database] keep_history_days` (default
    /// two years), in small transactions: safe to interrupt, and the daemon
    /// does it too, a little every cycle. Kept whatever their age: the
    /// streaks of jobs that fail now, the history of packages the ledger
    /// names, the evals and the ledger. Run `VACUUM` afterwards to give the
    /// space back to the file system (see the README).
    Prune {
        /// Prune as of this time (RFC 3339 or a day) instead of now.
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Policy files.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Service configuration files.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Print a completion script for a shell, e.g.
    /// `hydra-sentinel completions bash > /etc/bash_completion.d/hydra-sentinel`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `hydra-sentinel man > hydra-sentinel.1`.
    Man {
        /// Instead, write one page per command into DIR (hydra-sentinel.1,
        /// hydra-sentinel-plan.1, ...).
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    // The demo's own output tells the story; per-eval progress would drown it.
    let default_level = if matches!(cli.command, Command::Demo { .. }) {
        "warn"
    } else {
        "info"
    };
    init_logging(cli.log_format, default_level);
    let load_config = || -> Result<Config> {
        match &cli.config {
            Some(path) => Ok(Config::load(path)?),
            None => Ok(Config::embedded_default()),
        }
    };
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Ingest { max_evals } => {
            let config = load_config()?;
            ingest(&config, max_evals, &mut stdout)
        }
        Command::Run => run_service(cli.config.clone()),
        Command::Status { json } => {
            let config = load_config()?;
            let store = Store::open_read_only(&config.database)?;
            let summaries = store.jobset_summaries()?;
            if json {
                writeln!(
                    stdout,
                    "{}",
                    serde_json::to_string_pretty(&report::status_json(&summaries))?
                )?;
            } else {
                write!(stdout, "{}", report::status_text(&summaries))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::History { attr, json } => {
            let config = load_config()?;
            let store = Store::open_read_only(&config.database)?;
            history(&store, &config, &attr, json, &mut stdout)
        }
        Command::Demo { database, json } => demo::run(database.as_deref(), json, &mut stdout),
        Command::Locate(args) => Ok(nixpkgs_cli::run_locate(&args, &mut stdout)?.into()),
        Command::MarkBroken(args) => Ok(nixpkgs_cli::run_mark_broken(&args, &mut stdout)?.into()),
        Command::Retire(args) => Ok(nixpkgs_cli::run_retire(&args, &mut stdout)?.into()),
        Command::Plan(args) => policy::plan(&load_config()?, &args, &mut stdout),
        Command::Once(args) => act::once(&load_config()?, &args, &mut stdout),
        Command::Act(args) => act::act(&load_config()?, &args, &mut stdout),
        Command::Explain(args) => policy::explain(&load_config()?, &args, &mut stdout),
        Command::Backtest(args) => policy::backtest(&load_config()?, &args, &mut stdout),
        Command::Digest(args) => policy::digest(&load_config()?, &args, &mut stdout),
        Command::Report(args) => site::report(&load_config()?, &args, &mut stdout),
        Command::Prune { now, json } => prune(&load_config()?, now.as_deref(), json, &mut stdout),
        Command::Policy(command) => policy::policy_command(&command, &mut stdout),
        Command::Config(command) => config::config_command(&command, &mut stdout),
        Command::Doctor => doctor::doctor(cli.config.as_deref(), &mut stdout),
        Command::Completions { shell } => generate::completions(shell, &mut stdout),
        Command::Man { out_dir } => generate::man(out_dir.as_deref(), &mut stdout),
    }
}

fn prune(config: &Config, now: Option<&str>, json: bool, out: &mut dyn Write) -> Result<ExitCode> {
    if !config.database.exists() {
        return Err(StoreError::Missing {
            path: config.database.clone(),
        }
        .into());
    }
    let now = match now {
        Some(text) => policy::parse_time(text)?,
        None => chrono::Utc::now().timestamp(),
    };
    let keep = i64::try_from(config.retention.keep_history.as_secs()).unwrap_or(i64::MAX);
    let before = now.saturating_sub(keep);
    let mut store = Store::open(&config.database)?;
    let pruned = store.prune(before, PRUNE_BATCH, None)?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&pruned)?)?;
    } else {
        writeln!(
            out,
            "pruned {} spans and {} builds that ended before {}",
            pruned.spans,
            pruned.builds,
            report::time(before)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub(crate) fn ingest(
    config: &Config,
    max_evals: Option<usize>,
    out: &mut dyn Write,
) -> Result<ExitCode> {
    if let Some(dir) = config
        .database
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the state directory {}", dir.display()))?;
    }
    let store = Store::open(&config.database)?;
    let client = HydraClient::new(&config.hydra)?;
    let ingestor = Ingestor::new(config, client, store);
    let options = PassOptions {
        max_evals,
        now: chrono::Utc::now().timestamp(),
    };
    let (reports, error) = runtime()?.block_on(ingestor.pass(&config.jobsets, &options));
    for r in &reports {
        writeln!(
            out,
            "{}: {} new eval{}, {} builds written, {} spans opened, {} closed, {} refused builds across evals, {} rechecked ({} changed), {} build pages read",
            r.jobset,
            r.evals_ingested.len(),
            if r.evals_ingested.len() == 1 { "" } else { "s" },
            r.builds_written,
            r.spans_opened,
            r.spans_closed,
            r.rejected_jobs,
            r.rechecked_builds,
            r.changed_builds,
            r.cause_pages_read
        )?;
        if let Some(p) = &r.pending {
            writeln!(
                out,
                "{}: eval {} is being learned build by build: {} of its {} builds still to ask about (at most {} requests a pass; the next pass goes on)",
                r.jobset, p.eval, p.missing, p.builds, config.ingest.requests_per_pass
            )?;
        }
    }
    match error {
        Some(e) => Err(e)
            .context("ingest did not complete; everything committed before the failure is kept"),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// `run`: the daemon on a runtime of its own; the configuration file is
/// read again on every SIGHUP.
fn run_service(config_path: Option<PathBuf>) -> Result<ExitCode> {
    use hydra_sentinel::daemon::{self, Daemon, SystemClock, Systemd};
    use hydra_sentinel::settings::Settings;
    let runtime = runtime()?;
    let result = runtime.block_on(async move {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        daemon::signals::forward(tx).context("installing signal handlers")?;
        let metrics = daemon::metrics::install().context("installing the metrics recorder")?;
        let loader: daemon::Loader = Box::new(move || Settings::load(config_path.as_deref()));
        Daemon {
            loader,
            signals: rx,
            notifier: std::sync::Arc::new(Systemd),
            clock: std::sync::Arc::new(SystemClock),
            metrics: Some(metrics),
        }
        .run()
        .await
        .context("the service stopped")
    });
    // Blocking database work of a cycle dropped at shutdown is not waited
    // for: SQLite rolls its transaction back on the next open.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result.map(|()| ExitCode::SUCCESS)
}

pub(crate) fn history(
    store: &Store,
    config: &Config,
    attr: &str,
    json: bool,
    out: &mut dyn Write,
) -> Result<ExitCode> {
    let policy = policy::load_policy(config, None)?;
    let records = store.jobs_by_attr(attr, &policy.streak)?;
    let links = HydraLinks::new(&config.hydra.url);
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&report::history_json(attr, &records, &links))?
        )?;
    } else if records.is_empty() {
        eprintln!(
            "hydra-sentinel: no job for attribute {attr:?} in {}",
            store.path().display()
        );
        return Ok(ExitCode::from(1));
    } else {
        write!(out, "{}", report::history_text(attr, &records, &links))?;
    }
    Ok(if records.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Logs go to stderr; `HYDRA_SENTINEL_LOG` (e.g. `debug`,
/// `hydra_sentinel::ingest=trace`) overrides the default level.
fn init_logging(format: LogFormat, default_level: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HYDRA_SENTINEL_LOG")
        .unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // Under systemd, stderr goes to the journal, which stamps each line itself.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let _ = match (format, journal) {
        (LogFormat::Text, false) => builder.try_init(),
        (LogFormat::Text, true) => builder.without_time().try_init(),
        (LogFormat::Json, _) => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
