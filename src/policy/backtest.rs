//! Backtesting: replay stored history day by day under a policy — planning
//! after every eval, as the daemon does, and at the end of each day —
//! pretending every planned action was carried out, and count what it would
//! have done.
//!
//! The replay sees each build's final status (a build restarted later shows
//! its last result from the start) and assumes a mark-broken PR is merged
//! `backtest.assumed_merge_delay` after it opens. A mark is a false positive
//! when the job built again within `backtest.false_positive_within`: the
//! history went on without the mark, so it tells.

use std::collections::BTreeMap;

use serde::Serialize;

use super::config::Policy;
use super::engine::{cutoff, plan};
use super::facts::Facts;
use super::ledger::{ActionKind, ActionRecord, Ledger, RecordState};
use crate::history::StatusClass;
use crate::report::time;

const DAY: i64 = 86_400;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DayRow {
    pub day: String,
    pub notify: u32,
    pub remind: u32,
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
    pub per_day: Vec<DayRow>,
}

/// Replay `facts` from `from` to `to` (Unix s, days planned at their end).
pub fn backtest(policy: &Policy, facts: &Facts, from: i64, to: i64) -> BacktestReport {
    let mut ledger = Ledger::default();
    let mut next_id = 1i64;
    let mut next_pr = 1u64;
    let mut report = BacktestReport {
        policy: policy.source.clone(),
        from: time(from)[..10].to_owned(),
        to: time(to)[..10].to_owned(),
        days: 0,
        pings: 0,
        notices: 0,
        reminders: 0,
        prs: 0,
        marks: 0,
        retirements: 0,
        escalations: 0,
        closed_prs: 0,
        deferred: 0,
        holds: Vec::new(),
        false_positives: Vec::new(),
        per_day: Vec::new(),
    };
    let merge_delay = policy.backtest.assumed_merge_delay.secs();
    let mut marked: Vec<(String, Vec<String>, bool, i64)> = Vec::new();
    // The daemon plans after every ingested eval; the replay does too, and
    // once more at the end of each day (deadlines pass without evals).
    let mut eval_times: Vec<i64> = facts
        .jobsets
        .iter()
        .filter(|js| policy.acts_on(&js.jobset))
        .flat_map(|js| js.evals.iter().map(|e| e.timestamp))
        .collect();
    eval_times.sort_unstable();
    eval_times.dedup();
    let mut day_start = from - from.rem_euclid(DAY);
    while day_start <= to {
        let day_end = day_start + DAY - 1;
        let lo = eval_times.partition_point(|t| *t < day_start.max(from));
        let hi = eval_times.partition_point(|t| *t <= day_end);
        let mut moments: Vec<i64> = eval_times[lo..hi].to_vec();
        moments.push(day_end);
        let mut row = DayRow {
            day: time(day_end)[..10].to_owned(),
            ..DayRow::default()
        };
        let mut day_holds: Vec<String> = Vec::new();
        for now in moments {
            for r in &mut ledger.actions {
                if r.kind.opens_pr()
                    && r.state == RecordState::Open
                    && r.planned_at + merge_delay <= now
                {
                    r.state = RecordState::Merged;
                    r.closed_at = Some(r.planned_at + merge_delay);
                }
            }
            let p = plan(policy, facts, &ledger, now);
            row.held |= p.held;
            if now == day_end {
                row.deferred = u32::try_from(p.deferred.len()).unwrap_or(u32::MAX);
            }
            let mut batches: BTreeMap<String, u64> = BTreeMap::new();
            for a in &p.actions {
                let mut record = ActionRecord {
                    id: next_id,
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
                };
                next_id += 1;
                match a.kind {
                    ActionKind::Hold => {
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
                        continue;
                    }
                    ActionKind::Notify => row.notify += 1,
                    ActionKind::Remind => row.remind += 1,
                    ActionKind::Escalate => row.escalate += 1,
                    ActionKind::MarkBroken | ActionKind::Retire => {
                        let batch = a.batch.clone().unwrap_or_default();
                        let pr = *batches.entry(batch).or_insert_with(|| {
                            next_pr += 1;
                            next_pr
                        });
                        record.pr = Some(pr);
                        record.state = RecordState::Open;
                        if a.kind == ActionKind::MarkBroken {
                            row.mark_broken += 1;
                            marked.push((
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
                        for r in &mut ledger.actions {
                            if r.pr == a.evidence.pr && r.state == RecordState::Open {
                                r.state = RecordState::Closed;
                                r.closed_at = Some(now);
                            }
                        }
                    }
                }
                ledger.actions.push(record);
            }
            row.prs += u32::try_from(batches.len()).unwrap_or(u32::MAX);
        }
        report.days += 1;
        report.notices += row.notify;
        report.reminders += row.remind;
        report.pings += row.notify + row.remind;
        report.prs += row.prs;
        report.marks += row.mark_broken;
        report.retirements += row.retire;
        report.escalations += row.escalate;
        report.closed_prs += row.close_pr;
        report.deferred += row.deferred;
        report.per_day.push(row);
        day_start += DAY;
    }
    report.false_positives = false_positives(policy, facts, &marked);
    report
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
            "  pings        {} ({} notices, {} reminders)",
            self.pings, self.notices, self.reminders
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
            "  day         notify remind mark  PRs retire close held"
        );
        for d in &self.per_day {
            let _ = writeln!(
                out,
                "  {}  {:>6} {:>6} {:>4} {:>4} {:>6} {:>5} {}",
                d.day,
                d.notify,
                d.remind,
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
