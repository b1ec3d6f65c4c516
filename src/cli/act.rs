//! `once` and `act`: one cycle of ingest, plan and act, or only plan and act.
//! Dry-run (print what would be sent) unless `[act] enabled = true`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use hydra_sentinel::act::cycle::{self, Outcome};
use hydra_sentinel::config::Config;
use hydra_sentinel::store::Store;

use super::policy::{load_policy, parse_time};

#[derive(Debug, Args)]
pub struct OnceArgs {
    /// Act as of this time (RFC 3339 or YYYY-MM-DD, UTC); default: now.
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    /// At most this many new evals per jobset.
    #[arg(long, value_name = "N")]
    pub max_evals: Option<usize>,
    /// Print what would be sent, even when acting is enabled.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ActArgs {
    /// Print every text that would be sent (the default until `[act] enabled = true`).
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
}

fn now(text: Option<&str>) -> Result<i64> {
    match text {
        Some(t) => parse_time(t),
        None => Ok(chrono::Utc::now().timestamp()),
    }
}

pub fn once(config: &Config, args: &OnceArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let at = now(args.now.as_deref())?;
    super::ingest(config, args.max_evals, out)?;
    let code = act_cycle(config, at, args.dry_run, false, out)?;
    if code == ExitCode::SUCCESS {
        super::site::after_cycle(config, at, out)?;
    }
    Ok(code)
}

pub fn act(config: &Config, args: &ActArgs, out: &mut dyn Write) -> Result<ExitCode> {
    act_cycle(config, now(args.now.as_deref())?, args.dry_run, true, out)
}

fn act_cycle(
    config: &Config,
    now: i64,
    dry_run: bool,
    full_texts: bool,
    out: &mut dyn Write,
) -> Result<ExitCode> {
    let policy = load_policy(config, None)?;
    let store = Store::open(&config.database)?;
    let mut facts = cycle::plan_facts(config, &policy, &store, now)?;
    match cycle::run(
        config,
        &policy,
        &store,
        &mut facts,
        now,
        dry_run,
        full_texts,
        &|| {},
        None,
    )? {
        Outcome::DryRun(dry) => {
            writeln!(
                out,
                "Dry run{}: nothing is sent. Acting on this plan would:",
                if config.act.enabled {
                    ""
                } else {
                    " ([act] enabled = false)"
                }
            )?;
            write!(out, "{}", dry.text)?;
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Acted(report) => {
            for line in &report.lines {
                writeln!(out, "{line}")?;
            }
            for line in &report.errors {
                writeln!(out, "error: {line}")?;
            }
            Ok(if report.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
    }
}
