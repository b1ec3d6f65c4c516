//! What the policy engine reads (facts, the ledger) and how the forge side
//! writes the ledger: an intent before every outward action, its result after.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};
use url::Url;

use super::causes::cause_of;
use super::{Context, Store, StoreError};
use crate::config::JobsetRef;
use crate::history::EvalPoint;
use crate::policy::{
    Action, ActionKind, ActionRecord, Facts, JobFacts, JobsetFacts, Ledger, OptOut, OptOutKind,
    RecordState, Run, drv_digest,
};

/// An action about to be carried out (see [`Store::record_intent`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAction {
    pub kind: ActionKind,
    pub attr: Option<String>,
    pub systems: Vec<String>,
    pub all_platforms: bool,
    pub step: Option<String>,
    pub batch: Option<String>,
    /// GitHub logins the action will mention.
    pub pinged: Vec<String>,
    /// The pull request it concerns, when known before acting (close_pr).
    pub pr: Option<u64>,
}

impl NewAction {
    /// The intent of carrying out a planned action.
    pub fn from_action(action: &Action, pinged: Vec<String>) -> NewAction {
        NewAction {
            kind: action.kind,
            attr: action.attr.clone(),
            systems: action.systems.clone(),
            all_platforms: action.all_platforms,
            step: action.step.clone(),
            batch: action.batch.clone(),
            pinged,
            pr: action.evidence.pr,
        }
    }
}

/// What became of an action (see [`Store::record_result`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionResult {
    /// `Done`, `Open` (a PR was opened), `Failed`, `Merged` or `Closed`.
    pub state: RecordState,
    pub at: i64,
    pub pr: Option<u64>,
    pub issue: Option<u64>,
    pub error: Option<String>,
    /// Why the nixpkgs editor cannot make this edit: it has to be made by
    /// hand. A refused action is settled (never planned again for the same
    /// failure) and told on the tracking issue.
    pub refused: Option<String>,
}

/// An opt-out seen by the forge or the editor (see [`Store::record_opt_out`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOptOut {
    pub attr: String,
    pub kind: OptOutKind,
    pub recorded_at: i64,
    pub until: Option<i64>,
    pub by: Option<String>,
    pub note: String,
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

fn parse_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn bad_value(column: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, message.into())
}

impl Store {
    /// Every jobset's evals and jobs, as the policy engine reads them.
    /// `repository` (`owner/name`) is the nixpkgs repository on GitHub, for
    /// compare links. `maintainers` starts empty: the caller adds what a
    /// nixpkgs checkout says.
    pub fn policy_facts(&self, hydra_url: &Url, repository: &str) -> Result<Facts, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, project, name FROM jobsets ORDER BY project, name")
            .context("listing jobsets")?;
        let jobsets: Vec<(i64, JobsetRef)> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    JobsetRef {
                        project: r.get(1)?,
                        jobset: r.get(2)?,
                    },
                ))
            })
            .context("listing jobsets")?
            .collect::<Result<_, _>>()
            .context("listing jobsets")?;
        let mut out = Vec::new();
        for (id, jobset) in jobsets {
            out.push(self.jobset_facts(id, jobset)?);
        }
        Ok(Facts {
            hydra_url: hydra_url.clone(),
            repository: repository.to_owned(),
            jobsets: out,
            maintainers: BTreeMap::new(),
            branch_pulls: BTreeMap::new(),
        })
    }

    fn jobset_facts(&self, jobset_id: i64, jobset: JobsetRef) -> Result<JobsetFacts, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, seq, timestamp, revision FROM evals WHERE jobset_id = ?1 ORDER BY seq",
            )
            .context("reading evals")?;
        let evals: Vec<EvalPoint> = stmt
            .query_map([jobset_id], |r| {
                Ok(EvalPoint {
                    id: r.get(0)?,
                    seq: r.get(1)?,
                    timestamp: r.get(2)?,
                    revision: r.get(3)?,
                })
            })
            .context("reading evals")?
            .collect::<Result<_, _>>()
            .context("reading evals")?;
        let index = |seq: i64| -> u32 {
            let i = evals.partition_point(|e| e.seq < seq);
            u32::try_from(i).unwrap_or(u32::MAX)
        };
        let newest = u32::try_from(evals.len().saturating_sub(1)).unwrap_or(0);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT j.id, j.attr, j.system, j.suffixed, s.first_seq, s.last_seq,
                        s.build_id, s.finished, s.status, s.drv_hash, c.cause, c.propagated_from
                 FROM jobs j JOIN span_builds s ON s.job_id = j.id
                 LEFT JOIN build_causes c ON c.build_id = s.build_id AND c.status = s.status
                 WHERE j.jobset_id = ?1 ORDER BY j.id, s.first_seq",
            )
            .context("reading job histories")?;
        let mut rows = stmt.query([jobset_id]).context("reading job histories")?;
        let mut jobs: Vec<JobFacts> = Vec::new();
        let mut propagated_from = BTreeMap::new();
        let mut current: Option<i64> = None;
        while let Some(r) = rows.next().context("reading job histories")? {
            let job_id: i64 = r.get(0).context("reading job histories")?;
            if current != Some(job_id) {
                current = Some(job_id);
                jobs.push(JobFacts {
                    attr: r.get(1).context("reading job histories")?,
                    system: r.get(2).context("reading job histories")?,
                    suffixed: r.get(3).context("reading job histories")?,
                    runs: Vec::new(),
                });
            }
            let first_seq: i64 = r.get(4).context("reading job histories")?;
            let last_seq: Option<i64> = r.get(5).context("reading job histories")?;
            let drv: String = r.get(9).context("reading job histories")?;
            let cause = cause_of(
                r.get(10).context("reading job histories")?,
                r.get(11).context("reading job histories")?,
            );
            let build: i64 = r.get(6).context("reading job histories")?;
            if let Some(root) = cause.root() {
                propagated_from.insert(build, root);
            }
            let run = Run {
                first: index(first_seq),
                last: last_seq.map_or(newest, index),
                build,
                finished: r.get(7).context("reading job histories")?,
                status: r.get(8).context("reading job histories")?,
                drv: drv_digest(&drv),
                cause,
            };
            if let Some(job) = jobs.last_mut() {
                job.runs.push(run);
            }
        }
        jobs.sort_by(|a, b| (&a.attr, &a.system).cmp(&(&b.attr, &b.system)));
        Ok(JobsetFacts {
            jobset,
            evals,
            jobs,
            propagated_from,
            origins: self.origins(jobset_id)?.into_iter().collect(),
        })
    }

    /// The whole ledger, oldest first.
    pub fn ledger(&self) -> Result<Ledger, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, kind, attr, systems, all_platforms, step, batch, state, planned_at,
                        done_at, closed_at, pr, issue, pinged, error, refused
                 FROM actions ORDER BY id",
            )
            .context("reading the ledger")?;
        let actions = stmt
            .query_map([], |r| {
                let kind: String = r.get(1)?;
                let state: String = r.get(7)?;
                Ok(ActionRecord {
                    id: r.get(0)?,
                    kind: kind.parse().map_err(|e| bad_value(1, e))?,
                    attr: r.get(2)?,
                    systems: parse_list(&r.get::<_, String>(3)?),
                    all_platforms: r.get(4)?,
                    step: r.get(5)?,
                    batch: r.get(6)?,
                    state: state.parse().map_err(|e| bad_value(7, e))?,
                    planned_at: r.get(8)?,
                    done_at: r.get(9)?,
                    closed_at: r.get(10)?,
                    pr: r.get::<_, Option<i64>>(11)?.map(|n| n.unsigned_abs()),
                    issue: r.get::<_, Option<i64>>(12)?.map(|n| n.unsigned_abs()),
                    pinged: parse_list(&r.get::<_, String>(13)?),
                    error: r.get(14)?,
                    refused: r.get(15)?,
                })
            })
            .context("reading the ledger")?
            .collect::<Result<Vec<_>, _>>()
            .context("reading the ledger")?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, attr, kind, recorded_at, until, by, note, revoked_at
                 FROM opt_outs ORDER BY id",
            )
            .context("reading opt-outs")?;
        let opt_outs = stmt
            .query_map([], |r| {
                let kind: String = r.get(2)?;
                Ok(OptOut {
                    id: r.get(0)?,
                    attr: r.get(1)?,
                    kind: kind.parse().map_err(|e| bad_value(2, e))?,
                    recorded_at: r.get(3)?,
                    until: r.get(4)?,
                    by: r.get(5)?,
                    note: r.get(6)?,
                    revoked_at: r.get(7)?,
                })
            })
            .context("reading opt-outs")?
            .collect::<Result<Vec<_>, _>>()
            .context("reading opt-outs")?;
        Ok(Ledger { actions, opt_outs })
    }

    /// Write the intent of an action before carrying it out; returns its id.
    /// A crash between intent and result leaves the intent, which the engine
    /// treats as in flight (never planned twice) until the forge reconciles it.
    pub fn record_intent(&self, action: &NewAction, planned_at: i64) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO actions (kind, attr, systems, all_platforms, step, batch, state, planned_at, pinged, pr)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'intent', ?7, ?8, ?9)",
                params![
                    action.kind.as_str(),
                    action.attr,
                    json_list(&action.systems),
                    action.all_platforms,
                    action.step,
                    action.batch,
                    planned_at,
                    json_list(&action.pinged),
                    action.pr.and_then(|n| i64::try_from(n).ok()),
                ],
            )
            .context("recording an intent")?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Record what became of an action: done, a PR opened, failed, and later
    /// the PR merged or closed. PR and issue numbers are kept once known.
    pub fn record_result(&self, id: i64, result: &ActionResult) -> Result<(), StoreError> {
        let closing = matches!(result.state, RecordState::Merged | RecordState::Closed);
        let changed = self
            .conn
            .execute(
                "UPDATE actions SET state = ?2,
                    done_at = CASE WHEN ?3 THEN done_at ELSE ?4 END,
                    closed_at = CASE WHEN ?3 THEN ?4 ELSE closed_at END,
                    pr = coalesce(?5, pr), issue = coalesce(?6, issue), error = ?7,
                    refused = ?8
                 WHERE id = ?1",
                params![
                    id,
                    result.state.as_str(),
                    closing,
                    result.at,
                    result.pr.and_then(|n| i64::try_from(n).ok()),
                    result.issue.and_then(|n| i64::try_from(n).ok()),
                    result.error,
                    result.refused
                ],
            )
            .context("recording a result")?;
        if changed == 0 {
            return Err(StoreError::Sqlite {
                context: "recording a result for an unknown action",
                source: rusqlite::Error::QueryReturnedNoRows,
            });
        }
        Ok(())
    }

    /// Record an opt-out (a marker or label seen, a snooze asked for).
    pub fn record_opt_out(&self, o: &NewOptOut) -> Result<i64, StoreError> {
        let existing: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM opt_outs WHERE attr = ?1 AND kind = ?2 AND revoked_at IS NULL
                   AND kind != 'snooze'",
                params![o.attr, o.kind.as_str()],
                |r| r.get(0),
            )
            .optional()
            .context("recording an opt-out")?;
        if let Some(id) = existing {
            return Ok(id);
        }
        self.conn
            .execute(
                "INSERT INTO opt_outs (attr, kind, recorded_at, until, by, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![o.attr, o.kind.as_str(), o.recorded_at, o.until, o.by, o.note],
            )
            .context("recording an opt-out")?;
        Ok(self.conn.last_insert_rowid())
    }

    /// A marker or label was seen gone (or a snooze withdrawn).
    pub fn revoke_opt_out(&self, id: i64, at: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE opt_outs SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, at],
            )
            .map(drop)
            .context("revoking an opt-out")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_intent_then_its_results_read_back_as_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let intent = NewAction {
            kind: ActionKind::MarkBroken,
            attr: Some("grafx".into()),
            systems: vec!["aarch64-linux".into(), "x86_64-linux".into()],
            all_platforms: true,
            step: None,
            batch: Some("mark-broken/set/top-level/1".into()),
            pinged: vec![],
            pr: None,
        };
        let id = store.record_intent(&intent, 100).unwrap();
        let in_flight = store.ledger().unwrap().actions.remove(0);
        assert_eq!(
            (in_flight.state, in_flight.planned_at, in_flight.done_at),
            (RecordState::Intent, 100, None)
        );
        store
            .record_result(
                id,
                &ActionResult {
                    state: RecordState::Open,
                    at: 110,
                    pr: Some(4242),
                    issue: None,
                    error: None,
                    refused: None,
                },
            )
            .unwrap();
        store
            .record_result(
                id,
                &ActionResult {
                    state: RecordState::Merged,
                    at: 500,
                    pr: None,
                    issue: None,
                    error: None,
                    refused: None,
                },
            )
            .unwrap();
        let r = store.ledger().unwrap().actions.remove(0);
        assert_eq!(
            (r.kind, r.state, r.done_at, r.closed_at, r.pr),
            (
                ActionKind::MarkBroken,
                RecordState::Merged,
                Some(110),
                Some(500),
                Some(4242)
            ),
            "the PR number survives a later result without one: {r:?}"
        );
        assert_eq!(r.systems, intent.systems);
        assert!(r.all_platforms);
        assert!(
            store
                .record_result(
                    999,
                    &ActionResult {
                        state: RecordState::Done,
                        at: 1,
                        pr: None,
                        issue: None,
                        error: None,
                        refused: None,
                    }
                )
                .is_err()
        );
    }

    #[test]
    fn a_marker_seen_twice_is_one_opt_out_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let o = NewOptOut {
            attr: "grafx".into(),
            kind: OptOutKind::Marker,
            recorded_at: 10,
            until: None,
            by: None,
            note: "pkgs/by-name/gr/grafx/package.nix".into(),
        };
        let a = store.record_opt_out(&o).unwrap();
        assert_eq!(store.record_opt_out(&o).unwrap(), a);
        store.revoke_opt_out(a, 20).unwrap();
        let b = store.record_opt_out(&o).unwrap();
        assert_ne!(a, b);
        let ledger = store.ledger().unwrap();
        assert_eq!(ledger.opt_outs.len(), 2);
        assert_eq!(ledger.opt_outs[0].revoked_at, Some(20));
    }
}
