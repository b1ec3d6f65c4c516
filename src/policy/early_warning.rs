//! Early warnings: a package that fails on a pre-merge branch (staging-next,
//! python-updates) but builds on trunk is told to its maintainers while it
//! can still be fixed on the branch ([`super::config::EarlyWarning`]).
//!
//! A warning is a heads-up, never a mark, a retirement or a deadline. Its
//! life, one `warn` record per outward step (`batch` names the branch):
//!
//! - `notice`: the first one, mentioning the maintainers (within the same
//!   ping and post limits as a trunk notice);
//! - `update-EVAL`: the text edited when a newer eval of the branch came in
//!   and the package still fails there (an edit, never a new post);
//! - `close`: it builds on the branch again;
//! - `handover`: the branch landed and trunk now fails the same way; the
//!   trunk's ladder takes over, counts the warning as its notice
//!   ([`handed_over`]) and starts its clock where the branch's streak began.
//!
//! Evidence: an own failure on the branch seen in `min_evals` evals or on
//! `min_derivations` derivations, of a job that builds on trunk, not flaky,
//! and not during a mass breakage of that branch (the circuit breaker's
//! rules, applied to the branch alone). A victim ("dependency failed") is
//! warned about only when its root is warned about on the same branch and
//! platform; its warning names the root.
//!
//! Pure like the rest of the engine.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::config::{EarlyWarning, Policy};
use super::engine::{AttrAssessment, Hold, JobAssessment, cutoff};
use super::facts::{BranchPull, Facts, JobsetFacts};
use super::ledger::{ActionKind, ActionRecord, Ledger};
use super::plan::{Action, Evidence, JobEvidence, platforms_in_words};
use crate::config::JobsetRef;
use crate::history::{JobView, Signal, StatusClass, view};

pub const NOTICE: &str = "notice";
pub const CLOSE: &str = "close";
pub const HANDOVER: &str = "handover";
const UPDATE_PREFIX: &str = "update-";

/// Whether a recorded or planned step mentions maintainers: the ladder's
/// notices and reminders, and an early warning's first notice (its edits,
/// closing and handover do not).
pub fn mentions(kind: ActionKind, step: Option<&str>) -> bool {
    kind.pings() || (kind == ActionKind::Warn && step == Some(NOTICE))
}

/// The step that edits a warning for the branch's eval `eval`.
pub fn update_step(eval: i64) -> String {
    format!("{UPDATE_PREFIX}{eval}")
}

/// One package's warning about one branch, as of `now`.
#[derive(Debug, Clone)]
pub struct Warning {
    pub attr: String,
    pub branch: JobsetRef,
    /// Platforms it fails on there, with the evidence a warning needs.
    pub systems: Vec<String>,
    /// The branch's evidence per platform: first failing eval and its
    /// revision, last good one, compare link, Hydra links.
    pub jobs: Vec<JobEvidence>,
    /// For a victim: the dependency that fails.
    pub root: Option<String>,
    /// For a root: the packages on the branch that fail because of it.
    pub victims: Vec<String>,
    pub maintainers: Vec<String>,
    /// The notice in force (not closed or handed over), if one was given.
    pub notice: Option<ActionRecord>,
    /// The step due now, if any.
    pub due: Option<String>,
    /// Why nothing is said although the evidence is there.
    pub quiet: Option<String>,
    /// The branch's newest pull request into its base, when known.
    pub pull: Option<BranchPull>,
    since_ts: i64,
}

impl Warning {
    /// When the branch's streak began (the oldest platform).
    pub fn since_ts(&self) -> i64 {
        self.since_ts
    }
}

/// A warning the trunk's ladder takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandedOver {
    /// When the warning was given: it counts as the trunk's notice.
    pub noticed_at: i64,
    /// Where the branch's streak began: the trunk's clock starts there.
    pub branch_since: i64,
}

/// The newest warning notice of `attr` covering `system` on any branch,
/// unless it was closed (the package built on the branch again: a later
/// trunk failure is a new one). Used by the ladder of a trunk job.
pub fn handed_over(
    policy: &Policy,
    facts: &Facts,
    records: &[&ActionRecord],
    now: i64,
    attr: &str,
    system: &str,
) -> Option<HandedOver> {
    let ew = &policy.early_warning;
    let notice = records
        .iter()
        .filter(|r| {
            r.kind == ActionKind::Warn
                && r.step.as_deref() == Some(NOTICE)
                && r.state.counts()
                && r.planned_at <= now
                && r.covers(system)
        })
        .max_by_key(|r| (r.planned_at, r.id))?;
    let closed = records.iter().any(|r| {
        r.kind == ActionKind::Warn
            && r.batch == notice.batch
            && r.step.as_deref() == Some(CLOSE)
            && r.state.counts()
            && r.planned_at >= notice.planned_at
            && r.planned_at <= now
    });
    if closed {
        return None;
    }
    let branch = ew
        .branches
        .iter()
        .find(|b| Some(b.to_string()) == notice.batch)?;
    let branch_since = branch_view(policy, facts, branch, attr, system, now)
        .and_then(|(js, v)| {
            let st = v.streak.filter(|st| st.signal != Signal::Ok)?;
            Some(js.evals[st.since as usize].timestamp)
        })
        .unwrap_or(notice.at());
    Some(HandedOver {
        noticed_at: notice.at(),
        branch_since: branch_since.min(notice.at()),
    })
}

fn jobset_facts<'f>(facts: &'f Facts, jobset: &JobsetRef) -> Option<&'f JobsetFacts> {
    facts.jobsets.iter().find(|js| &js.jobset == jobset)
}

/// One job of a jobset as of `now` (a scan of the jobset: only for the few
/// jobs a handover concerns).
fn branch_view<'f>(
    policy: &Policy,
    facts: &'f Facts,
    jobset: &JobsetRef,
    attr: &str,
    system: &str,
    now: i64,
) -> Option<(&'f JobsetFacts, JobView)> {
    let js = jobset_facts(facts, jobset)?;
    let cut = cutoff(js, now)?;
    let job = js
        .jobs
        .iter()
        .find(|j| j.attr == attr && j.system == system)?;
    view(&job.runs, cut, &policy.streak).map(|v| (js, v))
}

/// Trunk's word on some jobs: whether each builds, or fails (own failure
/// or dependency). Jobs missing from trunk are in neither set.
struct TrunkStatus {
    builds: HashSet<(String, String)>,
    fails: HashSet<(String, String)>,
}

fn trunk_status(
    policy: &Policy,
    facts: &Facts,
    now: i64,
    wanted: &HashSet<(&str, &str)>,
) -> TrunkStatus {
    let mut out = TrunkStatus {
        builds: HashSet::new(),
        fails: HashSet::new(),
    };
    if wanted.is_empty() {
        return out;
    }
    let Some(js) = jobset_facts(facts, &policy.early_warning.trunk) else {
        return out;
    };
    let Some(cut) = cutoff(js, now) else {
        return out;
    };
    for job in &js.jobs {
        if !wanted.contains(&(job.attr.as_str(), job.system.as_str())) {
            continue;
        }
        let Some(v) = view(&job.runs, cut, &policy.streak) else {
            continue;
        };
        let key = (job.attr.clone(), job.system.clone());
        if v.builds() {
            out.builds.insert(key);
        } else if v.present
            && !v.flaky
            && v.streak
                .as_ref()
                .is_some_and(|s| matches!(s.signal, Signal::Fail | Signal::Dep))
        {
            out.fails.insert(key);
        }
    }
    out
}

/// A branch job with enough evidence for a warning.
struct Candidate<'x> {
    evidence: &'x JobEvidence,
    root: Option<String>,
}

/// Branch and system → the attributes failing on their own there with
/// enough evidence for a warning.
type Roots<'a> = HashMap<(&'a JobsetRef, &'a str), BTreeSet<&'a str>>;
/// Per attribute and branch, its jobs worth a warning.
type Candidates<'a> = BTreeMap<(&'a str, &'a JobsetRef), Vec<Candidate<'a>>>;
/// Branch and root → the attributes failing because of it there.
type Victims<'a> = HashMap<(&'a JobsetRef, &'a str), BTreeSet<&'a str>>;
/// Per attribute and branch (as written in the ledger), the notice in force.
type Notices<'a> = BTreeMap<(&'a str, String), &'a ActionRecord>;

/// Every warning as of `now`: due, in force, or held back (with why).
pub fn assess(
    policy: &Policy,
    facts: &Facts,
    ledger: &Ledger,
    now: i64,
    attrs: &BTreeMap<String, AttrAssessment>,
    branch_holds: &[Hold],
) -> Vec<Warning> {
    let ew = &policy.early_warning;
    if ew.branches.is_empty() {
        return Vec::new();
    }
    let roots = own_failures(ew, attrs);
    let (candidates, victims_of) = candidates(ew, attrs, &roots);
    let notices = notices_in_force(ledger, now);
    let trunk = trunk_status(policy, facts, now, &on_trunk_wanted(&candidates, &notices));
    let assessment = Assessing {
        policy,
        facts,
        ledger,
        now,
        branch_holds,
        candidates,
        victims_of,
        notices,
        trunk,
    };
    let mut keys: BTreeSet<(&str, JobsetRef)> = assessment
        .candidates
        .keys()
        .map(|(a, b)| (*a, (*b).clone()))
        .collect();
    for (attr, branch) in assessment.notices.keys() {
        if let Some(b) = ew.branches.iter().find(|b| &b.to_string() == branch) {
            keys.insert((attr, b.clone()));
        }
    }
    keys.into_iter()
        .filter_map(|(attr, branch)| assessment.warning(attrs.get(attr)?, branch))
        .collect()
}

/// A job's evidence on a branch is enough for a warning.
fn enough(ew: &EarlyWarning, e: &JobEvidence) -> bool {
    e.evals >= ew.min_evals || e.derivations >= ew.min_derivations
}

/// Own failures on the branches with enough evidence: the roots a victim
/// may be warned about.
fn own_failures<'a>(ew: &EarlyWarning, attrs: &'a BTreeMap<String, AttrAssessment>) -> Roots<'a> {
    let mut roots: Roots<'a> = HashMap::new();
    for a in attrs.values() {
        for j in &a.jobs {
            if ew.is_branch(&j.jobset)
                && j.present
                && !j.flaky
                && j.streak_class == Some(StatusClass::Failing)
                && j.evidence.as_ref().is_some_and(|e| enough(ew, e))
            {
                roots
                    .entry((&j.jobset, j.system.as_str()))
                    .or_default()
                    .insert(a.attr.as_str());
            }
        }
    }
    roots
}

/// Per (attr, branch): its own failures, and its failures as a victim of
/// one of `roots` (then also recorded in the victims of that root).
fn candidates<'a>(
    ew: &EarlyWarning,
    attrs: &'a BTreeMap<String, AttrAssessment>,
    roots: &Roots<'a>,
) -> (Candidates<'a>, Victims<'a>) {
    let mut candidates: Candidates<'a> = BTreeMap::new();
    let mut victims_of: Victims<'a> = HashMap::new();
    for a in attrs.values() {
        for j in &a.jobs {
            if !ew.is_branch(&j.jobset) || !j.present || j.flaky {
                continue;
            }
            let Some(evidence) = &j.evidence else {
                continue;
            };
            let key = (&j.jobset, j.system.as_str());
            let root = match j.streak_class {
                Some(StatusClass::Failing) if enough(ew, evidence) => None,
                Some(StatusClass::DependencyFailed) => match &j.charged_to {
                    Some(root)
                        if root != &a.attr
                            && roots.get(&key).is_some_and(|r| r.contains(root.as_str())) =>
                    {
                        victims_of
                            .entry((&j.jobset, root.as_str()))
                            .or_default()
                            .insert(a.attr.as_str());
                        Some(root.clone())
                    }
                    _ => continue,
                },
                _ => continue,
            };
            candidates
                .entry((a.attr.as_str(), &j.jobset))
                .or_default()
                .push(Candidate { evidence, root });
        }
    }
    (candidates, victims_of)
}

/// The warnings given and neither closed nor handed over as of `now`.
fn notices_in_force(ledger: &Ledger, now: i64) -> Notices<'_> {
    let mut notices: Notices<'_> = BTreeMap::new();
    for r in &ledger.actions {
        if r.kind != ActionKind::Warn || !r.state.counts() || r.planned_at > now {
            continue;
        }
        let (Some(attr), Some(branch)) = (r.attr.as_deref(), r.batch.clone()) else {
            continue;
        };
        match r.step.as_deref() {
            Some(NOTICE) => {
                notices.insert((attr, branch), r);
            }
            Some(CLOSE | HANDOVER)
                if notices
                    .get(&(attr, branch.clone()))
                    .is_some_and(|n| n.planned_at <= r.planned_at) =>
            {
                notices.remove(&(attr, branch));
            }
            _ => {}
        }
    }
    notices
}

/// The (attr, system) pairs whose state on trunk matters: those of the
/// candidates and of the notices in force.
fn on_trunk_wanted<'a>(
    candidates: &Candidates<'a>,
    notices: &Notices<'a>,
) -> HashSet<(&'a str, &'a str)> {
    let mut wanted = HashSet::new();
    for ((attr, _), cs) in candidates {
        for c in cs {
            wanted.insert((*attr, c.evidence.system.as_str()));
        }
    }
    for ((attr, _), n) in notices {
        for s in &n.systems {
            wanted.insert((*attr, s.as_str()));
        }
    }
    wanted
}

/// Everything one assessment of the warnings reads.
struct Assessing<'a> {
    policy: &'a Policy,
    facts: &'a Facts,
    ledger: &'a Ledger,
    now: i64,
    branch_holds: &'a [Hold],
    candidates: Candidates<'a>,
    victims_of: Victims<'a>,
    notices: Notices<'a>,
    trunk: TrunkStatus,
}

impl Assessing<'_> {
    fn builds_on_trunk(&self, attr: &str, system: &str) -> bool {
        self.trunk
            .builds
            .contains(&(attr.to_owned(), system.to_owned()))
    }

    fn fails_on_trunk(&self, attr: &str, system: &str) -> bool {
        self.trunk
            .fails
            .contains(&(attr.to_owned(), system.to_owned()))
    }

    /// The warning about `a` on `branch`, with its step due (if any).
    fn warning(&self, a: &AttrAssessment, branch: JobsetRef) -> Option<Warning> {
        let attr = a.attr.as_str();
        let notice = self.notices.get(&(attr, branch.to_string())).copied();
        let cs: Vec<&Candidate<'_>> = self
            .candidates
            .get(&(attr, &branch))
            .map(|v| {
                v.iter()
                    .filter(|c| self.builds_on_trunk(attr, &c.evidence.system) || notice.is_some())
                    .collect()
            })
            .unwrap_or_default();
        let branch_jobs: Vec<&JobAssessment> =
            a.jobs.iter().filter(|j| j.jobset == branch).collect();
        let mut systems: BTreeSet<String> = cs.iter().map(|c| c.evidence.system.clone()).collect();
        let mut jobs: Vec<JobEvidence> = cs.iter().map(|c| c.evidence.clone()).collect();
        if let Some(n) = notice {
            // The platforms warned about stay in the text while they fail.
            for j in &branch_jobs {
                if n.covers(&j.system)
                    && !systems.contains(&j.system)
                    && j.streak_class.is_some_and(|c| c != StatusClass::Ok)
                    && let Some(e) = &j.evidence
                {
                    systems.insert(j.system.clone());
                    jobs.push(e.clone());
                }
            }
        }
        jobs.sort_by(|x, y| x.system.cmp(&y.system));
        let since_ts = branch_jobs
            .iter()
            .filter(|j| systems.contains(&j.system))
            .filter_map(|j| j.since_ts())
            .min()
            .unwrap_or(self.now);
        let mut w = Warning {
            attr: attr.to_owned(),
            victims: self
                .victims_of
                .get(&(&branch, attr))
                .map(|v| v.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
            pull: self.facts.branch_pulls.get(&branch).cloned(),
            branch: branch.clone(),
            systems: systems.into_iter().collect(),
            jobs,
            root: cs.iter().find_map(|c| c.root.clone()),
            maintainers: a.maintainers.clone(),
            notice: notice.cloned(),
            due: None,
            quiet: None,
            since_ts,
        };
        match notice {
            None => match self.why_quiet(a, &w) {
                Some(why) => w.quiet = Some(why),
                None => w.due = Some(NOTICE.to_owned()),
            },
            Some(n) => w.due = self.step_after(a, &w, n, &branch_jobs),
        }
        Some(w)
    }

    /// Why a warning not given yet is not given now, if it is not due.
    fn why_quiet(&self, a: &AttrAssessment, w: &Warning) -> Option<String> {
        let ew = &self.policy.early_warning;
        if let Some(o) = ew.skipped(&w.branch, &a.attr) {
            return Some(format!("early_warning.override {}: {}", o.index, o.reason));
        }
        if let Some(h) = self.branch_holds.iter().find(|h| h.jobset == w.branch) {
            return Some(format!(
                "held: mass breakage on {} (evals {}–{})",
                h.jobset, h.window.first.id, h.window.last.id
            ));
        }
        if let Some(why) = opted_out(a) {
            return Some(why);
        }
        if w.systems.is_empty() {
            return Some(format!("it does not build on {} either", ew.trunk));
        }
        None
    }

    /// The step due for a warning in force: the handover when trunk fails
    /// the same way, the close when the branch builds it again, else an
    /// edit for a newer eval of the branch not said yet.
    fn step_after(
        &self,
        a: &AttrAssessment,
        w: &Warning,
        n: &ActionRecord,
        branch_jobs: &[&JobAssessment],
    ) -> Option<String> {
        let attr = a.attr.as_str();
        let covered: Vec<&str> = n.systems.iter().map(String::as_str).collect();
        if covered.iter().any(|s| self.fails_on_trunk(attr, s)) {
            return Some(HANDOVER.to_owned());
        }
        // The branch's jobs of a warned package are assessed (the ledger
        // speaks of it): `JobView::builds` in their terms.
        let builds_again = !covered.is_empty()
            && covered.iter().all(|s| {
                branch_jobs.iter().any(|j| {
                    j.system == *s
                        && j.present
                        && !j.flaky
                        && j.streak_class == Some(StatusClass::Ok)
                })
            });
        if builds_again {
            return Some(CLOSE.to_owned());
        }
        if opted_out(a).is_some() {
            return None;
        }
        let newest = jobset_facts(self.facts, &w.branch)
            .and_then(|js| cutoff(js, self.now).map(|c| &js.evals[c as usize]))?;
        let said_about = |r: &&ActionRecord| {
            r.kind == ActionKind::Warn
                && r.attr.as_deref() == Some(attr)
                && r.batch == n.batch
                && r.state.counts()
        };
        let last_said = self
            .ledger
            .actions
            .iter()
            .filter(said_about)
            .filter(|r| r.planned_at >= n.planned_at && r.planned_at <= self.now)
            .map(|r| r.at())
            .max()
            .unwrap_or(n.at());
        let update = update_step(newest.id);
        let edited = self
            .ledger
            .actions
            .iter()
            .filter(said_about)
            .any(|r| r.step.as_deref() == Some(update.as_str()));
        (newest.timestamp > last_said && !edited).then_some(update)
    }
}

/// Why the package's maintainers asked for quiet, if they did.
fn opted_out(a: &AttrAssessment) -> Option<String> {
    a.opted_out
        .as_ref()
        .map(|o| format!("opted out ({})", o.kind.as_str()))
        .or_else(|| {
            a.snoozed_until
                .map(|t| format!("snoozed until {}", crate::format::time(t)))
        })
}

/// The action a warning's due step becomes.
pub fn action(policy: &Policy, w: &Warning) -> Option<Action> {
    let step = w.due.clone()?;
    let ew = &policy.early_warning;
    let systems = match &w.notice {
        Some(n) if step != NOTICE => {
            let mut s: BTreeSet<String> = n.systems.iter().cloned().collect();
            s.extend(w.systems.iter().cloned());
            s.into_iter().collect()
        }
        _ => w.systems.clone(),
    };
    let platforms = platforms_in_words(false, &systems);
    let first = w.jobs.iter().min_by(|a, b| a.since.time.cmp(&b.since.time));
    let since = first
        .map(|e| {
            format!(
                " since eval {} ({})",
                e.since.id,
                &e.since.time[..10.min(e.since.time.len())]
            )
        })
        .unwrap_or_default();
    let because = w
        .root
        .as_ref()
        .map(|r| format!(", because its dependency {r} fails there"))
        .unwrap_or_default();
    let reason = match step.as_str() {
        NOTICE => format!(
            "it fails on {platforms} on {}{since}{because} but builds on {}: a heads-up before the branch lands",
            w.branch, ew.trunk
        ),
        CLOSE => format!("it builds again on {} on {platforms}", w.branch),
        HANDOVER => format!(
            "{} fails on {platforms} on {} too: the branch landed, and the usual notice period runs from the branch's first failure; the warning counts as the notice",
            w.attr, ew.trunk
        ),
        _ => format!(
            "it still fails on {platforms} on {}{since}{because}",
            w.branch
        ),
    };
    Some(Action {
        kind: ActionKind::Warn,
        attr: Some(w.attr.clone()),
        systems,
        all_platforms: false,
        step: Some(step),
        batch: Some(w.branch.to_string()),
        reason,
        evidence: Evidence {
            jobset: Some(w.branch.to_string()),
            jobs: w.jobs.clone(),
            maintainers: w.maintainers.clone(),
            root: w.root.clone(),
            branch_pull: w.pull.clone(),
            blast_radius: (!w.victims.is_empty())
                .then(|| u32::try_from(w.victims.len()).unwrap_or(u32::MAX)),
            ledger: w.notice.iter().map(|n| n.id).collect(),
            // The marker is read for every package warned about; labels
            // and commands are followed on tracking issues only.
            opt_out: Some(format!(
                "No warnings about this package at all: add the comment `{}` to its file.",
                policy.opt_out.marker
            )),
            ..Evidence::default()
        },
    })
}

/// A warning in words, for `explain`: where it fails, what was said, and
/// what comes next (or why nothing is said).
pub fn explain(w: &Warning) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  early warning on {}: fails on {}{}",
        w.branch,
        platforms_in_words(false, &w.systems),
        w.root
            .as_deref()
            .map(|r| format!(" because its dependency {r} fails there"))
            .unwrap_or_default()
    );
    for e in &w.jobs {
        let _ = writeln!(
            out,
            "    {}: since eval {} ({}, {}), {} evals, {} derivations",
            e.system,
            e.since.id,
            &e.since.time[..10.min(e.since.time.len())],
            e.since
                .revision
                .as_deref()
                .map_or("?", |r| &r[..r.len().min(12)]),
            e.evals,
            e.derivations
        );
    }
    if let Some(pull) = &w.pull {
        let _ = writeln!(out, "    the branch's pull request: {}", pull.in_words());
    }
    if !w.victims.is_empty() {
        let _ = writeln!(
            out,
            "    blast radius on the branch: {}",
            w.victims.join(", ")
        );
    }
    if let Some(n) = &w.notice {
        let _ = writeln!(
            out,
            "    warned on {}{}",
            &crate::format::time(n.at())[..10],
            n.issue.map(|i| format!(" in #{i}")).unwrap_or_default()
        );
    }
    match (&w.due, &w.quiet) {
        (Some(step), _) => {
            let _ = writeln!(out, "    due now: {step}");
        }
        (None, Some(why)) => {
            let _ = writeln!(out, "    nothing said: {why}");
        }
        (None, None) => {}
    }
    out
}
