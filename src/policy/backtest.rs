//! Backtesting: replay stored history day by day under a policy — planning
//! after every eval, as the daemon does, and at the end of each day —
//! pretending every planned action was carried out, and count what it would
//! have done.
//!
//! The replay sees each build's final status (a build restarted later shows
//! its last result from the start) and assumes a mark-broken PR is merged
//! `backtest.assumed_merge_delay` after it opens. A mark is a false positive
//! when the job built again within `backtest.false_positive_within`: the
//! history went on without the mark, so it tells. A false negative is the
//! other way round: a job whose own failure outlived its mark deadline
//! (`mark_broken_after` from the start of the streak, snoozes excluded) and
//! that was never marked, with the reason the engine had when the deadline
//! passed (a hold, a limit, an opt-out, an override, ...).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::config::Policy;
use super::engine::{Assessment, AttrAssessment, JobAssessment, Rule, assess, cutoff, plan_from};
use super::facts::Facts;
use super::ledger::{ActionKind, ActionRecord, Ledger, OptOut, RecordState};
use super::plan::{Action, Plan};
use crate::format::time;
use crate::history::StatusClass;

const DAY: i64 = 86_400;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DayRow {
    pub day: String,
    pub notify: u32,
    pub remind: u32,
    /// Early warnings given (first notices about a pre-merge branch).
    pub warn: u32,
    pub mark_broken: u32,
    pub prs: u32,
    pub retire: u32,
    pub escalate: u32,
    pub close_pr: u32,
    pub deferred: u32,
    pub held: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FalsePositive {
    pub attr: String,
    pub system: String,
    pub marked: String,
    pub built_again: String,
}

/// Why a job past its mark deadline was not marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissReason {
    /// The circuit breaker held every per-package action.
    Held,
    /// A limit on pull requests or pings deferred the mark (or the steps
    /// before it).
    Limits,
    /// The maintainers' marker or label asked to leave it alone.
    OptedOut,
    /// A snooze was in force.
    Snoozed,
    /// A protected package: escalated to people, never marked.
    Protected,
    /// An override of the policy skips it.
    Skipped,
    /// It alternated between building and failing.
    Flaky,
    /// Not yet seen failing on `ladder.mark_min_derivations` derivations.
    NotEnoughDerivations,
    /// Too few evals or derivations to count as a streak at all.
    NotAStreak,
    /// The notice or a reminder came late (an earlier hold or limit, or
    /// `min_notice`): the mark was not due yet.
    NoticePeriod,
}

impl MissReason {
    /// In words, for the text report.
    pub fn as_str(self) -> &'static str {
        match self {
            MissReason::Held => "held by the circuit breaker",
            MissReason::Limits => "deferred by limits",
            MissReason::OptedOut => "opted out",
            MissReason::Snoozed => "snoozed",
            MissReason::Protected => "protected (escalated, never marked)",
            MissReason::Skipped => "skipped by an override",
            MissReason::Flaky => "flaky",
            MissReason::NotEnoughDerivations => "not enough derivations",
            MissReason::NotAStreak => "not a streak yet",
            MissReason::NoticePeriod => "the notice period still ran",
        }
    }
}

/// A package that failed past its mark deadline in the replay and was never
/// marked: one per attribute and reason, with the systems concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FalseNegative {
    pub attr: String,
    /// Sorted.
    pub systems: Vec<String>,
    /// Day the (earliest) failure began.
    pub failing_since: String,
    /// Day the (earliest) mark deadline passed.
    pub deadline: String,
    /// What kept it from being marked when the deadline passed.
    pub reason: MissReason,
    /// The engine's words for it (the deferral, the override, ...).
    pub detail: String,
    /// Other reasons seen on later days while it stayed unmarked, if any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub later: Vec<MissReason>,
}

/// One overdue, unmarked failure episode while the replay runs.
#[derive(Debug, Clone)]
struct Miss {
    since: i64,
    deadline: i64,
    reason: MissReason,
    detail: String,
    later: BTreeSet<MissReason>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldDay {
    pub day: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BacktestReport {
    pub policy: String,
    pub from: String,
    pub to: String,
    pub days: u32,
    /// Notices and reminders (each names the package's maintainers once).
    pub pings: u32,
    pub notices: u32,
    /// Early warnings about pre-merge branches (each mentions maintainers).
    pub warnings: u32,
    pub reminders: u32,
    /// Pull requests opened (batches) and the mark actions in them.
    pub prs: u32,
    pub marks: u32,
    pub retirements: u32,
    pub escalations: u32,
    pub closed_prs: u32,
    pub deferred: u32,
    pub holds: Vec<HoldDay>,
    pub false_positives: Vec<FalsePositive>,
    /// Failures past their mark deadline that were never marked, and why.
    pub false_negatives: Vec<FalseNegative>,
    pub per_day: Vec<DayRow>,
}

/// Replay `facts` from `from` to `to` (Unix s, days planned at their end).
/// `opt_outs` are the maintainers' wishes known to the store (markers,
/// labels, snoozes); each counts from when it was recorded.
pub fn backtest(
    policy: &Policy,
    facts: &Facts,
    opt_outs: &[OptOut],
    from: i64,
    to: i64,
) -> BacktestReport {
    let mut report = BacktestReport::empty(policy, from, to);
    let mut replay = Replay {
        policy,
        facts,
        ledger: Ledger {
            opt_outs: opt_outs.to_vec(),
            ..Ledger::default()
        },
        next_id: 1,
        next_pr: 1,
        misses: BTreeMap::new(),
        marked: Vec::new(),
    };
    let eval_times = acted_on_eval_times(policy, facts);
    let mut day_start = from - from.rem_euclid(DAY);
    while day_start <= to {
        let day_end = day_start + DAY - 1;
        let mut row = DayRow {
            day: time(day_end)[..10].to_owned(),
            ..DayRow::default()
        };
        let mut day_holds: Vec<String> = Vec::new();
        // The daemon plans after every ingested eval; the replay does too,
        // and once more at the end of each day (deadlines pass without evals).
        let lo = eval_times.partition_point(|t| *t < day_start.max(from));
        let hi = eval_times.partition_point(|t| *t <= day_end);
        for now in eval_times[lo..hi].iter().copied().chain([day_end]) {
            replay.merge_due(now);
            replay.moment(now, now == day_end, &mut row, &mut day_holds, &mut report);
        }
        report.count_day(row);
        day_start += DAY;
    }
    report.false_positives = false_positives(policy, facts, &replay.marked);
    report.false_negatives = false_negatives(replay.misses, &replay.marked);
    report
}

/// When the acted-on jobsets were evaluated, oldest first, each once.
fn acted_on_eval_times(policy: &Policy, facts: &Facts) -> Vec<i64> {
    let mut times: Vec<i64> = facts
        .jobsets
        .iter()
        .filter(|js| policy.acts_on(&js.jobset))
        .flat_map(|js| js.evals.iter().map(|e| e.timestamp))
        .collect();
    times.sort_unstable();
    times.dedup();
    times
}

/// The state of a replay: the ledger it writes as the daemon would, and
/// what it learns for the report.
struct Replay<'a> {
    policy: &'a Policy,
    facts: &'a Facts,
    ledger: Ledger,
    next_id: i64,
    next_pr: u64,
    /// (attr, system, streak start) → why it is overdue and unmarked.
    misses: BTreeMap<(String, String, i64), Miss>,
    /// (attr, systems, all platforms, when) of every mark.
    marked: Vec<(String, Vec<String>, bool, i64)>,
}

impl Replay<'_> {
    /// Pull requests open for the assumed merge delay are merged.
    fn merge_due(&mut self, now: i64) {
        let merge_delay = self.policy.backtest.assumed_merge_delay.secs();
        for r in &mut self.ledger.actions {
            if r.kind.opens_pr()
                && r.state == RecordState::Open
                && r.planned_at + merge_delay <= now
            {
                r.state = RecordState::Merged;
                r.closed_at = Some(r.planned_at + merge_delay);
            }
        }
    }

    /// One plan as of `now`, its actions counted in `row` and written to
    /// the ledger as done (or open, for pull requests).
    fn moment(
        &mut self,
        now: i64,
        end_of_day: bool,
        row: &mut DayRow,
        day_holds: &mut Vec<String>,
        report: &mut BacktestReport,
    ) {
        let assessment = assess(self.policy, self.facts, &self.ledger, now);
        let p = plan_from(self.policy, self.facts, &self.ledger, &assessment);
        row.held |= p.held;
        if end_of_day {
            row.deferred = u32::try_from(p.deferred.len()).unwrap_or(u32::MAX);
            note_misses(self.policy, &assessment, &p, &mut self.misses);
        }
        // One pull request per batch and moment.
        let mut batches: BTreeMap<String, u64> = BTreeMap::new();
        for a in &p.actions {
            let mut record = self.record(a, now);
            match a.kind {
                ActionKind::Hold => {
                    note_hold(a, row, day_holds, report);
                    continue;
                }
                ActionKind::Notify => row.notify += 1,
                ActionKind::Warn => {
                    if a.step.as_deref() == Some(super::early_warning::NOTICE) {
                        row.warn += 1;
                    }
                }
                ActionKind::Remind => row.remind += 1,
                ActionKind::Escalate => row.escalate += 1,
                ActionKind::MarkBroken | ActionKind::Retire => {
                    let batch = a.batch.clone().unwrap_or_default();
                    let next_pr = &mut self.next_pr;
                    let pr = *batches.entry(batch).or_insert_with(|| {
                        *next_pr += 1;
                        *next_pr
                    });
                    record.pr = Some(pr);
                    record.state = RecordState::Open;
                    if a.kind == ActionKind::MarkBroken {
                        row.mark_broken += 1;
                        self.marked.push((
                            a.attr.clone().unwrap_or_default(),
                            a.systems.clone(),
                            a.all_platforms,
                            now,
                        ));
                    } else {
                        row.retire += 1;
                    }
                }
                ActionKind::ClosePr => {
                    row.close_pr += 1;
                    for r in &mut self.ledger.actions {
                        if r.pr == a.evidence.pr && r.state == RecordState::Open {
                            r.state = RecordState::Closed;
                            r.closed_at = Some(now);
                        }
                    }
                }
            }
            self.ledger.actions.push(record);
        }
        row.prs += u32::try_from(batches.len()).unwrap_or(u32::MAX);
    }

    /// The ledger record of an action done at `now`.
    fn record(&mut self, a: &Action, now: i64) -> ActionRecord {
        let id = self.next_id;
        self.next_id += 1;
        ActionRecord {
            id,
            kind: a.kind,
            attr: a.attr.clone(),
            systems: a.systems.clone(),
            all_platforms: a.all_platforms,
            step: a.step.clone(),
            batch: a.batch.clone(),
            state: RecordState::Done,
            planned_at: now,
            done_at: Some(now),
            closed_at: None,
            pr: None,
            issue: None,
            pinged: a.evidence.maintainers.clone(),
            error: None,
            refused: None,
        }
    }
}

/// A hold is reported once per day and eval window.
fn note_hold(a: &Action, row: &DayRow, day_holds: &mut Vec<String>, report: &mut BacktestReport) {
    let window = a
        .evidence
        .window
        .as_ref()
        .map(|w| format!("evals {} to {}", w.first.id, w.last.id))
        .unwrap_or_default();
    if !day_holds.contains(&window) {
        day_holds.push(window);
        report.holds.push(HoldDay {
            day: row.day.clone(),
            reason: a.reason.clone(),
        });
    }
}

impl BacktestReport {
    fn empty(policy: &Policy, from: i64, to: i64) -> BacktestReport {
        BacktestReport {
            policy: policy.source.clone(),
            from: time(from)[..10].to_owned(),
            to: time(to)[..10].to_owned(),
            days: 0,
            pings: 0,
            notices: 0,
            warnings: 0,
            reminders: 0,
            prs: 0,
            marks: 0,
            retirements: 0,
            escalations: 0,
            closed_prs: 0,
            deferred: 0,
            holds: Vec::new(),
            false_positives: Vec::new(),
            false_negatives: Vec::new(),
            per_day: Vec::new(),
        }
    }

    /// Add a day's counts to the totals, and the day to the table.
    fn count_day(&mut self, row: DayRow) {
        self.days += 1;
        self.notices += row.notify;
        self.reminders += row.remind;
        self.warnings += row.warn;
        self.pings += row.notify + row.remind + row.warn;
        self.prs += row.prs;
        self.marks += row.mark_broken;
        self.retirements += row.retire;
        self.escalations += row.escalate;
        self.closed_prs += row.close_pr;
        self.deferred += row.deferred;
        self.per_day.push(row);
    }
}

/// Note every job past its mark deadline at `plan.now` that has no mark for
/// its failure, with the reason; the first reason of an episode stays, later
/// different ones are kept as `later`.
fn note_misses(
    policy: &Policy,
    assessment: &Assessment,
    plan: &Plan,
    misses: &mut BTreeMap<(String, String, i64), Miss>,
) {
    let now = plan.now;
    for attr in assessment.attrs.values() {
        for job in &attr.jobs {
            let Some(since) = job.since_ts() else {
                continue;
            };
            if job.streak_class != Some(StatusClass::Failing) {
                continue;
            }
            let clock_start = match &job.rule {
                Rule::Ladder(state) if state.mark.is_some() => continue,
                Rule::Ladder(state) => state.clock_start,
                Rule::Flaky { .. } | Rule::NotYetReal { .. } | Rule::Skipped { .. } => since,
                Rule::Ok
                | Rule::NoSignal
                | Rule::AwaitingCause
                | Rule::Gone
                | Rule::Watched
                | Rule::Victim { .. } => {
                    continue;
                }
            };
            let deadline = clock_start + job.ladder.ladder.mark_broken_after.secs();
            if now < deadline || being_marked(plan, &attr.attr, &job.system) {
                continue;
            }
            let (reason, detail) = miss_reason(policy, attr, job, plan);
            misses
                .entry((attr.attr.clone(), job.system.clone(), since))
                .and_modify(|m| {
                    if m.reason != reason {
                        m.later.insert(reason);
                    }
                })
                .or_insert(Miss {
                    since,
                    deadline,
                    reason,
                    detail,
                    later: BTreeSet::new(),
                });
        }
    }
}

fn being_marked(plan: &Plan, attr: &str, system: &str) -> bool {
    plan.actions.iter().any(|a| {
        a.kind == ActionKind::MarkBroken
            && a.attr.as_deref() == Some(attr)
            && a.systems.iter().any(|s| s == system)
    })
}

/// Why the engine does not mark `job` now, although its deadline passed.
fn miss_reason(
    policy: &Policy,
    attr: &AttrAssessment,
    job: &JobAssessment,
    plan: &Plan,
) -> (MissReason, String) {
    if let Some(o) = &attr.opted_out {
        return (
            MissReason::OptedOut,
            format!(
                "{} since {}{}: {}",
                o.kind.as_str(),
                time(o.recorded_at),
                o.by.as_deref()
                    .map(|b| format!(" by {b}"))
                    .unwrap_or_default(),
                o.note
            ),
        );
    }
    if let Some(until) = attr.snoozed_until {
        return (MissReason::Snoozed, format!("until {}", time(until)));
    }
    let state = match &job.rule {
        Rule::Flaky { flips } => {
            return (
                MissReason::Flaky,
                format!(
                    "{flips} changes between building and failing in the last {} evals",
                    policy.streak.flaky_window_evals
                ),
            );
        }
        Rule::NotYetReal { evals, derivations } => {
            return (
                MissReason::NotAStreak,
                format!(
                    "{evals} evals and {derivations} derivations; a streak needs {} and {}",
                    policy.streak.min_evals, policy.streak.min_derivations
                ),
            );
        }
        Rule::Skipped { overrides } => {
            let reasons: Vec<String> = overrides
                .iter()
                .filter_map(|i| policy.overrides.iter().find(|o| o.index == *i))
                .filter(|o| o.patch.skip == Some(true))
                .map(|o| format!("override {}: {}", o.index, o.reason))
                .collect();
            return (MissReason::Skipped, reasons.join("; "));
        }
        Rule::Ladder(state) => state,
        _ => return (MissReason::NoticePeriod, String::new()),
    };
    if attr.protected {
        return (
            MissReason::Protected,
            if state.escalated {
                format!("escalated to {}", policy.protected.escalate_to.join(", "))
            } else {
                "not escalated yet".to_owned()
            },
        );
    }
    // A deferred mark first, then a deferred step before it.
    let deferred = plan
        .deferred
        .iter()
        .filter(|d| {
            d.action.attr.as_deref() == Some(attr.attr.as_str())
                && d.action.systems.contains(&job.system)
        })
        .min_by_key(|d| d.action.kind != ActionKind::MarkBroken);
    if let Some(d) = deferred {
        let reason = if plan.held {
            MissReason::Held
        } else {
            MissReason::Limits
        };
        return (reason, d.why.clone());
    }
    if let Some(needed) = state.needs_derivations {
        let seen = job.evidence.as_ref().map_or(0, |e| e.derivations);
        return (
            MissReason::NotEnoughDerivations,
            format!("failed on {seen} derivation(s); marking needs {needed}"),
        );
    }
    let detail = match (state.notified_at, state.mark_due) {
        (Some(n), Some(due)) => format!("notified {}; mark due {}", time(n), time(due)),
        _ => "not notified yet".to_owned(),
    };
    (MissReason::NoticePeriod, detail)
}

/// The misses that no mark of the replay covers, one line per attribute and
/// reason.
fn false_negatives(
    misses: BTreeMap<(String, String, i64), Miss>,
    marked: &[(String, Vec<String>, bool, i64)],
) -> Vec<FalseNegative> {
    let mut grouped: BTreeMap<(String, MissReason), FalseNegative> = BTreeMap::new();
    for ((attr, system, since), miss) in misses {
        let was_marked = marked
            .iter()
            .any(|(a, systems, _, at)| *a == attr && *at >= since && systems.contains(&system));
        if was_marked {
            continue;
        }
        let day = |t: i64| time(t)[..10].to_owned();
        let entry = grouped
            .entry((attr.clone(), miss.reason))
            .or_insert_with(|| FalseNegative {
                attr: attr.clone(),
                systems: Vec::new(),
                failing_since: day(miss.since),
                deadline: day(miss.deadline),
                reason: miss.reason,
                detail: miss.detail.clone(),
                later: Vec::new(),
            });
        entry.systems.push(system);
        entry.failing_since = entry.failing_since.clone().min(day(miss.since));
        entry.deadline = entry.deadline.clone().min(day(miss.deadline));
        for r in miss.later {
            if !entry.later.contains(&r) {
                entry.later.push(r);
            }
        }
    }
    grouped
        .into_values()
        .map(|mut f| {
            f.systems.sort();
            f.systems.dedup();
            f.later.sort();
            f
        })
        .collect()
}

fn false_positives(
    policy: &Policy,
    facts: &Facts,
    marked: &[(String, Vec<String>, bool, i64)],
) -> Vec<FalsePositive> {
    let within = policy.backtest.false_positive_within.secs();
    let mut out = Vec::new();
    for (attr, systems, _, at) in marked {
        for js in facts.jobsets.iter().filter(|js| policy.acts_on(&js.jobset)) {
            let (Some(start), Some(end)) = (cutoff(js, *at), cutoff(js, at + within)) else {
                continue;
            };
            for job in js
                .jobs
                .iter()
                .filter(|j| &j.attr == attr && systems.contains(&j.system))
            {
                let green = job.runs.iter().find_map(|r| {
                    let first = r.first.max(start + 1);
                    let last = r.last.min(end);
                    (r.class() == StatusClass::Ok && first <= last).then_some(first)
                });
                if let Some(e) = green {
                    out.push(FalsePositive {
                        attr: attr.clone(),
                        system: job.system.clone(),
                        marked: time(*at)[..10].to_owned(),
                        built_again: time(js.evals[e as usize].timestamp)[..10].to_owned(),
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.attr, &a.system, &a.marked).cmp(&(&b.attr, &b.system, &b.marked)));
    out.dedup();
    out
}

impl BacktestReport {
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Backtest of {} from {} to {} ({} days)",
            self.policy, self.from, self.to, self.days
        );
        let _ = writeln!(
            out,
            "  pings        {} ({} notices, {} reminders, {} early warnings)",
            self.pings, self.notices, self.reminders, self.warnings
        );
        let _ = writeln!(
            out,
            "  pull requests {} ({} mark-broken actions)",
            self.prs, self.marks
        );
        let _ = writeln!(out, "  retirements  {}", self.retirements);
        let _ = writeln!(out, "  escalations  {}", self.escalations);
        let _ = writeln!(out, "  PRs closed (recovered) {}", self.closed_prs);
        let _ = writeln!(out, "  deferred by limits or holds {}", self.deferred);
        let _ = writeln!(out, "  hold days    {}", self.holds.len());
        for h in &self.holds {
            let _ = writeln!(out, "    {}: {}", h.day, h.reason);
        }
        let _ = writeln!(
            out,
            "  false positives (marked, then built again within the window): {}",
            self.false_positives.len()
        );
        for f in self.false_positives.iter().take(50) {
            let _ = writeln!(
                out,
                "    {} on {}: marked {}, built {}",
                f.attr, f.system, f.marked, f.built_again
            );
        }
        let _ = writeln!(
            out,
            "  false negatives (failing past the mark deadline, never marked): {}",
            self.false_negatives.len()
        );
        for f in self.false_negatives.iter().take(50) {
            let _ = writeln!(
                out,
                "    {} on {}: failing since {}, due {}, {}{}{}",
                f.attr,
                f.systems.join(","),
                f.failing_since,
                f.deadline,
                f.reason.as_str(),
                if f.detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", f.detail)
                },
                if f.later.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; later also {}",
                        f.later
                            .iter()
                            .map(|r| r.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            );
        }
        let _ = writeln!(
            out,
            "  day         notify remind warn mark  PRs retire close held"
        );
        for d in &self.per_day {
            let _ = writeln!(
                out,
                "  {}  {:>6} {:>6} {:>4} {:>4} {:>4} {:>6} {:>5} {}",
                d.day,
                d.notify,
                d.remind,
                d.warn,
                d.mark_broken,
                d.prs,
                d.retire,
                d.close_pr,
                if d.held { "yes" } else { "" }
            );
        }
        out
    }
}
