//! `report --html DIR`: the static site maintainers can look at, written
//! from the database (see [`hydra_sentinel::site`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use hydra_sentinel::config::Config;
use hydra_sentinel::site;
use hydra_sentinel::store::Store;

use super::policy::{load_policy, parse_time};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Write the site into this directory, replacing it whole (it must be
    /// absent, empty, or a site written earlier).
    #[arg(long, value_name = "DIR")]
    pub html: PathBuf,
    /// As of this time (RFC 3339 or YYYY-MM-DD, UTC); default: now.
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    /// A policy file instead of the configured one.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Maintainers as JSON: {"attr": ["github-login", ...]}; default: from
    /// the configured nixpkgs checkout as it is (not fetched).
    #[arg(long, value_name = "FILE")]
    pub maintainers: Option<PathBuf>,
}

fn read_maintainers(path: &Path) -> Result<BTreeMap<String, Vec<String>>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading maintainers from {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected {{\"attr\": [\"login\", ...]}}",
            path.display()
        )
    })
}

pub fn report(config: &Config, args: &ReportArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let policy = load_policy(config, args.policy.as_deref())?;
    let maintainers = args
        .maintainers
        .as_deref()
        .map(read_maintainers)
        .transpose()?;
    let now = match &args.now {
        Some(t) => parse_time(t)?,
        None => chrono::Utc::now().timestamp(),
    };
    let store = Store::open_read_only(&config.database)?;
    let snapshot = site::load(&store, config, policy, maintainers, now)?;
    let written = site::publish(&args.html, &snapshot)?;
    writeln!(
        out,
        "wrote {} of {} files, the others unchanged ({} failing packages) to {}",
        written.write.written,
        written.files,
        written.failing,
        args.html.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// After a cycle: write the configured site, if any. A failure is logged
/// and never fails the cycle.
pub fn after_cycle(config: &Config, now: i64, out: &mut dyn Write) -> Result<()> {
    let Some(dir) = &config.report.html_dir else {
        return Ok(());
    };
    let written = (|| -> Result<site::Written> {
        let policy = load_policy(config, None)?;
        let store = Store::open_read_only(&config.database)?;
        let snapshot = site::load(&store, config, policy, None, now)?;
        Ok(site::publish(dir, &snapshot)?)
    })();
    match written {
        Ok(w) => writeln!(
            out,
            "report: wrote {} of {} files, the others unchanged ({} failing packages) to {}",
            w.write.written,
            w.files,
            w.failing,
            dir.display()
        )?,
        Err(e) => tracing::error!(
            dir = %dir.display(),
            error = format!("{e:#}"),
            "could not write the HTML report; the cycle itself is unaffected"
        ),
    }
    Ok(())
}
