//! `once` and `act`: one cycle of ingest, plan and act, or only plan and act.
//! Dry-run (print what would be sent) unless `[act] enabled = true`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use hydra_sentinel::act::{self, ActReport, ActSettings, Actor, GitPublisher, Publisher};
use hydra_sentinel::config::Config;
use hydra_sentinel::forge::{GitHub, GitHubSettings, Secret};
use hydra_sentinel::policy;
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
    /// Print what would be sent (the default until `[act] enabled = true`).
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
    cycle(config, at, args.dry_run, out)
}

pub fn act(config: &Config, args: &ActArgs, out: &mut dyn Write) -> Result<ExitCode> {
    cycle(config, now(args.now.as_deref())?, args.dry_run, out)
}

fn settings(config: &Config) -> ActSettings {
    let github = config.github.as_ref();
    ActSettings {
        repo: github.map_or("NixOS/nixpkgs".into(), |g| g.repo.clone()),
        base_branch: github.map_or("master".into(), |g| g.base_branch.clone()),
        fork_owner: github
            .and_then(|g| g.fork.split('/').next().map(str::to_owned))
            .unwrap_or_else(|| "your-bot".into()),
        label: config.act.label.clone(),
        mention: config.act.mention.clone(),
        committers: config.act.committers.clone(),
    }
}

fn publisher(config: &Config, token: Option<&Secret>) -> Option<GitPublisher> {
    let checkout = config.nixpkgs_checkout.clone()?;
    let github = config.github.as_ref();
    Some(GitPublisher {
        checkout,
        upstream: "origin".into(),
        base_branch: github.map_or("master".into(), |g| g.base_branch.clone()),
        push_url: github.map(|g| g.push_url.clone()).unwrap_or_default(),
        token: token.map(Secret::git_token),
        attic: config.act.attic.clone(),
        author_name: config.act.author_name.clone(),
        author_email: config.act.author_email.clone(),
    })
}

fn cycle(config: &Config, now: i64, dry_run: bool, out: &mut dyn Write) -> Result<ExitCode> {
    let policy = load_policy(config, None)?;
    let store = Store::open(&config.database)?;
    let mut facts = store.policy_facts(&config.hydra.url)?;
    let settings = settings(config);
    let acting = config.act.enabled && !dry_run;
    if !acting {
        if let Some(publisher) = publisher(config, None) {
            facts.maintainers = publisher.maintainers(&act::failing_attrs(&facts, &policy));
        }
        let plan = policy::plan(&policy, &facts, &store.ledger()?, now);
        writeln!(
            out,
            "Dry run{}: nothing is sent. Acting on this plan would:",
            if config.act.enabled {
                ""
            } else {
                " ([act] enabled = false)"
            }
        )?;
        write!(out, "{}", act::describe(&plan, &settings, dry_run))?;
        return Ok(ExitCode::SUCCESS);
    }
    let github = config
        .github
        .as_ref()
        .context("acting needs a [github] section")?;
    let token = Secret::from_file(&github.token_file)?;
    let publisher = publisher(config, Some(&token)).context("acting needs [nixpkgs] checkout")?;
    facts.maintainers = publisher.maintainers(&act::failing_attrs(&facts, &policy));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut report = ActReport::default();
    let result: Result<()> = runtime.block_on(async {
        let forge = GitHub::new(GitHubSettings::new(
            github.api_url.clone(),
            &github.repo,
            token.clone(),
        ))?;
        let actor = Actor {
            forge: &forge,
            publisher: &publisher,
            store: &store,
            settings: &settings,
            policy: &policy,
        };
        actor.prepare(&facts, now, &mut report).await?;
        let plan = policy::plan(&policy, &facts, &store.ledger()?, now);
        actor.execute(&plan, now, &mut report).await?;
        Ok(())
    });
    for line in &report.lines {
        writeln!(out, "{line}")?;
    }
    for line in &report.errors {
        writeln!(out, "error: {line}")?;
    }
    result?;
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
