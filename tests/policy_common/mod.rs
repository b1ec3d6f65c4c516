//! Small builders for policy fixtures: a jobset with one eval a day, jobs
//! written as one letter per eval, and a replay that carries out every
//! planned action so a test can read the timeline.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use hydra_sentinel::config::JobsetRef;
use hydra_sentinel::history::{Cause, EvalPoint};
use hydra_sentinel::policy::{
    Action, ActionKind, Facts, JobFacts, JobsetFacts, Ledger, Plan, Policy, RecordState, Run,
};
use hydra_sentinel::store::NewAction;

pub const DAY: i64 = 86_400;
/// Day 0 of every fixture: 2025-06-02T00:00:00Z (a Monday).
pub const START: i64 = 1_748_822_400;

/// Noon of day `d`, when that day's eval ran.
pub fn day(d: i64) -> i64 {
    START + d * DAY + 12 * 3600
}

/// The nixpkgs revision evaluated on day `d`: 40 hex digits.
pub fn rev(d: i64) -> String {
    let spread = ((d as u128) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
    format!("{:08x}{spread:032x}", 0x5eed_0000u32 + d as u32)
}

/// A jobset `nixpkgs:trunk` with one eval a day at noon for `days` days.
pub fn trunk(days: usize) -> JobsetFacts {
    JobsetFacts {
        unlisted_building: 0,
        jobset: JobsetRef {
            project: "nixpkgs".into(),
            jobset: "trunk".into(),
        },
        evals: (0..days)
            .map(|d| EvalPoint {
                id: 3_000_000 + d as i64,
                seq: d as i64 + 1,
                timestamp: day(d as i64),
                revision: Some(rev(d as i64)),
            })
            .collect(),
        jobs: Vec::new(),
        propagated_from: BTreeMap::new(),
        origins: BTreeMap::new(),
    }
}

/// A job from one letter per eval: `O` ok, `F` failed (1), `T` timed out (7)
/// on its own (its page read), `U` timed out with its page not read yet,
/// `V` timed out, propagated from a dependency (see [`charge`]), `D`
/// dependency failed (2), `N` noise (3), `P` pending, `.` absent. A run
/// of one letter is one build (one derivation); `+` before a letter starts a
/// new build with a new derivation (Hydra rebuilt it with the same result).
pub fn job(attr: &str, system: &str, pattern: &str) -> JobFacts {
    let mut runs: Vec<Run> = Vec::new();
    let mut eval = 0u32;
    let mut rebuild = false;
    let mut previous: Option<char> = None;
    for c in pattern.chars() {
        if c == '+' {
            rebuild = true;
            continue;
        }
        if c == ' ' {
            continue;
        }
        if c != '.' {
            let (finished, status) = match c {
                'O' => (true, Some(0)),
                'F' => (true, Some(1)),
                'T' | 'U' | 'V' => (true, Some(7)),
                'D' => (true, Some(2)),
                'N' => (true, Some(3)),
                'P' => (false, None),
                other => panic!("unknown letter {other:?} in pattern {pattern:?}"),
            };
            let extend =
                previous == Some(c) && !rebuild && runs.last().is_some_and(|r| r.last + 1 == eval);
            if extend {
                runs.last_mut().expect("a run").last = eval;
            } else {
                // Deterministic, whatever order tests run in.
                let build = 100_000_000
                    + (hydra_sentinel::policy::drv_digest(&format!("{attr}/{system}/{eval}"))
                        % 900_000_000) as i64;
                runs.push(Run {
                    first: eval,
                    last: eval,
                    build,
                    finished,
                    status,
                    drv: build as u64,
                    cause: match c {
                        'U' => Cause::Unread,
                        // Made to point at the root by `charge`.
                        'V' => Cause::Propagated { from: 0 },
                        _ => Cause::Own,
                    },
                });
            }
        }
        previous = Some(c);
        rebuild = false;
        eval += 1;
    }
    JobFacts {
        attr: attr.into(),
        system: system.into(),
        suffixed: true,
        runs,
    }
}

/// Say, as Hydra's build pages would, that the propagated failures (`V`)
/// of `victim` came from the builds `root` had in the same evals.
pub fn charge(js: &mut JobsetFacts, victim: &str, root: &str) {
    let root_runs = js
        .jobs
        .iter()
        .find(|j| j.attr == root)
        .expect("the root is a job")
        .runs
        .clone();
    let victim = js
        .jobs
        .iter_mut()
        .find(|j| j.attr == victim)
        .expect("the victim is a job");
    for run in &mut victim.runs {
        if let Cause::Propagated { .. } = run.cause {
            let from = root_runs
                .iter()
                .find(|r| r.first <= run.first && run.first <= r.last)
                .expect("the root has a build in that eval")
                .build;
            run.cause = Cause::Propagated { from };
            js.propagated_from.insert(run.build, from);
        }
    }
}

/// `n` letters of `c`, rebuilt every `every` evals (0: never).
pub fn repeat(c: char, n: usize, every: usize) -> String {
    (0..n)
        .map(|i| {
            if every > 0 && i > 0 && i % every == 0 {
                format!("+{c}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

pub fn facts(jobsets: Vec<JobsetFacts>) -> Facts {
    Facts {
        hydra_url: url::Url::parse("https://hydra.nixos.org").expect("a URL"),
        repository: hydra_sentinel::config::NIXPKGS_REPOSITORY.to_owned(),
        jobsets,
        maintainers: BTreeMap::new(),
        branch_pulls: BTreeMap::new(),
    }
}

/// The built-in production policy.
pub fn nixpkgs_policy() -> Policy {
    Policy::nixpkgs()
}

/// The built-in policy with some TOML appended (e.g. a smaller breaker).
pub fn policy_with(extra: &str) -> Policy {
    Policy::parse(extra, Path::new("test-policy.toml"))
        .unwrap_or_else(|e| panic!("test policy is invalid: {e}\n{extra}"))
}

/// What happened on which day of a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub day: i64,
    pub kind: ActionKind,
    pub attr: Option<String>,
    pub systems: Vec<String>,
    pub all_platforms: bool,
    pub step: Option<String>,
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "day {}: {} {} {}{}{}",
            self.day,
            self.kind,
            self.attr.as_deref().unwrap_or("-"),
            self.systems.join(","),
            if self.all_platforms { " (all)" } else { "" },
            self.step
                .as_deref()
                .map(|s| format!(" [{s}]"))
                .unwrap_or_default()
        )
    }
}

/// Record `action` in the ledger as carried out at `now`; PRs open, and are
/// merged `merge_after` later (during the replay).
pub fn carry_out(ledger: &mut Ledger, action: &Action, now: i64) {
    let id = ledger.actions.len() as i64 + 1;
    let opens = action.kind.opens_pr();
    let mut record =
        NewAction::from_action(action, action.evidence.maintainers.clone()).intent_record(id, now);
    record.state = if opens {
        RecordState::Open
    } else {
        RecordState::Done
    };
    record.done_at = Some(now);
    record.pr = opens.then_some(1000 + id as u64);
    ledger.actions.push(record);
    if action.kind == ActionKind::ClosePr {
        for r in &mut ledger.actions {
            if r.pr == action.evidence.pr && r.state == RecordState::Open {
                r.state = RecordState::Closed;
                r.closed_at = Some(now);
            }
        }
    }
}

/// Plan at the end of every day from `from` to `to`, carrying out every
/// action; PRs are merged after `merge_after_days`. Returns the events and
/// the final ledger.
pub fn replay(
    policy: &Policy,
    facts: &Facts,
    mut ledger: Ledger,
    from: i64,
    to: i64,
    merge_after_days: Option<i64>,
) -> (Vec<Event>, Ledger, Vec<Plan>) {
    let mut events = Vec::new();
    let mut plans = Vec::new();
    for d in from..=to {
        let now = START + d * DAY + 23 * 3600;
        if let Some(m) = merge_after_days {
            for r in &mut ledger.actions {
                if r.kind.opens_pr()
                    && r.state == RecordState::Open
                    && r.planned_at + m * DAY <= now
                {
                    r.state = RecordState::Merged;
                    r.closed_at = Some(r.planned_at + m * DAY);
                }
            }
        }
        let plan = hydra_sentinel::policy::plan(policy, facts, &ledger, now);
        for a in &plan.actions {
            events.push(Event {
                day: d,
                kind: a.kind,
                attr: a.attr.clone(),
                systems: a.systems.clone(),
                all_platforms: a.all_platforms,
                step: a.step.clone(),
            });
            carry_out(&mut ledger, a, now);
        }
        plans.push(plan);
    }
    (events, ledger, plans)
}

/// Events as text, one per line, for failure messages.
pub fn timeline(events: &[Event]) -> String {
    events.iter().map(|e| format!("  {e}\n")).collect()
}

/// A pre-merge jobset `nixpkgs:NAME` (staging-next, ...) with one eval a day
/// at 18:00 for `days` days, on revisions of its own.
pub fn branch(name: &str, days: usize) -> JobsetFacts {
    let mut js = trunk(days);
    js.jobset.jobset = name.into();
    for e in &mut js.evals {
        e.id += 1_000_000;
        e.timestamp += 6 * 3600;
        e.revision = e.revision.as_ref().map(|r| format!("b{}", &r[1..]));
    }
    js
}
