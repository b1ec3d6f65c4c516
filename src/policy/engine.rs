//! The engine: `(facts, ledger, policy, now) → assessment → plan`.
//!
//! Pure: it reads only its arguments. Every map is ordered, so the same
//! inputs give the same plan, byte for byte.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::config::{CircuitBreaker, EffectiveLadder, GroupBy, Period, Policy};
use super::early_warning::mentions;
use super::facts::{Facts, FailureOrigin, JobFacts, JobsetFacts};
use super::ledger::{ActionKind, ActionRecord, Ledger, OptOut, OptOutKind, RecordState};
use super::plan::{
    Action, Deferred, EvalRef, Evidence, JobEvidence, LastGood, NextStep, Plan, ScheduledStep,
    WindowEvidence, compare_url, platforms_in_words,
};
use crate::config::JobsetRef;
use crate::format::{HydraLinks, time};
use crate::history::{EvalPoint, StatusClass};
use crate::history::{JobView, Signal, StreakView, view};

const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;

/// A victim's root, if one is evident, or the candidates.
/// A victim's root attribute, the candidates when there is no single one,
/// and the root build when Hydra's build page named it.
type RootGuess = (Option<String>, Vec<String>, Option<i64>);
/// Due steps of one attribute that become one action: kind, step, PR.
type DueKey = (ActionKind, Option<String>, Option<u64>);
/// A step of a package as a whole (its retirement), not of one of its
/// jobs: what, which step, when.
type AttrStep = (ActionKind, Option<&'static str>, i64);

/// What the rules say about one job now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Builds (or its newest signal is a success).
    Ok,
    /// Only noise or pending results so far.
    NoSignal,
    /// Missing from the newest eval: nothing is done to a job that is gone.
    Gone,
    /// In a jobset the policy only watches (or the same job in an earlier
    /// listed jobset decides).
    Watched,
    /// Alternates between building and failing: not a streak.
    Flaky { flips: u32 },
    /// "Dependency failed": never acted on; charged to its root.
    Victim {
        root: Option<String>,
        candidates: Vec<String>,
        /// The build Hydra's page named ("propagated from build N"); `None`
        /// when the root was guessed from a failure in the same eval.
        root_build: Option<i64>,
    },
    /// Failed with a code Hydra may have copied from a dependency (7, 8,
    /// 10, 11, ...) and its build page is not read yet: not acted on until
    /// it says whose failure it is.
    AwaitingCause,
    /// Failing, but not long enough to be a streak yet.
    NotYetReal { evals: u32, derivations: u32 },
    /// An override says to leave it alone.
    Skipped { overrides: Vec<usize> },
    /// The ladder applies.
    Ladder(LadderState),
}

/// Where a real streak stands on the ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LadderState {
    /// The streak's start, moved later by snoozes (a snooze pauses the clock).
    pub clock_start: i64,
    pub notified_at: Option<i64>,
    /// When a mark may come, if known (after the notice).
    pub mark_due: Option<i64>,
    /// Reminder steps already sent.
    pub reminded: Vec<String>,
    /// The mark for this failure, if one was proposed.
    pub mark: Option<(RecordState, Option<u64>)>,
    /// An escalation (protected package) was sent.
    pub escalated: bool,
    /// Waiting for a failure on a rebuilt derivation before marking.
    pub needs_derivations: Option<u32>,
}

/// One action the ladder says is due, before holds and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub kind: ActionKind,
    pub step: Option<String>,
    pub system: Option<String>,
    pub pr: Option<u64>,
    pub ledger: Vec<i64>,
}

/// One job of an attribute.
#[derive(Debug, Clone)]
pub struct JobAssessment {
    pub jobset: JobsetRef,
    pub system: String,
    pub hydra_job: String,
    pub present: bool,
    pub latest: StatusClass,
    pub latest_build: i64,
    /// The newest signal's class and its evidence.
    pub streak_class: Option<StatusClass>,
    pub evidence: Option<JobEvidence>,
    pub flaky: bool,
    pub ladder: EffectiveLadder,
    pub rule: Rule,
    pub next: Option<NextStep>,
    /// The ladder's steps still to come for this job if it keeps failing.
    pub schedule: Vec<ScheduledStep>,
    /// For "dependency failed" in any jobset: the root it is charged to,
    /// when one is evident (what a victim's early warning names).
    pub charged_to: Option<String>,
    /// Eval index the streak began at, for grouping.
    since_index: Option<u32>,
    since_ts: Option<i64>,
}

/// Where an attribute stands.
#[derive(Debug, Clone)]
pub struct AttrAssessment {
    pub attr: String,
    pub protected: bool,
    /// A marker or label in force.
    pub opted_out: Option<OptOut>,
    /// A snooze in force, and until when.
    pub snoozed_until: Option<i64>,
    pub maintainers: Vec<String>,
    pub jobs: Vec<JobAssessment>,
    /// Its latest merged mark: when, on which systems.
    pub marked: Option<ActionRecord>,
    /// Jobs failing with "dependency failed" charged to it.
    pub victims: Vec<String>,
    pub due: Vec<Due>,
    /// The earliest upcoming step if nothing changes.
    pub next: Option<NextStep>,
    /// Every step still to come if nothing changes, earliest first, the
    /// platforms of one step on one day together.
    pub schedule: Vec<ScheduledStep>,
    /// Edits of this failure the nixpkgs editor refused (the newest first):
    /// they have to be made by hand.
    pub refused: Vec<ActionRecord>,
    /// The platforms it is present on without failing (built, or not built
    /// yet) in a jobset the policy acts on, besides those of `jobs`
    /// (sorted): no step covers them, so none of its steps covers "every
    /// platform".
    pub builds_elsewhere: Vec<String>,
}

/// A mass breakage: one eval window in which many jobs of a jobset turned
/// from ok to failing and still fail.
#[derive(Debug, Clone)]
pub struct Hold {
    pub jobset: JobsetRef,
    pub window: WindowEvidence,
}

/// Jobs that broke in the same transition (same last good and first bad eval).
#[derive(Debug, Clone)]
pub struct Transition {
    pub jobset: JobsetRef,
    pub good: EvalRef,
    pub bad: EvalRef,
    pub compare: Option<String>,
    /// `attr on system`, sorted.
    pub jobs: Vec<(String, String)>,
}

/// A package whose failure others depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootImpact {
    pub attr: String,
    pub systems: Vec<String>,
    /// Distinct attributes failing because of it.
    pub victims: Vec<String>,
    /// Victim jobs (attribute × system).
    pub victim_jobs: u32,
    /// Of those, the ones Hydra's build pages charge to it ("propagated
    /// from build N"); the others were charged because their failure began
    /// in the same eval as the root's.
    pub named_by_hydra: u32,
}

#[derive(Debug, Clone, Default)]
pub struct JobsetTotals {
    pub jobset: Option<JobsetRef>,
    pub newest_eval: Option<EvalRef>,
    pub jobs: u32,
    pub failing: u32,
    pub dependency_failed: u32,
    pub flaky: u32,
    /// Own failures per eval index of the jobset (all evals up to now).
    pub failing_per_eval: Vec<(i64, u32)>,
}

/// Everything the engine concluded, before turning it into actions.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub now: i64,
    pub holds: Vec<Hold>,
    /// Mass breakages of pre-merge branches: they hold only that branch's
    /// early warnings.
    pub branch_holds: Vec<Hold>,
    /// Early warnings about pre-merge branches ([`super::early_warning`]).
    pub warnings: Vec<super::early_warning::Warning>,
    pub attrs: BTreeMap<String, AttrAssessment>,
    pub roots: Vec<RootImpact>,
    pub transitions: Vec<Transition>,
    pub totals: Vec<JobsetTotals>,
}

struct Ctx<'a> {
    policy: &'a Policy,
    facts: &'a Facts,
    ledger: &'a Ledger,
    now: i64,
    links: HydraLinks,
    by_attr: HashMap<&'a str, Vec<&'a ActionRecord>>,
    /// Per jobset, its evals up to `now` as evidence (formatted once).
    refs: Vec<Vec<EvalRef>>,
}

/// What Hydra told of the past of a job's own failure that is under way in
/// the first stored eval (learned on a first install), if anything.
fn failure_origin<'f>(
    js: &'f JobsetFacts,
    job: &JobFacts,
    streak: &StreakView,
) -> Option<&'f FailureOrigin> {
    if streak.since != 0 || streak.signal != Signal::Fail {
        return None;
    }
    js.origins
        .get(&job.runs.first()?.build)
        // Hydra could not tell anything (its builds were gone): our own
        // records are all there is.
        .filter(|o| o.since_eval.is_some() || o.last_success.is_some() || o.evals_before > 0)
}

fn eval_ref(links: &HydraLinks, e: &EvalPoint) -> EvalRef {
    EvalRef {
        id: e.id,
        time: time(e.timestamp),
        revision: e.revision.clone(),
        url: links.eval(e.id),
    }
}

/// A compare link on `repository`, only between plausible git revisions
/// (they come from Hydra and end up in Markdown).
fn compare(repository: &str, good: &EvalPoint, bad: &EvalPoint) -> Option<String> {
    let plausible =
        |r: &str| (7..=64).contains(&r.len()) && r.chars().all(|c| c.is_ascii_hexdigit());
    match (&good.revision, &bad.revision) {
        (Some(g), Some(b)) if g != b && plausible(g) && plausible(b) => {
            Some(compare_url(repository, g, b))
        }
        _ => None,
    }
}

/// Assess every job and attribute that has something to say.
pub fn assess(policy: &Policy, facts: &Facts, ledger: &Ledger, now: i64) -> Assessment {
    let mut by_attr: HashMap<&str, Vec<&ActionRecord>> = HashMap::new();
    for r in &ledger.actions {
        if let Some(a) = &r.attr {
            by_attr.entry(a.as_str()).or_default().push(r);
        }
    }
    let links = HydraLinks::new(&facts.hydra_url);
    let refs = facts
        .jobsets
        .iter()
        .map(|js| {
            let n = cutoff(js, now).map_or(0, |c| c as usize + 1);
            js.evals[..n].iter().map(|e| eval_ref(&links, e)).collect()
        })
        .collect();
    let ctx = Ctx {
        policy,
        facts,
        ledger,
        now,
        links,
        by_attr,
        refs,
    };
    ctx.assess()
}

/// The plan for `now`: [`assess`], then holds, batching and limits.
pub fn plan(policy: &Policy, facts: &Facts, ledger: &Ledger, now: i64) -> Plan {
    let assessment = assess(policy, facts, ledger, now);
    plan_from(policy, facts, ledger, &assessment)
}

struct Selected<'a> {
    jobset: usize,
    job: &'a JobFacts,
    view: JobView,
}

/// What the scan of every jobset gathered, before the per-attribute
/// assessment.
#[derive(Default)]
struct Scan<'a> {
    selected: Vec<Selected<'a>>,
    /// Per jobset, by job index: whether the job is among `selected`.
    kept: Vec<Vec<bool>>,
    holds: Vec<Hold>,
    branch_holds: Vec<Hold>,
    transitions: Vec<Transition>,
    totals: Vec<JobsetTotals>,
    /// (jobset, victim attr, system) → root attr, or candidates.
    victim_roots: HashMap<(usize, &'a str, &'a str), RootGuess>,
}

/// What the jobs of one jobset showed.
struct JobsScan<'a> {
    totals: JobsetTotals,
    /// Per eval index, the jobs that turned from building to failing there.
    newly: Vec<u32>,
    newly_examples: Vec<Vec<&'a str>>,
    /// (system, since) → own-failure streaks that began there.
    roots_at: HashMap<(&'a str, u32), Vec<&'a str>>,
    /// Jobs failing because a dependency failed: since when, newest build.
    victims: Vec<(&'a JobFacts, u32, i64)>,
    /// (last good, first bad) → the jobs that broke between them.
    groups: BTreeMap<(u32, u32), Vec<(String, String)>>,
}

/// Charge victims to roots: Hydra's own word first, then a root that
/// began failing in the same eval on the same system.
fn charge_victims<'a>(
    js: &'a JobsetFacts,
    victims: Vec<(&'a JobFacts, u32, i64)>,
    roots_at: &HashMap<(&'a str, u32), Vec<&'a str>>,
) -> Vec<(&'a JobFacts, RootGuess)> {
    let by_build: HashMap<i64, &str> = if js.propagated_from.is_empty() {
        HashMap::new()
    } else {
        js.jobs
            .iter()
            .flat_map(|j| j.runs.iter().map(move |r| (r.build, j.attr.as_str())))
            .collect()
    };
    victims
        .into_iter()
        .map(|(job, since, build)| {
            let told = js
                .propagated_from
                .get(&build)
                .and_then(|root| by_build.get(root).map(|a| (a.to_string(), *root)));
            let guess = match told {
                Some((root, root_build)) => (Some(root), Vec::new(), Some(root_build)),
                None => {
                    let mut c: Vec<String> = roots_at
                        .get(&(job.system.as_str(), since))
                        .map(|v| v.iter().map(|a| a.to_string()).collect())
                        .unwrap_or_default();
                    c.sort();
                    c.dedup();
                    if c.len() == 1 {
                        (c.pop(), Vec::new(), None)
                    } else {
                        c.truncate(5);
                        (None, c, None)
                    }
                }
            };
            (job, guess)
        })
        .collect()
}

impl<'a> Ctx<'a> {
    fn assess(&self) -> Assessment {
        let mut scan = Scan::default();
        for (ji, js) in self.facts.jobsets.iter().enumerate() {
            self.scan_jobset(ji, js, &mut scan);
        }
        let building = self.building_elsewhere(&scan.selected, &scan.kept);
        let Scan {
            selected,
            kept: _,
            holds,
            branch_holds,
            mut transitions,
            totals,
            victim_roots,
        } = scan;
        let (attrs, roots) = self.per_attribute(selected, &building, &victim_roots);
        transitions.sort_by(|a, b| {
            b.bad
                .time
                .cmp(&a.bad.time)
                .then(a.jobset.to_string().cmp(&b.jobset.to_string()))
                .then(a.good.id.cmp(&b.good.id))
        });
        let warnings = super::early_warning::assess(
            self.policy,
            self.facts,
            self.ledger,
            self.now,
            &attrs,
            &branch_holds,
        );
        Assessment {
            now: self.now,
            holds,
            branch_holds,
            warnings,
            attrs,
            roots,
            transitions,
            totals,
        }
    }

    /// One jobset up to `now`: its totals, the jobs worth assessing, its
    /// victims charged to roots, a mass breakage, and its new breakages by
    /// commit range.
    fn scan_jobset(&self, ji: usize, js: &'a JobsetFacts, scan: &mut Scan<'a>) {
        let Some(cutoff) = cutoff(js, self.now) else {
            scan.totals.push(JobsetTotals {
                jobset: Some(js.jobset.clone()),
                ..JobsetTotals::default()
            });
            scan.kept.push(Vec::new());
            return;
        };
        let mut kept = vec![false; js.jobs.len()];
        let jobs = self.scan_jobs(ji, js, cutoff, &mut scan.selected, &mut kept);
        scan.kept.push(kept);
        let JobsScan {
            mut totals,
            newly,
            newly_examples,
            roots_at,
            victims,
            groups,
        } = jobs;
        totals.newest_eval = Some(eval_ref(&self.links, &js.evals[cutoff as usize]));
        for (job, guess) in charge_victims(js, victims, &roots_at) {
            scan.victim_roots
                .insert((ji, job.attr.as_str(), job.system.as_str()), guess);
        }
        // The circuit breaker: trunk holds everything, a pre-merge
        // branch only its own warnings.
        let acted = self.policy.acts_on(&js.jobset);
        if (acted || self.policy.early_warning.is_branch(&js.jobset))
            && let Some(hold) = self.mass_breakage_hold(js, &newly, &newly_examples, totals.jobs)
        {
            if acted {
                scan.holds.push(hold);
            } else {
                scan.branch_holds.push(hold);
            }
        }
        for ((good, bad), mut jobs) in groups {
            jobs.sort();
            let (g, b) = (&js.evals[good as usize], &js.evals[bad as usize]);
            scan.transitions.push(Transition {
                jobset: js.jobset.clone(),
                good: eval_ref(&self.links, g),
                bad: eval_ref(&self.links, b),
                compare: compare(&self.facts.repository, g, b),
                jobs,
            });
        }
        scan.totals.push(totals);
    }

    /// Every job of a jobset at `cutoff`: counted in the totals, and kept
    /// (`selected`) when it fails, flips, waits for its cause or the ledger
    /// speaks of it (then flagged in `kept`, by job index).
    fn scan_jobs(
        &self,
        ji: usize,
        js: &'a JobsetFacts,
        cutoff: u32,
        selected: &mut Vec<Selected<'a>>,
        kept: &mut [bool],
    ) -> JobsScan<'a> {
        let ledger_attrs = &self.by_attr;
        let mut t = JobsetTotals {
            jobset: Some(js.jobset.clone()),
            ..JobsetTotals::default()
        };
        let n_evals = cutoff as usize + 1;
        let mut newly = vec![0u32; n_evals];
        let mut newly_examples: Vec<Vec<&'a str>> = vec![Vec::new(); n_evals];
        let mut failing_delta = vec![0i64; n_evals + 1];
        let mut roots_at: HashMap<(&'a str, u32), Vec<&'a str>> = HashMap::new();
        let mut victims: Vec<(&'a JobFacts, u32, i64)> = Vec::new();
        let mut groups: BTreeMap<(u32, u32), Vec<(String, String)>> = BTreeMap::new();
        for (index, job) in js.jobs.iter().enumerate() {
            for r in &job.runs {
                if r.first <= cutoff && r.class() == StatusClass::Failing {
                    failing_delta[r.first as usize] += 1;
                    failing_delta[r.last.min(cutoff) as usize + 1] -= 1;
                }
            }
            let Some(v) = view(&job.runs, cutoff, &self.policy.streak) else {
                continue;
            };
            if v.present {
                t.jobs += 1;
            }
            let interesting =
                !ledger_attrs.is_empty() && ledger_attrs.contains_key(job.attr.as_str());
            let Some(s) = &v.streak else {
                if interesting || v.awaiting_cause {
                    kept[index] = true;
                    selected.push(Selected {
                        jobset: ji,
                        job,
                        view: v,
                    });
                }
                continue;
            };
            if v.present && s.signal != Signal::Ok {
                if v.flaky {
                    t.flaky += 1;
                } else if s.signal == Signal::Fail {
                    t.failing += 1;
                } else {
                    t.dependency_failed += 1;
                }
                if s.after_ok {
                    newly[s.since as usize] += 1;
                    if newly_examples[s.since as usize].len() < 5 {
                        newly_examples[s.since as usize].push(&job.attr);
                    }
                }
                if s.signal == Signal::Fail {
                    roots_at
                        .entry((job.system.as_str(), s.since))
                        .or_default()
                        .push(&job.attr);
                    if let Some((ok, _)) = v.last_ok
                        && !v.flaky
                    {
                        groups
                            .entry((ok, s.since))
                            .or_default()
                            .push((job.attr.clone(), job.system.clone()));
                    }
                } else if s.signal == Signal::Dep {
                    victims.push((job, s.since, v.latest_build));
                }
            }
            if s.signal != Signal::Ok || v.flaky || interesting || v.awaiting_cause {
                kept[index] = true;
                selected.push(Selected {
                    jobset: ji,
                    job,
                    view: v,
                });
            }
        }
        t.jobs += js.unlisted_building;
        let mut running = 0i64;
        for (i, e) in js.evals[..n_evals].iter().enumerate() {
            running += failing_delta[i];
            t.failing_per_eval
                .push((e.timestamp, u32::try_from(running.max(0)).unwrap_or(0)));
        }
        JobsScan {
            totals: t,
            newly,
            newly_examples,
            roots_at,
            victims,
            groups,
        }
    }

    /// The hold a mass breakage in `js` calls for, if there is one.
    fn mass_breakage_hold(
        &self,
        js: &JobsetFacts,
        newly: &[u32],
        newly_examples: &[Vec<&str>],
        jobs: u32,
    ) -> Option<Hold> {
        let w = mass_breakage(newly, jobs, &self.policy.breaker)?;
        let mut examples: Vec<String> = newly_examples[w.first..=w.last]
            .iter()
            .flatten()
            .map(|a| a.to_string())
            .collect();
        examples.sort();
        examples.dedup();
        examples.truncate(5);
        let before = &js.evals[w.first - 1];
        Some(Hold {
            jobset: js.jobset.clone(),
            window: WindowEvidence {
                before: eval_ref(&self.links, before),
                first: eval_ref(&self.links, &js.evals[w.first]),
                last: eval_ref(&self.links, &js.evals[w.last]),
                newly_failing: w.newly_failing,
                jobs,
                share: w.share,
                compare: compare(&self.facts.repository, before, &js.evals[w.last]),
                examples,
            },
        })
    }

    /// Where the packages of the kept jobs are present without failing, in
    /// the jobsets the policy acts on, as (attribute, system): which
    /// platforms a step covers, "every platform" or some, depends on it (a
    /// first notice otherwise announces a mark everywhere for a package
    /// failing on two of its three platforms). A package failing in one
    /// jobset may build in another, so this looks across every jobset once
    /// all are scanned. Only noted: assessing each such job would cost as
    /// much as the failing ones.
    fn building_elsewhere(
        &self,
        selected: &[Selected<'a>],
        kept: &[Vec<bool>],
    ) -> Vec<(&'a str, &'a str)> {
        let kept_attrs: HashSet<&str> = selected.iter().map(|s| s.job.attr.as_str()).collect();
        let mut building = Vec::new();
        for (js, kept) in self.facts.jobsets.iter().zip(kept) {
            if !self.policy.acts_on(&js.jobset) {
                continue;
            }
            let Some(cutoff) = cutoff(js, self.now) else {
                continue;
            };
            for (job, kept) in js.jobs.iter().zip(kept) {
                if *kept || !kept_attrs.contains(job.attr.as_str()) {
                    continue;
                }
                if view(&job.runs, cutoff, &self.policy.streak).is_some_and(|v| v.present) {
                    building.push((job.attr.as_str(), job.system.as_str()));
                }
            }
        }
        building
    }

    /// The selected jobs assessed per attribute (those the ledger speaks
    /// of too), and the roots others fail because of, the most depended on
    /// first.
    fn per_attribute(
        &self,
        selected: Vec<Selected<'a>>,
        building: &[(&'a str, &'a str)],
        victim_roots: &HashMap<(usize, &'a str, &'a str), RootGuess>,
    ) -> (BTreeMap<String, AttrAssessment>, Vec<RootImpact>) {
        let mut builds_on: HashMap<&str, Vec<&str>> = HashMap::new();
        for (attr, system) in building {
            builds_on.entry(attr).or_default().push(system);
        }
        let mut grouped: BTreeMap<&str, Vec<Selected<'a>>> = BTreeMap::new();
        for s in selected {
            grouped.entry(s.job.attr.as_str()).or_default().push(s);
        }
        for attr in self.by_attr.keys() {
            grouped.entry(attr).or_default();
        }
        let mut roots: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>, u32, u32)> =
            BTreeMap::new();
        let mut attrs = BTreeMap::new();
        for (attr, mut jobs) in grouped {
            // Acting jobsets in policy order first, then the rest; then by system.
            jobs.sort_by_key(|s| {
                let js = &self.facts.jobsets[s.jobset].jobset;
                let rank = self
                    .policy
                    .act_on
                    .iter()
                    .position(|a| a == js)
                    .unwrap_or(usize::MAX);
                (rank, s.jobset, s.job.system.clone())
            });
            let mut acting_systems: HashSet<String> = HashSet::new();
            let mut assessed = Vec::with_capacity(jobs.len());
            for s in &jobs {
                let js = &self.facts.jobsets[s.jobset];
                let acts =
                    self.policy.acts_on(&js.jobset) && acting_systems.insert(s.job.system.clone());
                let root = victim_roots.get(&(s.jobset, attr, s.job.system.as_str()));
                if let Some((Some(r), _, root_build)) = root {
                    let e = roots.entry(r.clone()).or_default();
                    e.0.insert(s.job.system.clone());
                    e.1.insert(attr.to_owned());
                    e.2 += 1;
                    e.3 += u32::from(root_build.is_some());
                }
                assessed.push(self.job(js, s, acts, root.cloned()));
            }
            let mut elsewhere: Vec<String> = builds_on
                .get(attr)
                .into_iter()
                .flatten()
                .filter(|system| !acting_systems.contains(**system))
                .map(|system| system.to_string())
                .collect();
            elsewhere.sort();
            elsewhere.dedup();
            let a = self.attr(attr, assessed, elsewhere);
            attrs.insert(attr.to_owned(), a);
        }
        let mut roots: Vec<RootImpact> = roots
            .into_iter()
            .map(|(attr, (systems, victims, jobs, named))| RootImpact {
                attr,
                systems: systems.into_iter().collect(),
                victims: victims.into_iter().collect(),
                victim_jobs: jobs,
                named_by_hydra: named,
            })
            .collect();
        roots.sort_by(|a, b| {
            b.victims
                .len()
                .cmp(&a.victims.len())
                .then(b.victim_jobs.cmp(&a.victim_jobs))
                .then(a.attr.cmp(&b.attr))
        });
        for r in &roots {
            if let Some(a) = attrs.get_mut(&r.attr) {
                a.victims = r.victims.clone();
            }
        }
        (attrs, roots)
    }

    fn job_evidence(
        &self,
        ji: usize,
        js: &JobsetFacts,
        job: &JobFacts,
        v: &JobView,
    ) -> Option<JobEvidence> {
        let s = v.streak.as_ref()?;
        let since = &js.evals[s.since as usize];
        let mut last_good = v.last_ok.map(|(i, build)| LastGood {
            eval: self.refs[ji][i as usize].clone(),
            build: self.links.build(build),
        });
        let compare = v
            .last_ok
            .filter(|_| s.signal != Signal::Ok)
            .and_then(|(i, _)| compare(&self.facts.repository, &js.evals[i as usize], since));
        let mut since_ref = self.refs[ji][s.since as usize].clone();
        let (mut evals, mut derivations) = (s.evals, s.drvs);
        // A failure older than our records: what Hydra told of its past.
        let origin = failure_origin(js, job, s);
        if let Some(o) = origin {
            let id = o.since_eval.unwrap_or(since_ref.id);
            since_ref = EvalRef {
                id,
                time: time(o.since),
                revision: None,
                url: self.links.eval(id),
            };
            evals += o.evals_before;
            derivations += o.derivations_before;
            if last_good.is_none() {
                last_good = o.last_success.map(|(build, eval, at)| LastGood {
                    eval: EvalRef {
                        id: eval,
                        time: time(at),
                        revision: None,
                        url: self.links.eval(eval),
                    },
                    build: self.links.build(build),
                });
            }
        }
        Some(JobEvidence {
            system: job.system.clone(),
            class: signal_class(s.signal).as_str().to_owned(),
            job_url: self
                .links
                .job(&js.jobset.project, &js.jobset.jobset, &job.hydra_job()),
            since: since_ref,
            before_our_records: origin.map(|o| o.beyond_horizon),
            evals,
            derivations,
            statuses: s.statuses.iter().map(|st| st.name().to_owned()).collect(),
            first_build: self.links.build(s.first_build),
            last_build: self.links.build(s.last_build),
            last_good,
            compare,
        })
    }

    fn job(
        &self,
        js: &JobsetFacts,
        s: &Selected<'_>,
        acts: bool,
        root: Option<RootGuess>,
    ) -> JobAssessment {
        let v = &s.view;
        let job = s.job;
        let ladder = self.policy.ladder_for(&job.attr, &job.system);
        // A failure older than our records counts its past as Hydra told
        // it: its age, its evals and its derivations.
        let origin = v.streak.as_ref().and_then(|st| failure_origin(js, job, st));
        let extended = v.streak.clone().map(|mut st| {
            if let Some(o) = origin {
                st.evals += o.evals_before;
                st.drvs += o.derivations_before;
            }
            st
        });
        let streak = extended.as_ref();
        let since_ts = streak.map(|st| {
            let stored = js.evals[st.since as usize].timestamp;
            origin.map_or(stored, |o| o.since.min(stored))
        });
        let charged_to = streak
            .filter(|st| st.signal == Signal::Dep)
            .and(root.as_ref())
            .and_then(|(r, _, _)| r.clone());
        let rule = match streak {
            _ if !acts => Rule::Watched,
            None if v.awaiting_cause => Rule::AwaitingCause,
            None => Rule::NoSignal,
            Some(st) if st.signal == Signal::Ok && v.awaiting_cause && v.present => {
                Rule::AwaitingCause
            }
            Some(st) if st.signal == Signal::Ok && !v.flaky => Rule::Ok,
            _ if !v.present => Rule::Gone,
            _ if v.flaky => Rule::Flaky { flips: v.flips },
            Some(st) if st.signal == Signal::Dep => {
                let (root, candidates, root_build) = root.unwrap_or_default();
                Rule::Victim {
                    root,
                    candidates,
                    root_build,
                }
            }
            Some(st)
                if st.evals < self.policy.streak.min_evals
                    || st.drvs < self.policy.streak.min_derivations =>
            {
                Rule::NotYetReal {
                    evals: st.evals,
                    derivations: st.drvs,
                }
            }
            _ if ladder.ladder.skip => Rule::Skipped {
                overrides: ladder.overrides.clone(),
            },
            Some(st) => Rule::Ladder(self.ladder_state(
                &job.attr,
                &job.system,
                st,
                since_ts.unwrap_or(0),
                &ladder,
            )),
        };
        JobAssessment {
            jobset: js.jobset.clone(),
            system: job.system.clone(),
            hydra_job: job.hydra_job(),
            present: v.present,
            latest: v.latest,
            latest_build: v.latest_build,
            streak_class: streak.map(|st| signal_class(st.signal)),
            evidence: self.job_evidence(s.jobset, js, job, v),
            flaky: v.flaky,
            ladder,
            rule,
            next: None,
            schedule: Vec::new(),
            charged_to,
            since_index: streak.map(|st| st.since),
            since_ts,
        }
    }

    fn records(&self, attr: &str) -> &[&'a ActionRecord] {
        self.by_attr.get(attr).map_or(&[], |v| v.as_slice())
    }

    /// Records of `kind` about `system` since `since` (this failure), oldest first.
    fn episode<'r>(
        &'r self,
        attr: &'r str,
        system: &'r str,
        kind: ActionKind,
        since: i64,
    ) -> impl Iterator<Item = &'a ActionRecord> + 'r {
        self.records(attr).iter().copied().filter(move |r| {
            r.kind == kind && r.state.counts() && r.covers(system) && r.planned_at >= since
        })
    }

    fn snooze_pause(&self, attr: &str, since: i64) -> (i64, Option<i64>) {
        let max = self.policy.opt_out.max_snooze.secs();
        let mut pause = 0;
        let mut until_now = None;
        for o in &self.ledger.opt_outs {
            if o.attr != attr || o.kind != OptOutKind::Snooze || o.revoked_at.is_some() {
                continue;
            }
            let Some(until) = o.until else { continue };
            let until = until.min(o.recorded_at + max);
            let start = o.recorded_at.max(since);
            let end = until.min(self.now);
            if end > start {
                pause += end - start;
            }
            if o.recorded_at <= self.now && self.now < until {
                until_now = Some(until_now.map_or(until, |u: i64| u.max(until)));
            }
        }
        (pause, until_now)
    }

    fn ladder_state(
        &self,
        attr: &str,
        system: &str,
        st: &StreakView,
        since: i64,
        ladder: &EffectiveLadder,
    ) -> LadderState {
        let l = &ladder.ladder;
        // An early warning handed over: the notice was given on the branch,
        // and the streak started there.
        let warned = super::early_warning::handed_over(
            self.policy,
            self.facts,
            self.records(attr),
            self.now,
            attr,
            system,
        );
        let since = warned.map_or(since, |w| since.min(w.branch_since));
        let (pause, _) = self.snooze_pause(attr, since);
        let clock_start = since + pause;
        let notified_at = self
            .episode(attr, system, ActionKind::Notify, since)
            .map(|r| r.at())
            .chain(warned.map(|w| w.noticed_at))
            .min();
        let mut reminded = Vec::new();
        let mut mark_due = None;
        if let Some(n) = notified_at {
            let mut due = (clock_start + l.mark_broken_after.secs()).max(n + l.min_notice.secs());
            for r in &l.remind_before_mark {
                let step = remind_step(*r);
                let sent = self
                    .episode(attr, system, ActionKind::Remind, since)
                    .filter(|rec| rec.step.as_deref() == Some(step.as_str()))
                    .map(|rec| rec.at())
                    .min();
                if let Some(at) = sent {
                    due = due.max(at + r.secs());
                    reminded.push(step);
                }
            }
            mark_due = Some(due);
        }
        let mark = self
            .episode(attr, system, ActionKind::MarkBroken, since)
            .last()
            .map(|r| (r.state, r.pr));
        let escalated = self
            .episode(attr, system, ActionKind::Escalate, since)
            .next()
            .is_some();
        LadderState {
            clock_start,
            notified_at,
            mark_due,
            reminded,
            mark,
            escalated,
            needs_derivations: (st.drvs < l.mark_min_derivations).then_some(l.mark_min_derivations),
        }
    }

    fn attr(
        &self,
        attr: &str,
        mut jobs: Vec<JobAssessment>,
        builds_elsewhere: Vec<String>,
    ) -> AttrAssessment {
        let protected = self.policy.is_protected(attr);
        let opted_out = self.opt_out_in_force(attr);
        // When the failure going on began, where the policy acts: a
        // platform that builds (however long), a job that left and a
        // jobset only watched are no part of it, or an edit refused in a
        // failure that ended would still be listed as set aside.
        let earliest = jobs
            .iter()
            .filter(|j| j.present && !matches!(j.rule, Rule::Watched))
            .filter(|j| j.flaky || j.streak_class != Some(StatusClass::Ok))
            .filter_map(|j| j.since_ts)
            .min()
            .unwrap_or(self.now);
        let (_, snoozed_until) = self.snooze_pause(attr, earliest);
        let maintainers = self
            .facts
            .maintainers
            .get(attr)
            .cloned()
            .unwrap_or_default();
        let quiet = opted_out.is_some() || snoozed_until.is_some();
        let mut due = Vec::new();
        for job in &mut jobs {
            if let Some(d) = self.climb_ladder(job, protected)
                && !quiet
            {
                due.push(d);
            }
        }
        let records = self.records(attr);
        let acting: Vec<&JobAssessment> = jobs
            .iter()
            .filter(|j| !matches!(j.rule, Rule::Watched))
            .collect();
        due.extend(recovered_pulls(records, &acting));
        let marked = records
            .iter()
            .filter(|r| r.kind == ActionKind::MarkBroken && r.state == RecordState::Merged)
            .max_by_key(|r| (r.closed_at.unwrap_or(r.at()), r.id))
            .map(|r| (*r).clone());
        let mut attr_next = None;
        if let Some(m) = marked.as_ref().filter(|m| m.all_platforms) {
            let (now_due, next) = self.retirement(attr, records, m, &acting, protected, quiet);
            due.extend(now_due);
            attr_next = next;
        }
        let next = jobs
            .iter()
            .filter_map(|j| j.next.clone())
            .chain(attr_next.map(|(kind, step, at)| NextStep {
                kind,
                step: step.map(str::to_owned),
                at: time(at),
                at_unix: at,
            }))
            .min_by_key(|n| (n.at_unix, n.kind));
        let schedule = attr_schedule(&jobs, &builds_elsewhere, next.as_ref(), marked.as_ref());
        let mut refused: Vec<ActionRecord> = records
            .iter()
            .filter(|r| r.refused.is_some() && r.planned_at >= earliest)
            .map(|r| (*r).clone())
            .collect();
        refused.reverse();
        AttrAssessment {
            attr: attr.to_owned(),
            protected,
            opted_out,
            snoozed_until,
            maintainers,
            jobs,
            marked,
            victims: Vec::new(),
            due,
            next,
            schedule,
            refused,
            builds_elsewhere,
        }
    }

    /// The marker or label opt-out in force for `attr`, the oldest first.
    fn opt_out_in_force(&self, attr: &str) -> Option<OptOut> {
        self.ledger
            .opt_outs
            .iter()
            .filter(|o| {
                o.attr == attr
                    && o.kind != OptOutKind::Snooze
                    && o.revoked_at.is_none()
                    && o.recorded_at <= self.now
            })
            .min_by_key(|o| o.recorded_at)
            .cloned()
    }

    /// One job's place on its ladder: the step due now (returned), or else
    /// the next one and when (`job.next`), and the steps still to come
    /// (`job.schedule`).
    fn climb_ladder(&self, job: &mut JobAssessment, protected: bool) -> Option<Due> {
        let Rule::Ladder(state) = &job.rule else {
            return None;
        };
        let l = &job.ladder.ladder;
        let mut next = None;
        let mut now_due = None;
        match state.notified_at {
            None => {
                let at = state.clock_start + l.notify_after.secs();
                if self.now >= at {
                    now_due = Some((ActionKind::Notify, Some("notice".to_owned())));
                } else {
                    next = Some((ActionKind::Notify, Some("notice".to_owned()), at));
                }
            }
            Some(_) => {
                let mark_due = state.mark_due.unwrap_or(i64::MAX);
                let missing = l
                    .remind_before_mark
                    .iter()
                    .map(|r| (remind_step(*r), mark_due - r.secs()))
                    .find(|(step, _)| !state.reminded.contains(step));
                let final_kind = if protected {
                    ActionKind::Escalate
                } else {
                    ActionKind::MarkBroken
                };
                let proposed = if protected {
                    state.escalated
                } else {
                    state.mark.is_some()
                };
                // Reminders come before a mark: once one is proposed
                // (or the escalation sent) none is due any more.
                let missing = missing.filter(|_| !proposed);
                match missing {
                    Some((step, at)) if self.now >= at => {
                        now_due = Some((ActionKind::Remind, Some(step)));
                    }
                    Some((step, at)) => next = Some((ActionKind::Remind, Some(step), at)),
                    None if proposed => {}
                    None if state.needs_derivations.is_some() => {}
                    None if self.now >= mark_due => now_due = Some((final_kind, None)),
                    None => next = Some((final_kind, None, mark_due)),
                }
            }
        }
        job.schedule = projected_ladder(state, l, &job.system, self.now, protected);
        if let Some((kind, step)) = now_due {
            return Some(Due {
                kind,
                step,
                system: Some(job.system.clone()),
                pr: None,
                ledger: Vec::new(),
            });
        }
        if let Some((kind, step, at)) = next {
            job.next = Some(NextStep {
                kind,
                step,
                at: time(at),
                at_unix: at,
            });
        }
        None
    }

    /// Retiring what has been marked broken on every platform (`m`, merged)
    /// long enough: the warning, then the move a full notice later. Returns
    /// what is due now and the next of these steps, when one is ahead.
    fn retirement(
        &self,
        attr: &str,
        records: &[&ActionRecord],
        m: &ActionRecord,
        acting: &[&JobAssessment],
        protected: bool,
        quiet: bool,
    ) -> (Vec<Due>, Option<AttrStep>) {
        let mut due = Vec::new();
        let mut attr_next = None;
        let merged_at = m.closed_at.unwrap_or(m.at());
        let unbroken = acting.iter().any(|j| j.present && j.rule == Rule::Ok);
        let ladders: Vec<EffectiveLadder> = if m.systems.is_empty() {
            vec![self.policy.ladder_for(attr, "")]
        } else {
            m.systems
                .iter()
                .map(|s| self.policy.ladder_for(attr, s))
                .collect()
        };
        let skip = ladders.iter().any(|l| l.ladder.skip);
        let after = ladders
            .iter()
            .map(|l| l.ladder.retire_after_broken)
            .try_fold(Period::ZERO, |acc, p| p.map(|p| acc.max(p)));
        let notice = ladders
            .iter()
            .map(|l| l.ladder.retire_notice)
            .max()
            .unwrap_or(Period::ZERO);
        let later = |kind: ActionKind| {
            records
                .iter()
                .filter(move |r| r.kind == kind && r.state.counts() && r.planned_at >= merged_at)
        };
        let (false, false, Some(after)) = (unbroken, skip, after) else {
            return (due, attr_next);
        };
        let base = merged_at + after.secs();
        let warned = later(ActionKind::Remind)
            .filter(|r| r.step.as_deref() == Some("retire-warning"))
            .map(|r| r.at())
            .min();
        let retired = later(ActionKind::Retire).next().is_some();
        let step = |kind, step: Option<&str>| Due {
            kind,
            step: step.map(str::to_owned),
            system: None,
            pr: m.pr,
            ledger: vec![m.id],
        };
        match warned {
            _ if retired => {}
            None if self.now >= base - notice.secs() => {
                if !quiet {
                    due.push(step(ActionKind::Remind, Some("retire-warning")));
                    // What the warning warns of: the move, a full
                    // notice after it is sent now.
                    if !protected {
                        attr_next =
                            Some((ActionKind::Retire, None, base.max(self.now + notice.secs())));
                    }
                }
            }
            None => {
                attr_next = Some((
                    ActionKind::Remind,
                    Some("retire-warning"),
                    base - notice.secs(),
                ));
            }
            Some(w) => {
                let at = base.max(w + notice.secs());
                if self.now >= at {
                    if !quiet && !protected {
                        due.push(step(ActionKind::Retire, None));
                    }
                } else {
                    attr_next = Some((ActionKind::Retire, None, at));
                }
            }
        }
        (due, attr_next)
    }
}

/// Our open pull requests whose platforms all build again: close them.
fn recovered_pulls(records: &[&ActionRecord], acting: &[&JobAssessment]) -> Vec<Due> {
    // `Rule::Ok` on a present job is `JobView::builds`, as in `builds_again`.
    let builds_on = |system: &str| {
        acting
            .iter()
            .any(|j| j.system == system && j.present && j.rule == Rule::Ok)
    };
    let mut due = Vec::new();
    for r in records {
        if !(r.kind.opens_pr() && r.state == RecordState::Open) {
            continue;
        }
        let systems: Vec<&str> = if r.all_platforms {
            acting.iter().map(|j| j.system.as_str()).collect()
        } else {
            r.systems.iter().map(String::as_str).collect()
        };
        let recovered = !systems.is_empty() && systems.iter().all(|s| builds_on(s));
        let already = records.iter().any(|c| {
            c.kind == ActionKind::ClosePr && c.state.counts() && c.pr.is_some() && c.pr == r.pr
        });
        if recovered && !already {
            due.push(Due {
                kind: ActionKind::ClosePr,
                step: None,
                system: None,
                pr: r.pr,
                ledger: vec![r.id],
            });
        }
    }
    due
}

/// An attribute's steps to come: its jobs' ladders merged (the platforms
/// of one step on one day together), then its retirement.
fn attr_schedule(
    jobs: &[JobAssessment],
    builds_elsewhere: &[String],
    next: Option<&NextStep>,
    marked: Option<&ActionRecord>,
) -> Vec<ScheduledStep> {
    let mut schedule = merge_schedules(jobs.iter().flat_map(|j| j.schedule.iter()));
    for step in &mut schedule {
        step.all_platforms = covers_every_platform(jobs, builds_elsewhere, &step.systems);
    }
    if let Some(n) =
        next.filter(|n| n.kind == ActionKind::Retire || n.step.as_deref() == Some("retire-warning"))
    {
        schedule.push(ScheduledStep {
            kind: n.kind,
            step: n.step.clone(),
            at: n.at.clone(),
            at_unix: n.at_unix,
            systems: marked.map(|m| m.systems.clone()).unwrap_or_default(),
            all_platforms: marked.is_some_and(|m| m.all_platforms),
            needs_rebuild: false,
        });
    }
    schedule
}

/// The ladder's steps still to come for one job if it keeps failing and
/// every step is taken on its day: the notice (if not sent), the reminders
/// not sent yet, then the mark (or, for a protected package, the
/// escalation). The same rules as the engine's: a mark comes
/// `mark_broken_after` into the streak, at least `min_notice` after the
/// notice and each reminder at least its own period before it.
fn projected_ladder(
    state: &LadderState,
    l: &super::config::Ladder,
    system: &str,
    now: i64,
    protected: bool,
) -> Vec<ScheduledStep> {
    let step = |kind, name: Option<String>, at: i64, needs_rebuild| ScheduledStep {
        kind,
        step: name,
        at: time(at),
        at_unix: at,
        systems: vec![system.to_owned()],
        all_platforms: false,
        needs_rebuild,
    };
    let proposed = if protected {
        state.escalated
    } else {
        state.mark.is_some()
    };
    if proposed {
        return Vec::new();
    }
    let mut steps = Vec::new();
    let notice = match state.notified_at {
        Some(at) => at,
        None => {
            let at = (state.clock_start + l.notify_after.secs()).max(now);
            steps.push(step(ActionKind::Notify, Some("notice".into()), at, false));
            at
        }
    };
    let mut mark = state.mark_due.unwrap_or_else(|| {
        (state.clock_start + l.mark_broken_after.secs()).max(notice + l.min_notice.secs())
    });
    let mut reminders: Vec<Period> = l.remind_before_mark.clone();
    reminders.sort_by(|a, b| b.cmp(a));
    for before in reminders {
        let name = remind_step(before);
        if state.reminded.contains(&name) {
            continue;
        }
        let at = (mark - before.secs()).max(now).max(notice);
        mark = mark.max(at + before.secs());
        steps.push(step(ActionKind::Remind, Some(name), at, false));
    }
    let kind = if protected {
        ActionKind::Escalate
    } else {
        ActionKind::MarkBroken
    };
    steps.push(step(
        kind,
        None,
        mark.max(now),
        state.needs_derivations.is_some(),
    ));
    steps
}

/// One attribute's schedule from its jobs': the same step on the same day
/// becomes one entry naming all its platforms.
fn merge_schedules<'s>(steps: impl Iterator<Item = &'s ScheduledStep>) -> Vec<ScheduledStep> {
    let mut merged: BTreeMap<(String, ActionKind, Option<String>), ScheduledStep> = BTreeMap::new();
    for s in steps {
        let day = s.at.get(..10).unwrap_or(&s.at).to_owned();
        merged
            .entry((day, s.kind, s.step.clone()))
            .and_modify(|m| {
                m.systems.extend(s.systems.iter().cloned());
                m.needs_rebuild |= s.needs_rebuild;
                m.at_unix = m.at_unix.max(s.at_unix);
                m.at = time(m.at_unix);
            })
            .or_insert_with(|| s.clone());
    }
    let mut out: Vec<ScheduledStep> = merged.into_values().collect();
    for s in &mut out {
        s.systems.sort();
        s.systems.dedup();
    }
    out.sort_by_key(|s| (s.at_unix, s.kind));
    out
}

/// The step of a mark-broken action that rewrites one of our open pull
/// requests (its branch, body and a comment) instead of opening another.
pub const UPDATE_STEP: &str = "update";

/// One open pull request per package: when a package on one of our open
/// mark-broken pull requests now fails on more platforms, or when some of
/// its packages build again while others still fail, that pull request is
/// rewritten (one `update` action per package that stays on it, with the
/// union of recorded and newly due platforms) instead of a second one being
/// opened or a stale one left as it is. The packages that build again keep
/// their `close_pr` action, which says so on the pull request.
fn update_open_pulls(ledger: &Ledger, a: &Assessment, actions: &mut Vec<(i64, Action)>) {
    let mut open: BTreeMap<u64, BTreeMap<&str, &ActionRecord>> = BTreeMap::new();
    for r in &ledger.actions {
        if r.kind == ActionKind::MarkBroken
            && r.state == RecordState::Open
            && r.planned_at <= a.now
            && let (Some(pr), Some(attr)) = (r.pr, r.attr.as_deref())
        {
            // The newest record of a package on that pull request says what it marks.
            open.entry(pr).or_default().insert(attr, r);
        }
    }
    for (pr, members) in open {
        fn due_mark(actions: &[(i64, Action)], attr: &str) -> Option<usize> {
            actions.iter().position(|(_, x)| {
                x.kind == ActionKind::MarkBroken && x.attr.as_deref() == Some(attr)
            })
        }
        let recovering: BTreeSet<&str> = members
            .keys()
            .copied()
            .filter(|attr| {
                actions.iter().any(|(_, x)| {
                    x.kind == ActionKind::ClosePr
                        && x.attr.as_deref() == Some(*attr)
                        && x.evidence.pr == Some(pr)
                })
            })
            .collect();
        let growing = members.keys().any(|attr| due_mark(actions, attr).is_some());
        let remaining: Vec<(&str, &ActionRecord)> = members
            .iter()
            .filter(|(attr, _)| !recovering.contains(*attr))
            .map(|(attr, r)| (*attr, *r))
            .collect();
        if remaining.is_empty() || (!growing && recovering.is_empty()) {
            continue;
        }
        for (attr, record) in remaining {
            let (oldest, mut action) = match due_mark(actions, attr) {
                Some(i) => actions.remove(i),
                None => (a.now, kept_on_pull(a, attr, record)),
            };
            let mut systems: BTreeSet<String> = action.systems.iter().cloned().collect();
            systems.extend(record.systems.iter().cloned());
            action.systems = systems.into_iter().collect();
            action.all_platforms |= record.all_platforms;
            action.step = Some(UPDATE_STEP.to_owned());
            action.batch = Some(format!("pr-{pr}"));
            action.evidence.pr = Some(pr);
            action.evidence.ledger.push(record.id);
            actions.push((oldest, action));
        }
    }
}

/// A package that stays on a rewritten pull request as it is: the same
/// platforms, with today's evidence.
fn kept_on_pull(a: &Assessment, attr: &str, record: &ActionRecord) -> Action {
    let assessed = a.attrs.get(attr);
    let jobs: Vec<JobEvidence> = assessed
        .map(|x| {
            x.jobs
                .iter()
                .filter(|j| record.all_platforms || record.covers(&j.system))
                .filter_map(|j| j.evidence.clone())
                .collect()
        })
        .unwrap_or_default();
    let platforms = platforms_in_words(record.all_platforms, &record.systems);
    Action {
        kind: ActionKind::MarkBroken,
        attr: Some(attr.to_owned()),
        systems: record.systems.clone(),
        all_platforms: record.all_platforms,
        step: Some(UPDATE_STEP.to_owned()),
        batch: None,
        reason: format!("it still fails on {platforms}; it stays on the updated pull request"),
        evidence: Evidence {
            jobset: jobs.first().map(|_| {
                assessed
                    .and_then(|x| x.jobs.first())
                    .map(|j| j.jobset.to_string())
                    .unwrap_or_default()
            }),
            jobs,
            maintainers: assessed.map(|x| x.maintainers.clone()).unwrap_or_default(),
            ..Evidence::default()
        },
    }
}

/// The first retry after a failed attempt waits this long; each further
/// consecutive failure doubles it, up to [`RETRY_MAX`].
const RETRY_FIRST: i64 = 3600;
const RETRY_MAX: i64 = DAY;

/// Why `action` must wait, if its newest attempts (same package, kind and
/// step) failed recently: after n consecutive failures the next attempt
/// comes `RETRY_FIRST × 2^(n-1)` (at most `RETRY_MAX`) after the last one.
fn retry_wait(ledger: &Ledger, action: &Action, now: i64) -> Option<String> {
    let attempts = ledger.actions.iter().rev().filter(|r| {
        r.kind == action.kind
            && r.attr == action.attr
            && r.step == action.step
            && r.planned_at <= now
    });
    let mut failures = 0u32;
    let mut last: Option<&ActionRecord> = None;
    for r in attempts {
        if r.state != RecordState::Failed {
            break;
        }
        failures += 1;
        last.get_or_insert(r);
    }
    let last = last?;
    let at = last.done_at.unwrap_or(last.planned_at);
    let wait = RETRY_FIRST
        .saturating_mul(1i64 << (failures - 1).min(20))
        .min(RETRY_MAX);
    (now < at + wait).then(|| {
        format!(
            "retrying later: {failures} attempt{} failed, the last on {} ({}); next attempt after {}",
            if failures == 1 { "" } else { "s" },
            time(at),
            last.error.as_deref().unwrap_or("no error recorded"),
            time(at + wait)
        )
    })
}

/// A window of evals in which a mass breakage happened.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BreakageWindow {
    /// First and last eval index with a job that broke (the first is never 0:
    /// a job failing in the first stored eval shows no transition).
    first: usize,
    last: usize,
    newly_failing: u32,
    share: f64,
}

/// The biggest window of `window_evals` consecutive evals in which jobs turned
/// from ok to failing (and still fail), if it reaches both of the breaker's
/// thresholds. `newly[i]` counts the jobs that broke in eval `i`. Of equal
/// windows the later wins: it is the one people are looking at now. The
/// window is tightened to the evals where jobs broke before it is judged.
fn mass_breakage(newly: &[u32], jobs: u32, breaker: &CircuitBreaker) -> Option<BreakageWindow> {
    let width = (breaker.window_evals as usize).max(1);
    let mut best: Option<(u32, usize)> = None;
    let mut sum = 0u32;
    for (i, n) in newly.iter().enumerate() {
        sum += n;
        if i >= width {
            sum -= newly[i - width];
        }
        if sum > 0 && best.is_none_or(|(b, _)| sum >= b) {
            best = Some((sum, i));
        }
    }
    let (mut count, end) = best?;
    let share = |count: u32| {
        if jobs == 0 {
            0.0
        } else {
            f64::from(count) / f64::from(jobs)
        }
    };
    let qualifies = |count: u32| count >= breaker.min_jobs && share(count) >= breaker.min_share;
    if !qualifies(count) {
        return None;
    }
    // Tighten to the evals that make the breakage: drop an end eval while
    // the rest still qualifies, so a few ordinary failures next to it do not
    // widen the window a human is pointed at.
    let (mut first, mut last) = ((end + 1).saturating_sub(width), end);
    while first < last {
        let drop_first = newly[first] <= newly[last];
        let edge = if drop_first {
            newly[first]
        } else {
            newly[last]
        };
        if edge > 0 && !qualifies(count - edge) {
            break;
        }
        count -= edge;
        if drop_first {
            first += 1;
        } else {
            last -= 1;
        }
    }
    (first > 0).then_some(BreakageWindow {
        first,
        last,
        newly_failing: count,
        share: share(count),
    })
}

fn remind_step(before: Period) -> String {
    format!("remind-{before}")
}

fn signal_class(s: Signal) -> StatusClass {
    match s {
        Signal::Ok => StatusClass::Ok,
        Signal::Fail => StatusClass::Failing,
        Signal::Dep => StatusClass::DependencyFailed,
        Signal::Quiet => StatusClass::Noise,
    }
}

/// The index of the newest eval at or before `now`.
/// Whether `attr` builds again as of `now`: every job of it in the newest
/// eval (as of `now`) of a jobset the policy acts on builds
/// ([`JobView::builds`]), and there is at least one. What closes a tracking
/// issue; the engine closes our pull requests on the same reading.
pub fn builds_again(policy: &Policy, facts: &Facts, attr: &str, now: i64) -> bool {
    let mut seen = false;
    for js in facts.jobsets.iter().filter(|js| policy.acts_on(&js.jobset)) {
        let Some(cutoff) = cutoff(js, now) else {
            continue;
        };
        for job in js.jobs.iter().filter(|j| j.attr == attr) {
            let Some(v) = view(&job.runs, cutoff, &policy.streak) else {
                continue;
            };
            if !v.present {
                continue; // gone from the jobset
            }
            seen = true;
            if !v.builds() {
                return false;
            }
        }
    }
    seen
}

pub(crate) fn cutoff(js: &JobsetFacts, now: i64) -> Option<u32> {
    let n = js.evals.partition_point(|e| e.timestamp <= now);
    n.checked_sub(1).map(|i| i as u32)
}

fn package_set(attr: &str) -> &str {
    attr.split_once('.').map_or("top-level", |(set, _)| set)
}

/// Turn an assessment into a plan: actions grouped per attribute, then holds,
/// batching and limits.
pub fn plan_from(policy: &Policy, facts: &Facts, ledger: &Ledger, a: &Assessment) -> Plan {
    let now = a.now;
    let mut actions: Vec<(i64, Action)> = a
        .attrs
        .values()
        .flat_map(|attr| package_actions(policy, ledger, attr, now))
        .collect();
    for w in &a.warnings {
        if let Some(action) = super::early_warning::action(policy, w) {
            actions.push((w.since_ts(), action));
        }
    }
    update_open_pulls(ledger, a, &mut actions);

    let mut out: Vec<Action> = a.holds.iter().map(hold_action).collect();
    let mut deferred = Vec::new();
    let held = !a.holds.is_empty();
    if held {
        let why = held_because(&a.holds);
        deferred.extend(actions.drain(..).map(|(_, action)| Deferred {
            action,
            why: why.clone(),
        }));
    }
    let actions = wait_after_failures(ledger, actions, now, &mut deferred);
    let actions = within_post_limits(policy, ledger, actions, now, &mut deferred);
    out.extend(batched_within_pull_limits(
        policy,
        facts,
        ledger,
        actions,
        now,
        &mut deferred,
    ));
    sort_plan(&mut out, &mut deferred);
    Plan {
        now,
        held,
        actions: out,
        deferred,
    }
}

/// An attribute's due steps as actions: one per kind, step and pull
/// request, each paired with when its oldest failure began (the oldest
/// failures go first under the limits).
fn package_actions(
    policy: &Policy,
    ledger: &Ledger,
    attr: &AttrAssessment,
    now: i64,
) -> Vec<(i64, Action)> {
    let mut grouped: BTreeMap<DueKey, Vec<&Due>> = BTreeMap::new();
    for d in &attr.due {
        grouped
            .entry((d.kind, d.step.clone(), d.pr))
            .or_default()
            .push(d);
    }
    grouped
        .into_iter()
        .map(|(key, dues)| package_action(policy, ledger, attr, key, &dues, now))
        .collect()
}

/// One action of an attribute, with its reason and evidence.
fn package_action(
    policy: &Policy,
    ledger: &Ledger,
    attr: &AttrAssessment,
    (kind, step, pr): DueKey,
    dues: &[&Due],
    now: i64,
) -> (i64, Action) {
    let due_systems: BTreeSet<String> = dues.iter().filter_map(|d| d.system.clone()).collect();
    let acted: Vec<&JobAssessment> = attr
        .jobs
        .iter()
        .filter(|j| !matches!(j.rule, Rule::Watched) && due_systems.contains(&j.system))
        .collect();
    let ledger_ids: Vec<i64> = dues.iter().flat_map(|d| d.ledger.clone()).collect();
    let (systems, all_platforms) = platforms_of(ledger, attr, kind, due_systems, &ledger_ids);
    let oldest = acted.iter().filter_map(|j| j.since_ts).min().unwrap_or(now);
    let reason = reason_for(
        attr,
        kind,
        step.as_deref(),
        &systems,
        all_platforms,
        // Calendar days (UTC), as the site's age column counts them: the
        // number turns over at midnight for every package at once, not at
        // each failure's own hour (a page would change mid-day for it).
        now.div_euclid(DAY) - oldest.div_euclid(DAY),
    );
    let evidence = package_evidence(policy, attr, kind, pr, &acted, ledger_ids);
    let action = Action {
        kind,
        attr: Some(attr.attr.clone()),
        systems,
        all_platforms,
        step,
        batch: None,
        reason,
        evidence,
    };
    (oldest, action)
}

/// Whether a step on `systems` leaves the package marked broken on every
/// platform it is built on in the jobsets the policy acts on: each such
/// platform (its present jobs not only watched, and `builds_elsewhere`) is
/// among `systems` or marked already. The notice that announces a mark and
/// the mark itself both ask this, so they cannot disagree; a package built
/// on one platform only is marked on every platform when it fails there.
fn covers_every_platform(
    jobs: &[JobAssessment],
    builds_elsewhere: &[String],
    systems: &[String],
) -> bool {
    let marked = |system: &str| {
        jobs.iter()
            .any(|j| j.system == system && matches!(&j.rule, Rule::Ladder(s) if s.mark.is_some()))
    };
    let mut built = jobs
        .iter()
        .filter(|j| j.present && !matches!(j.rule, Rule::Watched))
        .map(|j| j.system.as_str())
        .chain(builds_elsewhere.iter().map(String::as_str))
        .peekable();
    built.peek().is_some()
        && built.all(|system| systems.iter().any(|s| s == system) || marked(system))
}

/// The platforms an action is about, and whether they are all of the
/// package's. A mark covers every platform when the others it is built on
/// are marked already; a step due on no platform of its own (a reminder
/// about a recorded mark) is about those of its ledger record.
fn platforms_of(
    ledger: &Ledger,
    attr: &AttrAssessment,
    kind: ActionKind,
    due_systems: BTreeSet<String>,
    ledger_ids: &[i64],
) -> (Vec<String>, bool) {
    let mut systems: Vec<String> = due_systems.into_iter().collect();
    let mut all_platforms = false;
    if kind == ActionKind::MarkBroken {
        all_platforms = covers_every_platform(&attr.jobs, &attr.builds_elsewhere, &systems);
    }
    if systems.is_empty()
        && let Some(rec) = ledger_ids
            .first()
            .and_then(|id| ledger.actions.iter().find(|r| r.id == *id))
    {
        systems = rec.systems.clone();
        all_platforms = rec.all_platforms;
    }
    (systems, all_platforms)
}

/// Why an action is planned, in words.
fn reason_for(
    attr: &AttrAssessment,
    kind: ActionKind,
    step: Option<&str>,
    systems: &[String],
    all_platforms: bool,
    failing_days: i64,
) -> String {
    let platforms = platforms_in_words(all_platforms, systems);
    match kind {
        ActionKind::Notify => {
            format!("it has failed on {platforms} for {failing_days} days")
        }
        ActionKind::Remind if step == Some("retire-warning") => format!(
            "it has been marked broken on every platform since {}",
            attr.marked
                .as_ref()
                .and_then(|m| m.closed_at)
                .map(|t| time(t).chars().take(10).collect::<String>())
                .unwrap_or_default()
        ),
        ActionKind::Remind => {
            format!("it has failed on {platforms} for {failing_days} days")
        }
        ActionKind::MarkBroken => format!(
            "it has failed on {platforms} for {failing_days} days, and its maintainers were told and reminded with the full notice period"
        ),
        ActionKind::Escalate => format!(
            "it has failed on {platforms} for {failing_days} days; it is protected, so it is never marked broken and people must decide"
        ),
        ActionKind::ClosePr => format!(
            "it builds again on {}, so the pull request is no longer needed",
            platforms_in_words(false, systems)
        ),
        ActionKind::Retire => {
            "it has been marked broken on every platform for longer than the policy allows"
                .to_owned()
        }
        // Holds are planned by `hold_action`; warnings by the early warning module.
        ActionKind::Hold | ActionKind::Warn => String::new(),
    }
}

/// What a package's action shows as its evidence.
fn package_evidence(
    policy: &Policy,
    attr: &AttrAssessment,
    kind: ActionKind,
    pr: Option<u64>,
    acted: &[&JobAssessment],
    ledger_ids: Vec<i64>,
) -> Evidence {
    Evidence {
        jobset: acted.first().map(|j| j.jobset.to_string()),
        jobs: acted.iter().filter_map(|j| j.evidence.clone()).collect(),
        maintainers: attr.maintainers.clone(),
        next_step: attr.next.clone(),
        pr,
        escalate_to: if kind == ActionKind::Escalate {
            policy.protected.escalate_to.clone()
        } else {
            Vec::new()
        },
        root: None,
        branch_pull: None,
        blast_radius: (!attr.victims.is_empty())
            .then(|| u32::try_from(attr.victims.len()).unwrap_or(u32::MAX)),
        ledger: ledger_ids,
        window: None,
        schedule: attr.schedule.clone(),
        opt_out: Some(format!(
            "Leave this package alone for good: add the comment `{}` to its file, or put the label \"{}\" on this issue or on our pull request.",
            policy.opt_out.marker, policy.opt_out.label
        )),
    }
}

/// The hold a mass breakage plans.
fn hold_action(h: &Hold) -> Action {
    let w = &h.window;
    Action {
        kind: ActionKind::Hold,
        attr: None,
        systems: Vec::new(),
        all_platforms: false,
        // Names the breakage, so the ledger records a hold once, not
        // every cycle while it lasts.
        step: Some(format!("{} evals {}-{}", h.jobset, w.first.id, w.last.id)),
        batch: None,
        reason: format!(
            "mass breakage in {}: {} jobs ({:.1}% of {}) turned from building to failing {} and still fail; every per-package action waits",
            h.jobset,
            w.newly_failing,
            w.share * 100.0,
            w.jobs,
            if w.first.id == w.last.id {
                format!("in eval {}", w.first.id)
            } else {
                format!("in evals {} to {}", w.first.id, w.last.id)
            }
        ),
        evidence: Evidence {
            jobset: Some(h.jobset.to_string()),
            window: Some(w.clone()),
            ..Evidence::default()
        },
    }
}

/// Why every per-package action waits while the jobsets are held.
fn held_because(holds: &[Hold]) -> String {
    format!(
        "held: mass breakage in {}",
        holds
            .iter()
            .map(|h| format!(
                "{} (evals {}–{})",
                h.jobset, h.window.first.id, h.window.last.id
            ))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A step whose last attempts failed waits, longer after each failure, so
/// a failing edit, push or GitHub call is not repeated every cycle.
fn wait_after_failures(
    ledger: &Ledger,
    actions: Vec<(i64, Action)>,
    now: i64,
    deferred: &mut Vec<Deferred>,
) -> Vec<(i64, Action)> {
    let mut ready = Vec::new();
    for (oldest, action) in actions {
        match retry_wait(ledger, &action, now) {
            Some(why) => deferred.push(Deferred { action, why }),
            None => ready.push((oldest, action)),
        }
    }
    ready
}

/// Who a ping counts against: the maintainers, or the attribute when
/// nobody is known.
fn ping_keys(attr: &str, maintainers: &[String]) -> Vec<String> {
    if maintainers.is_empty() {
        vec![format!("attr:{attr}")]
    } else {
        maintainers.to_vec()
    }
}

/// Everything posted on an issue, whoever it names, counts toward one
/// daily ceiling.
fn posts_on_an_issue(kind: ActionKind, step: Option<&str>) -> bool {
    mentions(kind, step) || kind == ActionKind::Escalate
}

/// Pings recorded in the week before `now`, per [`ping_keys`].
fn pings_in_the_last_week(ledger: &Ledger, now: i64) -> HashMap<String, u32> {
    let mut pings: HashMap<String, u32> = HashMap::new();
    for r in &ledger.actions {
        if mentions(r.kind, r.step.as_deref())
            && r.state.counts()
            && r.at() > now - WEEK
            && r.at() <= now
        {
            let keys = if r.pinged.is_empty() {
                vec![format!("attr:{}", r.attr.as_deref().unwrap_or(""))]
            } else {
                r.pinged.clone()
            };
            for k in keys {
                *pings.entry(k).or_default() += 1;
            }
        }
    }
    pings
}

/// Keep the pings per maintainer per week and the posts per day within the
/// policy's limits, the oldest failures first; the rest waits.
fn within_post_limits(
    policy: &Policy,
    ledger: &Ledger,
    mut actions: Vec<(i64, Action)>,
    now: i64,
    deferred: &mut Vec<Deferred>,
) -> Vec<(i64, Action)> {
    let mut pings = pings_in_the_last_week(ledger, now);
    actions.sort_by(|(oa, a), (ob, b)| {
        oa.cmp(ob)
            .then(a.attr.cmp(&b.attr))
            .then(a.kind.cmp(&b.kind))
    });
    let cap = policy.limits.pings_per_maintainer_per_week;
    let ceiling = policy.limits.posts_per_day as usize;
    let mut posted_today = ledger
        .actions
        .iter()
        .filter(|r| {
            posts_on_an_issue(r.kind, r.step.as_deref())
                && r.state.counts()
                && r.at() > now - DAY
                && r.at() <= now
        })
        .count();
    let over_the_ceiling = || {
        format!(
            "limit: {ceiling} notices, reminders and escalations a day in all; the oldest failures go first"
        )
    };
    let mut kept = Vec::new();
    for (oldest, action) in actions {
        let step = action.step.as_deref();
        if mentions(action.kind, step) {
            let keys = ping_keys(
                action.attr.as_deref().unwrap_or(""),
                &action.evidence.maintainers,
            );
            if let Some(k) = keys
                .iter()
                .find(|k| pings.get(*k).copied().unwrap_or(0) >= cap)
            {
                deferred.push(Deferred {
                    action,
                    why: format!("limit: {k} already had {cap} pings in the last 7 days"),
                });
                continue;
            }
            if posted_today >= ceiling {
                deferred.push(Deferred {
                    action,
                    why: over_the_ceiling(),
                });
                continue;
            }
            for k in keys {
                *pings.entry(k).or_default() += 1;
            }
        } else if posts_on_an_issue(action.kind, step) && posted_today >= ceiling {
            deferred.push(Deferred {
                action,
                why: over_the_ceiling(),
            });
            continue;
        }
        if posts_on_an_issue(action.kind, step) {
            posted_today += 1;
        }
        kept.push((oldest, action));
    }
    kept
}

/// How many more pull requests may be opened now: what is left of the day's
/// and of the open ones' limits, counted from the ledger.
fn pull_request_budget(policy: &Policy, ledger: &Ledger, now: i64) -> usize {
    let mut pr_keys_today: HashSet<String> = HashSet::new();
    let mut pr_keys_open: HashSet<String> = HashSet::new();
    for r in &ledger.actions {
        if !(r.kind.opens_pr() && r.state.counts()) {
            continue;
        }
        let key =
            r.pr.map(|n| format!("#{n}"))
                .or_else(|| r.batch.clone())
                .unwrap_or_else(|| format!("record {}", r.id));
        if r.planned_at > now - DAY && r.planned_at <= now {
            pr_keys_today.insert(key.clone());
        }
        if matches!(r.state, RecordState::Intent | RecordState::Open) {
            pr_keys_open.insert(key);
        }
    }
    (policy.limits.prs_per_day as usize)
        .saturating_sub(pr_keys_today.len())
        .min((policy.limits.open_prs as usize).saturating_sub(pr_keys_open.len()))
}

/// The batch a pull request action joins, before it is cut into chunks:
/// its kind and the policy's grouping (`mark-broken/maintainer/alice`).
fn batch_group(policy: &Policy, facts: &Facts, action: &Action) -> String {
    let attr = action.attr.clone().unwrap_or_default();
    let group = match policy.batch.group_by {
        GroupBy::Attr => format!("attr/{attr}"),
        GroupBy::PackageSet => format!("set/{}", package_set(&attr)),
        GroupBy::Maintainer => match facts.maintainers.get(&attr).and_then(|m| m.iter().min()) {
            Some(login) => format!("maintainer/{login}"),
            None => format!("set/{}", package_set(&attr)),
        },
    };
    let kind = action.kind.as_str().replace('_', "-");
    format!("{kind}/{group}")
}

/// Cut each batch into chunks of at most the policy's size, each named by
/// its batch and number, the chunks with the oldest failures first.
fn chunks_of(
    policy: &Policy,
    batches: BTreeMap<String, Vec<(i64, Action)>>,
    now: i64,
) -> Vec<(String, Vec<Action>)> {
    let mut chunks: Vec<(i64, String, Vec<Action>)> = Vec::new();
    for (key, mut members) in batches {
        members.sort_by(|a, b| a.1.attr.cmp(&b.1.attr));
        for (i, chunk) in members
            .chunks(policy.batch.max_attrs_per_pr as usize)
            .enumerate()
        {
            let name = format!("{key}/{}", i + 1);
            let oldest = chunk.iter().map(|(o, _)| *o).min().unwrap_or(now);
            chunks.push((
                oldest,
                name.clone(),
                chunk
                    .iter()
                    .map(|(_, a)| {
                        let mut a = a.clone();
                        a.batch = Some(name.clone());
                        a
                    })
                    .collect(),
            ));
        }
    }
    chunks.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    chunks
        .into_iter()
        .map(|(_, name, members)| (name, members))
        .collect()
}

/// Pull requests: batch, then keep within the daily and open limits; the
/// other actions pass as they are.
fn batched_within_pull_limits(
    policy: &Policy,
    facts: &Facts,
    ledger: &Ledger,
    actions: Vec<(i64, Action)>,
    now: i64,
    deferred: &mut Vec<Deferred>,
) -> Vec<Action> {
    let budget = pull_request_budget(policy, ledger, now);
    let mut batches: BTreeMap<String, Vec<(i64, Action)>> = BTreeMap::new();
    let mut rest = Vec::new();
    for (oldest, action) in actions {
        // An update of our open pull request opens none: no batching, no
        // pull request budget.
        if !action.kind.opens_pr() || action.step.as_deref() == Some(UPDATE_STEP) {
            rest.push(action);
            continue;
        }
        batches
            .entry(batch_group(policy, facts, &action))
            .or_default()
            .push((oldest, action));
    }
    for (i, (name, members)) in chunks_of(policy, batches, now).into_iter().enumerate() {
        if i < budget {
            rest.extend(members);
        } else {
            for action in members {
                deferred.push(Deferred {
                    action,
                    why: format!(
                        "limit: pull requests (at most {} a day and {} open; batch {name} waits)",
                        policy.limits.prs_per_day, policy.limits.open_prs
                    ),
                });
            }
        }
    }
    rest
}

/// A plan reads the same for the same inputs: actions and deferred ones in
/// a fixed order.
fn sort_plan(actions: &mut [Action], deferred: &mut [Deferred]) {
    actions.sort_by(|a, b| {
        a.kind
            .cmp(&b.kind)
            .then(a.attr.cmp(&b.attr))
            .then(a.step.cmp(&b.step))
            .then(a.systems.cmp(&b.systems))
            .then(a.evidence.pr.cmp(&b.evidence.pr))
    });
    deferred.sort_by(|a, b| {
        a.action
            .kind
            .cmp(&b.action.kind)
            .then(a.action.attr.cmp(&b.action.attr))
            .then(a.action.step.cmp(&b.action.step))
    });
}

/// Index of an attribute's jobs for quick lookups in explain and digest.
impl Assessment {
    pub fn attr(&self, attr: &str) -> Option<&AttrAssessment> {
        self.attrs.get(attr)
    }
}

impl JobAssessment {
    pub fn since_ts(&self) -> Option<i64> {
        self.since_ts
    }

    pub fn since_index(&self) -> Option<u32> {
        self.since_index
    }
}
