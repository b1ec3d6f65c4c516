//! `plan`, `explain`, `backtest`, `digest` and `policy check`: glue between
//! the store, the clock, the policy engine and stdout.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use hydra_sentinel::config::Config;
use hydra_sentinel::digest::Week;
use hydra_sentinel::policy::{self, Facts, Ledger, Policy};
use hydra_sentinel::store::{PlanScope, Store};

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[arg(long)]
    pub json: bool,
    /// Plan as of this time (RFC 3339 or YYYY-MM-DD, UTC); default: now.
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    /// A policy file instead of the configured one.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Maintainers as JSON: {"attr": ["github-login", ...]}.
    #[arg(long, value_name = "FILE")]
    pub maintainers: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// An attribute path, e.g. python3Packages.requests.
    pub attr: String,
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    pub maintainers: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// The policy to replay history under.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// First day (YYYY-MM-DD); default: the day of the oldest stored eval.
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Last day (YYYY-MM-DD); default: the day of the newest stored eval.
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DigestArgs {
    /// The ISO week, e.g. 2025-W46; default: the week of --now.
    #[arg(long, value_name = "YYYY-Www")]
    pub week: Option<String>,
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    pub maintainers: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file; errors name the line and column.
    Check { file: PathBuf },
}

/// RFC 3339, or a day (its start, UTC).
pub fn parse_time(text: &str) -> Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .context("midnight")?
            .and_utc()
            .timestamp());
    }
    bail!("{text:?} is neither an RFC 3339 time (2025-11-20T12:00:00Z) nor a day (2025-11-20)")
}

fn now_or(text: Option<&str>) -> Result<i64> {
    match text {
        Some(t) => parse_time(t),
        None => Ok(chrono::Utc::now().timestamp()),
    }
}

pub fn load_policy(config: &Config, file: Option<&Path>) -> Result<Policy> {
    Ok(hydra_sentinel::settings::policy_of(config, file)?)
}

/// The facts a plan, explain or backtest reads: what a plan as of `scope`
/// needs ([`Store::plan_facts`]), or the whole history without one.
pub fn load_facts(
    store: &Store,
    config: &Config,
    maintainers: Option<&Path>,
    scope: Option<PlanScope>,
) -> Result<Facts> {
    let mut facts = match scope {
        Some(scope) => store.plan_facts(&config.hydra.url, config.repository(), scope)?,
        None => store.policy_facts(&config.hydra.url, config.repository())?,
    };
    if let Some(path) = maintainers {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading maintainers from {}", path.display()))?;
        let map: BTreeMap<String, Vec<String>> =
            serde_json::from_str(&text).with_context(|| {
                format!(
                    "{}: expected {{\"attr\": [\"login\", ...]}}",
                    path.display()
                )
            })?;
        facts.maintainers = map;
    }
    Ok(facts)
}

fn open(config: &Config) -> Result<(Store, Ledger)> {
    let store = Store::open_read_only(&config.database)?;
    let ledger = store.ledger()?;
    Ok((store, ledger))
}

pub fn plan(config: &Config, args: &PlanArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let policy = load_policy(config, args.policy.as_deref())?;
    let (store, ledger) = open(config)?;
    let now = now_or(args.now.as_deref())?;
    let scope = PlanScope::new(now, &policy.streak);
    let facts = load_facts(&store, config, args.maintainers.as_deref(), Some(scope))?;
    let plan = policy::plan(&policy, &facts, &ledger, now);
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&plan)?)?;
    } else {
        write!(out, "{}", plan.to_text())?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn explain(config: &Config, args: &ExplainArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let policy = load_policy(config, args.policy.as_deref())?;
    let (store, ledger) = open(config)?;
    let facts = load_facts(&store, config, args.maintainers.as_deref(), None)?;
    let now = now_or(args.now.as_deref())?;
    match policy::explain(&policy, &facts, &ledger, &args.attr, now) {
        Some(text) => {
            write!(out, "{text}")?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!(
                "hydra-sentinel: no job for attribute {:?} in {}",
                args.attr,
                store.path().display()
            );
            Ok(ExitCode::from(1))
        }
    }
}

pub fn backtest(config: &Config, args: &BacktestArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let policy = load_policy(config, args.policy.as_deref())?;
    let (store, ledger) = open(config)?;
    let facts = load_facts(&store, config, None, None)?;
    let times = facts
        .jobsets
        .iter()
        .flat_map(|j| j.evals.iter().map(|e| e.timestamp));
    let (Some(oldest), Some(newest)) = (times.clone().min(), times.max()) else {
        bail!("no evals stored yet: run `hydra-sentinel ingest` first");
    };
    let from = args
        .from
        .as_deref()
        .map(parse_time)
        .transpose()?
        .unwrap_or(oldest);
    let to = args
        .to
        .as_deref()
        .map(parse_time)
        .transpose()?
        .unwrap_or(newest);
    if to < from {
        bail!("--to comes before --from");
    }
    let report = policy::backtest(&policy, &facts, &ledger.opt_outs, from, to);
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", report.to_text())?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn digest(config: &Config, args: &DigestArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let policy = load_policy(config, args.policy.as_deref())?;
    let (store, ledger) = open(config)?;
    let facts = load_facts(&store, config, args.maintainers.as_deref(), None)?;
    let now = now_or(args.now.as_deref())?;
    let week = match &args.week {
        Some(w) => Week::parse(w)?,
        None => Week::containing(now),
    };
    // A past week is told as of its end.
    let now = now.min(week.end() - 1);
    write!(
        out,
        "{}",
        render_digest(&policy, &facts, &ledger, now, week)
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn render_digest(
    policy: &Policy,
    facts: &Facts,
    ledger: &Ledger,
    now: i64,
    week: Week,
) -> String {
    hydra_sentinel::act::cycle::digest_text(policy, facts, ledger, now, week)
}

pub fn policy_command(command: &PolicyCommand, out: &mut dyn Write) -> Result<ExitCode> {
    match command {
        PolicyCommand::Check { file } => {
            let p = hydra_sentinel::settings::read_policy(file)?;
            writeln!(
                out,
                "{}: valid; acts on {}; {} override{}; ladder: notice after {}, mark after {}",
                file.display(),
                p.act_on
                    .iter()
                    .map(|j| j.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                p.overrides.len(),
                if p.overrides.len() == 1 { "" } else { "s" },
                p.ladder.notify_after,
                p.ladder.mark_broken_after
            )?;
            let w = &p.early_warning;
            let branches: Vec<String> = w
                .branches
                .iter()
                .map(|b| match w.branch_off(b) {
                    Some(o) => format!("{b} (off: override {})", o.index),
                    None => b.to_string(),
                })
                .collect();
            if branches.is_empty() {
                writeln!(out, "early warnings: none")?;
            } else {
                writeln!(
                    out,
                    "early warnings: {} landing on {}; after {} evals or {} derivations",
                    branches.join(", "),
                    w.trunk,
                    w.min_evals,
                    w.min_derivations
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
