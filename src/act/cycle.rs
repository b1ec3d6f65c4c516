//! One act cycle as the binary and the daemon run it: plan from the store,
//! then act (or, in dry-run, describe), then the weekly digest issue.

use std::collections::BTreeMap;

use crate::config::{Config, GitHubConfig, JobsetRef};
use crate::digest::{self, DigestInput, Week};
use crate::forge::{
    Forge, GitHub, GitHubSettings, Memo, NewIssue, PullRequest, Secret, SimulatedClock, Sleeper,
    State, user_agent,
};
use crate::policy::{self, BranchPull, BranchPullState, Facts, Ledger, Policy};
use crate::store::{LeaseHeld, LeaseHolder, PlanScope, Store};

use super::{
    ActError, ActReport, ActSettings, Actor, GitPublisher, Publisher, describe, failing_attrs,
    opt_outs, render,
};

/// What a cycle did.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing was sent; this is what would have been.
    DryRun(DryRun),
    Acted(ActReport),
}

/// A dry run: the plan's actions, and what acting on them would send.
#[derive(Debug)]
pub struct DryRun {
    /// Actions the plan holds (sent or not, holds included).
    pub planned: usize,
    /// What would be sent, for people (see [`describe`]).
    pub text: String,
}

/// The act settings of a configuration.
pub fn settings(config: &Config) -> ActSettings {
    let github = config.github.as_ref();
    ActSettings {
        repo: config.repository().to_owned(),
        base_branch: github.map_or("master".into(), |g| g.base_branch.clone()),
        fork_owner: github
            .and_then(|g| g.fork.split('/').next().map(str::to_owned))
            .unwrap_or_else(|| "your-bot".into()),
        label: config.act.label.clone(),
        mention: config.act.mention.clone(),
        committers: config.act.committers.clone(),
    }
}

/// The publisher of a configuration, when it names a nixpkgs checkout.
pub fn publisher(config: &Config, token: Option<&Secret>) -> Option<GitPublisher> {
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

/// How GitHub can reach whoever runs the bot: `[github] contact`, else the
/// fork owner's GitHub page.
fn contact(github: &GitHubConfig) -> String {
    github.contact.clone().unwrap_or_else(|| {
        format!(
            "https://github.com/{}",
            github.fork.split('/').next().unwrap_or_default()
        )
    })
}

/// The weekly digest of `week` as of `now`.
pub fn digest_text(
    policy: &Policy,
    facts: &Facts,
    ledger: &Ledger,
    now: i64,
    week: Week,
) -> String {
    let assessment = policy::assess(policy, facts, ledger, now);
    let plan = policy::plan_from(policy, facts, ledger, &assessment);
    digest::render(&DigestInput {
        policy,
        facts,
        assessment: &assessment,
        plan: &plan,
        week,
    })
}

/// Failing attributes and those with open work in the ledger.
fn attrs_of_interest(
    facts: &Facts,
    policy: &Policy,
    store: &Store,
) -> Result<Vec<String>, ActError> {
    let mut attrs = failing_attrs(facts, policy);
    attrs.extend(
        store
            .ledger()?
            .actions
            .into_iter()
            .filter(|r| {
                matches!(
                    r.state,
                    crate::policy::RecordState::Open | crate::policy::RecordState::Done
                )
            })
            .filter_map(|r| r.attr),
    );
    attrs.sort();
    attrs.dedup();
    Ok(attrs)
}

/// [`run`] acting, as the demo and the year-long test run it: the GitHub
/// client's waits are simulated on their story's `clock` (which the GitHub
/// look-alike reads too) instead of slept.
pub fn run_on_clock(
    config: &Config,
    policy: &Policy,
    store: &Store,
    now: i64,
    clock: &SimulatedClock,
) -> Result<Outcome, ActError> {
    let mut facts = plan_facts(config, policy, store, now)?;
    run(
        config,
        policy,
        store,
        &mut facts,
        now,
        false,
        false,
        &|| {},
        Some(clock),
    )
}

/// What a plan as of `now` reads of the store (see [`Store::plan_facts`]).
pub fn plan_facts(
    config: &Config,
    policy: &Policy,
    store: &Store,
    now: i64,
) -> Result<Facts, ActError> {
    Ok(store.plan_facts(
        &config.hydra.url,
        config.repository(),
        PlanScope::new(now, &policy.streak),
    )?)
}

/// Plan and act once on `facts`, read with [`plan_facts`]. Blocking: it
/// runs its own single-threaded runtime (the store is not `Sync`), so async
/// callers run it on a blocking thread. `progress` is called after each
/// outward step (the service's watchdog). With a `clock`, the GitHub
/// client's waits are simulated on it instead of slept (see
/// [`run_on_clock`]).
///
/// The caller keeps the facts: the daemon assesses them again after acting,
/// with the ledger as acting left it, instead of reading the history a
/// second time. Acting adds what it learns to them (maintainers, branches'
/// pull requests), and of what a plan reads in the store it writes only the
/// ledger (actions, opt-outs).
#[allow(clippy::too_many_arguments)]
pub fn run(
    config: &Config,
    policy: &Policy,
    store: &Store,
    facts: &mut Facts,
    now: i64,
    dry_run: bool,
    full_texts: bool,
    progress: &(dyn Fn() + Sync),
    clock: Option<&SimulatedClock>,
) -> Result<Outcome, ActError> {
    let settings = settings(config);
    if dry_run || !config.act.enabled {
        if let Some(publisher) = publisher(config, None) {
            // A dry run still describes what would be sent; without the
            // checkout it says so and mentions nobody.
            match publisher.maintainers(&failing_attrs(facts, policy)) {
                Ok(maintainers) => facts.maintainers = maintainers,
                Err(e) => tracing::warn!(
                    error = %crate::error_chain(&e),
                    "cannot read the nixpkgs checkout: the dry run mentions no maintainer"
                ),
            }
        }
        let plan = policy::plan(policy, facts, &store.ledger()?, now);
        return Ok(Outcome::DryRun(DryRun {
            planned: plan.actions.len(),
            text: describe(&plan, &settings, full_texts),
        }));
    }
    let github = config.github.as_ref().ok_or(ActError::NoGitHub)?;
    let lease = Lease::take(store)?;
    let token = Secret::from_file(
        &github.token_path(std::env::var_os("CREDENTIALS_DIRECTORY").as_deref()),
    )?;
    let publisher = publisher(config, Some(&token)).ok_or(ActError::NoCheckout)?;
    let mut report = ActReport::default();
    let survey = publisher.survey(
        &attrs_of_interest(facts, policy, store)?,
        &policy.opt_out.marker,
    )?;
    facts.maintainers = survey.maintainers;
    opt_outs::follow_markers(
        store,
        &policy.opt_out.marker,
        &survey.files,
        now,
        &mut report,
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ActError::Runtime)?;
    runtime.block_on(async {
        let mut forge_settings =
            GitHubSettings::new(github.api_url.clone(), &github.repo, token.clone());
        forge_settings.user_agent = user_agent(Some(&contact(github)));
        forge_settings.content_budget = github.content_budget;
        if let Some(clock) = clock {
            forge_settings.sleeper = Sleeper::simulated(clock);
        }
        let memo = store
            .forge_memo(&github.repo)?
            .map_or_else(Memo::default, |text| Memo::from_json(&text));
        let forge = GitHub::new(forge_settings)?.with_memo(memo);
        let acted = act_with(
            &forge,
            github,
            facts,
            policy,
            store,
            &settings,
            &publisher,
            &lease,
            now,
            progress,
            &mut report,
        )
        .await;
        // Whatever happened, what GitHub told us stays true: the next cycle
        // asks only what changed since.
        store.save_forge_memo(&github.repo, &forge.take_memo().to_json(), wall_clock())?;
        acted
    })?;
    Ok(Outcome::Acted(report))
}

/// The acting part of a cycle, on a client built for it.
#[allow(clippy::too_many_arguments)]
async fn act_with(
    forge: &GitHub,
    github: &GitHubConfig,
    facts: &mut Facts,
    policy: &Policy,
    store: &Store,
    settings: &ActSettings,
    publisher: &GitPublisher,
    lease: &Lease<'_>,
    now: i64,
    progress: &(dyn Fn() + Sync),
    report: &mut ActReport,
) -> Result<(), ActError> {
    let permission = forge.permission().await?;
    report.did(format!(
        "the token's role on {} is {}: {}",
        github.repo,
        permission.as_str(),
        if permission.may_label() {
            "labels are applied"
        } else {
            "labels are left off (they need triage or more)"
        }
    ));
    let actor = Actor {
        forge,
        publisher,
        store,
        settings,
        policy,
        progress,
    };
    actor.prepare(facts, now, report).await?;
    facts.branch_pulls = branch_pulls(forge, policy, facts).await;
    lease.renew()?;
    let ledger = store.ledger()?;
    let plan = policy::plan(policy, facts, &ledger, now);
    actor.execute(&plan, now, report).await?;
    lease.renew()?;
    let week = Week::containing(now);
    let text = digest_text(policy, facts, &store.ledger()?, now, week);
    post_digest(forge, settings, week, &text, report).await?;
    Ok(())
}

/// The newest pull request of each pre-merge branch that is ingested and
/// warned about, for the warnings and the digest to say how close the branch
/// is to landing. The Hydra jobset's name is the branch's name, as on
/// hydra.nixos.org (`nixpkgs:staging-next` builds `staging-next`). One
/// conditional request per branch and cycle; a branch GitHub cannot tell
/// about is shown without it (it decides nothing).
async fn branch_pulls<F: Forge>(
    forge: &F,
    policy: &Policy,
    facts: &Facts,
) -> BTreeMap<JobsetRef, BranchPull> {
    let ew = &policy.early_warning;
    let mut pulls = BTreeMap::new();
    let ingested = facts.jobsets.iter().map(|j| &j.jobset);
    for branch in ingested.filter(|j| ew.is_branch(j) && ew.branch_off(j).is_none()) {
        match forge.newest_pull_from_branch(&branch.jobset).await {
            Ok(Some(pull)) => {
                pulls.insert(branch.clone(), branch_pull(pull));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                branch = %branch,
                error = %crate::error_chain(&e),
                "cannot learn the branch's pull request; its warnings go without it"
            ),
        }
    }
    pulls
}

fn branch_pull(pull: PullRequest) -> BranchPull {
    BranchPull {
        number: pull.number,
        title: pull.title,
        url: pull.url,
        base: pull.base,
        state: match (pull.state, pull.merged) {
            (_, true) => BranchPullState::Merged,
            (State::Open, false) => BranchPullState::Open,
            (State::Closed, false) => BranchPullState::Closed,
        },
    }
}

/// How long the actor lease lasts without renewal. A cycle renews it after
/// reconciling and after acting; one step (a publication, rate-limit waits
/// of at most five minutes each) takes far less.
const LEASE_SECS: i64 = 3600;

/// The actor lease for this process, given back when dropped (a process
/// that dies keeps it until it expires, which is what a crash needs: its
/// intents are reconciled by the next holder).
struct Lease<'s> {
    store: &'s Store,
    holder: LeaseHolder,
}

impl<'s> Lease<'s> {
    fn take(store: &'s Store) -> Result<Lease<'s>, ActError> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        let pid = std::process::id();
        let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
        let lease = Lease {
            store,
            holder: LeaseHolder {
                name: format!("{host}, pid {pid}: {command}"),
                host,
                pid,
            },
        };
        match lease.try_renew()? {
            Ok(()) => {}
            // Its holder died on this host (a crash, a SIGKILL): nobody is
            // acting, and waiting for the expiry would only delay the
            // reconciliation of what it left.
            Err(held) if held.host == lease.holder.host && !process_alive(held.pid) => {
                tracing::warn!(holder = %held.holder, "taking over the actor lease of a process that is gone");
                store.release_lease(&held.holder)?;
                lease.renew()?;
            }
            Err(held) => return Err(busy(held)),
        }
        Ok(lease)
    }

    fn try_renew(&self) -> Result<Result<(), LeaseHeld>, ActError> {
        Ok(self
            .store
            .acquire_lease(&self.holder, wall_clock(), LEASE_SECS)?)
    }

    fn renew(&self) -> Result<(), ActError> {
        self.try_renew()?.map_err(busy)
    }
}

fn busy(held: LeaseHeld) -> ActError {
    ActError::Busy {
        holder: held.holder,
        until: held.expires_at,
    }
}

/// Whether a process with this id runs on this host.
fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.store.release_lease(&self.holder.name) {
            tracing::warn!(error = %crate::error_chain(&e), "could not give the actor lease back; it expires by itself");
        }
    }
}

/// Now, by the wall clock: a lease protects real processes, whatever clock
/// (`--now`) the policy is replayed at.
fn wall_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Open the digest issue of `week` unless it exists, and close earlier
/// weeks' digests with a link to it: exactly one per week.
pub async fn post_digest<F: Forge>(
    forge: &F,
    settings: &ActSettings,
    week: Week,
    text: &str,
    report: &mut ActReport,
) -> Result<(), ActError> {
    let bot = forge.whoami().await?;
    let own = forge.issues_by(&bot).await?;
    let key = week.to_string();
    let this_week = own
        .iter()
        .find(|i| render::has_marker(&i.body, "digest", &key))
        .map(|i| i.number);
    let number = match this_week {
        Some(number) => number,
        None => {
            let body = format!("{}\n{text}", render::marker("digest", &key));
            let issue = forge
                .create_issue(&NewIssue {
                    title: format!("hydra-sentinel weekly digest {key}"),
                    body,
                    labels: vec![settings.label.clone()],
                })
                .await?;
            report.did(format!("opened the digest of {key} as #{}", issue.number));
            issue.number
        }
    };
    for old in own.iter().filter(|i| {
        i.state == State::Open
            && i.number != number
            && i.body.contains("<!-- hydra-sentinel:digest:")
    }) {
        let said = forge.comments(old.number).await?.iter().any(|c| {
            c.author.eq_ignore_ascii_case(&bot) && render::has_marker(&c.body, "superseded", &key)
        });
        if !said {
            let text = format!(
                "{}\nSuperseded by #{number}, the digest of {key}.",
                render::marker("superseded", &key)
            );
            forge.comment(old.number, &text).await?;
        }
        forge
            .edit_issue(old.number, None, Some(State::Closed))
            .await?;
        report.did(format!("closed the previous digest #{}", old.number));
    }
    Ok(())
}
