//! `doctor`: whether this setup can act, and what to fix if not.
//!
//! Owns: the checks an operator runs before enabling `[act]` and after
//! changing the token: the configuration, the token (present, its kind, a
//! classic token's scopes, whose it is), the fork (it exists, is a fork of
//! the repository, its default branch, push access), the token's role on
//! the repository, whom `[act] mention` reaches, Hydra, and the nixpkgs
//! checkout. Each line says `ok`, `note` or `problem` (with how to fix it);
//! any problem makes the exit status non-zero.
//!
//! Must never: write anything anywhere (GitHub is only read), or print the
//! token.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use hydra_sentinel::config::{Config, GitHubConfig};
use hydra_sentinel::forge::{ForgeError, GitHub, GitHubSettings, Probe, Secret, user_agent};
use hydra_sentinel::hydra::HydraClient;
use hydra_sentinel::settings::Settings;

/// What the checks found, line by line.
struct Findings<'w> {
    out: &'w mut dyn Write,
    problems: usize,
}

impl Findings<'_> {
    fn ok(&mut self, what: String) -> Result<()> {
        writeln!(self.out, "ok: {what}")?;
        Ok(())
    }

    fn note(&mut self, what: String) -> Result<()> {
        writeln!(self.out, "note: {what}")?;
        Ok(())
    }

    fn problem(&mut self, what: String, fix: String) -> Result<()> {
        self.problems += 1;
        writeln!(self.out, "problem: {what}\n  fix: {fix}")?;
        Ok(())
    }
}

/// The kind of a GitHub token, by the prefix GitHub gives each kind.
fn token_kind(token: &Secret) -> &'static str {
    let text = token.kind_prefix();
    match text {
        "ghp_" => "a classic personal access token",
        "github_pat_" => "a fine-grained personal access token",
        "gho_" => "an OAuth token",
        "ghu_" | "ghs_" => "a GitHub App token",
        _ => "a token of unknown kind",
    }
}

pub fn doctor(config_path: Option<&Path>, out: &mut dyn Write) -> Result<ExitCode> {
    let mut findings = Findings { out, problems: 0 };
    let settings = match Settings::load(config_path) {
        Ok(settings) => settings,
        Err(e) => {
            findings.problem(
                format!(
                    "the configuration cannot be read: {}",
                    hydra_sentinel::error_chain(&e)
                ),
                "correct it (`hydra-sentinel config check FILE` says where)".into(),
            )?;
            return Ok(ExitCode::FAILURE);
        }
    };
    let config = &settings.config;
    findings.ok(match config_path {
        Some(path) => format!("the configuration {} and its policy", path.display()),
        None => "the embedded default configuration".into(),
    })?;
    if !config.act.enabled {
        findings.note("[act] enabled is false: cycles only say what they would send".into())?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match &config.github {
        None => findings.problem(
            "there is no [github] section: nothing can be acted on".into(),
            "add [github] api_url, repo, fork, push_url and token_file".into(),
        )?,
        Some(github) => runtime.block_on(check_github(config, github, &mut findings))?,
    }
    runtime.block_on(check_hydra(config, &mut findings))?;
    check_checkout(config, &mut findings)?;
    if findings.problems == 0 {
        findings.ok("nothing to fix".into())?;
        Ok(ExitCode::SUCCESS)
    } else {
        writeln!(
            findings.out,
            "{} problem{} to fix",
            findings.problems,
            if findings.problems == 1 { "" } else { "s" }
        )?;
        Ok(ExitCode::FAILURE)
    }
}

async fn check_github(
    config: &Config,
    github: &GitHubConfig,
    findings: &mut Findings<'_>,
) -> Result<()> {
    let path = github.token_path(std::env::var_os("CREDENTIALS_DIRECTORY").as_deref());
    let token = match Secret::from_file(&path) {
        Ok(token) => token,
        Err(e) => {
            return findings.problem(
                hydra_sentinel::error_chain(&e),
                format!(
                    "write the bot's token to {} (mode 0600), or load it as a systemd credential of that name",
                    path.display()
                ),
            );
        }
    };
    let kind = token_kind(&token);
    let mut settings = GitHubSettings::new(github.api_url.clone(), &github.repo, token);
    settings.user_agent = user_agent(github.contact.as_deref());
    // A doctor answers now or says why not.
    settings.rate_limit_attempts = 1;
    settings.read_retries = 1;
    settings.max_rate_limit_wait = Duration::from_secs(10);
    let client = GitHub::new(settings)?;
    let probe = match client.probe(&github.fork, &config.act.mention).await {
        Ok(probe) => probe,
        Err(ForgeError::Status {
            status: 401,
            message,
            ..
        }) => {
            return findings.problem(
                format!("GitHub refuses the token in {} ({message})", path.display()),
                "make a new token for the bot's account and write it there".into(),
            );
        }
        Err(e) => {
            return findings.problem(
                format!(
                    "cannot ask GitHub at {}: {}",
                    github.api_url,
                    hydra_sentinel::error_chain(&e)
                ),
                "check [github] api_url and repo, and the network".into(),
            );
        }
    };
    report_probe(config, github, kind, &probe, findings)
}

fn report_probe(
    config: &Config,
    github: &GitHubConfig,
    kind: &str,
    probe: &Probe,
    findings: &mut Findings<'_>,
) -> Result<()> {
    let login = &probe.login;
    findings.ok(format!("the token is {kind} of {login}"))?;
    match &probe.scopes {
        Some(scopes) if !scopes.iter().any(|s| s == "public_repo" || s == "repo") => {
            findings.problem(
                format!(
                    "the token's scopes ({}) do not include public_repo: it cannot open issues and pull requests",
                    if scopes.is_empty() { "none".into() } else { scopes.join(", ") }
                ),
                "make a classic token with the public_repo scope".into(),
            )?
        }
        Some(scopes) => findings.ok(format!("its scopes: {}", scopes.join(", ")))?,
        None => findings.note(format!(
            "GitHub names no scopes for {kind}: a fine-grained token writes only to its owner's repositories, so it needs the approval of {}'s owner",
            github.repo
        ))?,
    }
    findings.ok(format!(
        "its role on {} is {}: {}",
        github.repo,
        probe.permission.as_str(),
        if probe.permission.may_label() {
            "labels are applied"
        } else {
            "labels are left off (they need triage)"
        }
    ))?;
    match &probe.fork {
        Err(reason) => findings.problem(
            reason.clone(),
            format!(
                "fork {} as {login} on GitHub, or set [github] fork to the bot's fork",
                github.repo
            ),
        )?,
        Ok(fork) => {
            match &fork.parent {
                Some(parent) if parent.eq_ignore_ascii_case(&github.repo) => {
                    findings.ok(format!(
                        "{} is a fork of {}; its default branch is {}",
                        github.fork, github.repo, fork.default_branch
                    ))?
                }
                other => findings.problem(
                    format!(
                        "{} is not a fork of {} ({})",
                        github.fork,
                        github.repo,
                        other
                            .as_deref()
                            .map_or("not a fork".into(), |p| format!("a fork of {p}"))
                    ),
                    format!("set [github] fork to the bot's fork of {}", github.repo),
                )?,
            }
            if fork.push {
                findings.ok(format!("the token may push to {}", github.fork))?;
            } else {
                findings.problem(
                    format!("the token may not push to {}", github.fork),
                    format!(
                        "use a token of {}'s owner, with write access to it",
                        github.fork
                    ),
                )?;
            }
        }
    }
    let mention = config.act.mention.trim_start_matches('@');
    match &probe.mentioned {
        Some(account) if account.eq_ignore_ascii_case(login) => {
            findings.ok(format!("@{mention} is the bot: mentions reach it"))?
        }
        Some(account) => findings.problem(
            format!(
                "@{mention} is another account ({account}): every notice would ping it, and maintainers would address their commands to it"
            ),
            format!("set [act] mention to \"@{login}\""),
        )?,
        None => findings.note(format!(
            "no account is called {mention}: commands to @{mention} are read, but mentions notify nobody"
        ))?,
    }
    Ok(())
}

async fn check_hydra(config: &Config, findings: &mut Findings<'_>) -> Result<()> {
    let mut settings = config.hydra.clone();
    settings.retries = 1;
    settings.retry_initial_delay = Duration::from_millis(100);
    settings.read_timeout = Duration::from_secs(30);
    let Some(jobset) = config.jobsets.first() else {
        return findings.problem(
            "no jobset is configured".into(),
            "add a [[jobsets]] entry".into(),
        );
    };
    let client = HydraClient::new(&settings)?;
    let url = client.evals_url(&jobset.project, &jobset.jobset);
    match client.evals_page(&url).await {
        Ok(_) => findings.ok(format!("Hydra answers at {}", config.hydra.url)),
        Err(e) => findings.problem(
            format!(
                "Hydra does not answer for {}:{} at {}: {}",
                jobset.project,
                jobset.jobset,
                config.hydra.url,
                hydra_sentinel::error_chain(&e)
            ),
            "check [hydra] url and the jobsets, and the network".into(),
        ),
    }
}

fn check_checkout(config: &Config, findings: &mut Findings<'_>) -> Result<()> {
    let Some(checkout) = &config.nixpkgs_checkout else {
        return findings.problem(
            "there is no [nixpkgs] checkout: nothing can be marked, and nobody mentioned".into(),
            "clone nixpkgs for the bot and set [nixpkgs] checkout to it".into(),
        );
    };
    let base = config
        .github
        .as_ref()
        .map_or("master", |g| g.base_branch.as_str());
    let found = std::process::Command::new("git")
        .arg("-C")
        .arg(checkout)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("refs/remotes/origin/{base}"))
        .output();
    match found {
        Ok(output) if output.status.success() => findings.ok(format!(
            "the nixpkgs checkout {} has origin/{base}",
            checkout.display()
        )),
        _ => findings.problem(
            format!(
                "{} is not a clone of nixpkgs with origin/{base}",
                checkout.display()
            ),
            format!(
                "git clone https://github.com/NixOS/nixpkgs {}",
                checkout.display()
            ),
        ),
    }
}
