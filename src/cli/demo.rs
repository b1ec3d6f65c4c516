//! `hydra-sentinel demo`: the whole pipeline so far, offline.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use hydra_sentinel::config::Config;
use hydra_sentinel::sim::{FakeHydra, SimHydra, SimSpec};
use hydra_sentinel::store::Store;

pub fn run(database: Option<&Path>, out: &mut dyn Write) -> Result<ExitCode> {
    let spec = SimSpec::demo();
    let sim = SimHydra::generate(&spec);
    writeln!(
        out,
        "Generated {} evals of {}:{} with {} builds; planted:",
        sim.evals.len(),
        sim.project,
        sim.jobset,
        sim.builds.len()
    )?;
    for (attr, what) in &sim.scenarios {
        writeln!(out, "  {attr:<34} {what}")?;
    }
    let scenario_attrs: Vec<String> = sim
        .scenarios
        .keys()
        .filter(|a| !a.starts_with('('))
        .cloned()
        .collect();
    let hydra = FakeHydra::start(sim).context("starting the Hydra look-alike on loopback")?;

    let temp = tempfile::tempdir().context("creating a temporary folder")?;
    let db = match database {
        Some(path) => path.to_owned(),
        None => temp.path().join("demo.sqlite"),
    };
    let text = format!(
        "[hydra]\nurl = \"{}\"\nretry_initial_delay_ms = 50\n\n[[jobsets]]\nproject = \"{}\"\njobset = \"{}\"\n\n[database]\npath = {:?}\n",
        hydra.url(),
        spec.project,
        spec.jobset,
        db.display().to_string()
    );
    let config = Config::parse(&text, Path::new("<demo>"))?;
    writeln!(
        out,
        "\nIngesting from the Hydra look-alike at {} ...",
        hydra.url()
    )?;
    super::ingest(&config, Some(spec.evals), out)?;

    let store = Store::open_read_only(&config.database)?;
    writeln!(out, "\n$ hydra-sentinel status")?;
    write!(
        out,
        "{}",
        hydra_sentinel::report::status_text(&store.jobset_summaries()?)
    )?;
    for attr in ["grafx", "iterm-tools", "foo-gui"] {
        if scenario_attrs.iter().any(|a| a == attr) {
            writeln!(out, "\n$ hydra-sentinel history {attr}")?;
            super::history(&store, &config, attr, false, out)?;
        }
    }
    // The policy on the same data, as of an hour after the newest eval (the
    // generated history lies in the past; the clock is an argument).
    let policy = hydra_sentinel::policy::Policy::nixpkgs();
    let facts = store.policy_facts(&config.hydra.url, config.repository())?;
    let ledger = store.ledger()?;
    let newest = facts
        .jobsets
        .iter()
        .filter_map(|j| j.evals.last())
        .map(|e| e.timestamp)
        .max()
        .context("the demo ingested no eval")?;
    let now = newest + 3600;
    let at = hydra_sentinel::report::time(now);
    writeln!(
        out,
        "\n$ hydra-sentinel plan --now {at}   (dry run, built-in policy)"
    )?;
    let plan = hydra_sentinel::policy::plan(&policy, &facts, &ledger, now);
    write!(out, "{}", plan.to_text())?;
    writeln!(
        out,
        "\n$ hydra-sentinel act --now {at}   ([act] enabled = false: nothing is sent)"
    )?;
    let settings = hydra_sentinel::act::cycle::settings(&config);
    write!(
        out,
        "{}",
        hydra_sentinel::act::describe(&plan, &settings, false)
    )?;
    for attr in ["libfoo", "foo-gui"] {
        if let Some(text) = hydra_sentinel::policy::explain(&policy, &facts, &ledger, attr, now) {
            writeln!(out, "\n$ hydra-sentinel explain {attr} --now {at}")?;
            write!(out, "{text}")?;
        }
    }
    let first = facts
        .jobsets
        .iter()
        .filter_map(|j| j.evals.first())
        .map(|e| e.timestamp)
        .min()
        .unwrap_or(newest);
    writeln!(
        out,
        "\n$ hydra-sentinel backtest   (the built-in policy over the whole history)"
    )?;
    write!(
        out,
        "{}",
        hydra_sentinel::policy::backtest(&policy, &facts, &ledger.opt_outs, first, newest)
            .to_text()
    )?;
    let week = hydra_sentinel::digest::Week::containing(now);
    writeln!(out, "\n$ hydra-sentinel digest --week {week} --now {at}")?;
    write!(
        out,
        "{}",
        super::policy::render_digest(&policy, &facts, &ledger, now, week)
    )?;

    match database {
        Some(path) => writeln!(out, "\nThe demo database is kept at {}.", path.display())?,
        None => writeln!(
            out,
            "\nPass --database PATH to keep the demo database and explore it with status and history."
        )?,
    }
    Ok(ExitCode::SUCCESS)
}
