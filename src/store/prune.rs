//! Retention: the history older than a horizon is removed, except what
//! explains decisions.
//!
//! Removed: closed spans whose last eval is older than the horizon, and the
//! builds (with their versions and cause pages) that only they named. Kept
//! whatever their age: every span of a job whose attribute the ledger names
//! (the evidence of what was done), every span of a job whose newest build
//! does not build (its streak, however long, is what the ladder's clock
//! reads), the open spans, the evals (one small row each: the timeline
//! runs refer to), the jobs, the ledger and the handled commands.
//!
//! Each batch is one transaction, so a kill at any moment leaves a
//! consistent state with at most one batch undone; the next pass goes on.

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use super::{Context, Store, StoreError};

/// Spans removed per transaction: a few milliseconds of writing, so a
/// pass never holds the database long and a kill loses at most one batch.
pub const PRUNE_BATCH: usize = 1000;

/// The tables of Hydra's history (the ledger aside): what a pass thins or
/// keeps, and what must hold together whenever a pass is cut short.
pub const HISTORY_TABLES: [&str; 6] = [
    "spans",
    "builds",
    "build_versions",
    "build_causes",
    "evals",
    "jobs",
];

/// What a pruning pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    pub spans: usize,
    pub builds: usize,
    /// Nothing older than the horizon is left to remove.
    pub complete: bool,
}

/// Where a pass is in a jobset's old spans (`last_seq`, `job_id`,
/// `first_seq`: the order of `spans_closed_by_last`).
type Cursor = (i64, i64, i64);

impl Store {
    /// Remove what is older than `before` (Unix s), `batch` spans per
    /// transaction, at most `max_batches` transactions (`None`: until done).
    pub fn prune(
        &mut self,
        before: i64,
        batch: usize,
        max_batches: Option<usize>,
    ) -> Result<Pruned, StoreError> {
        // A build's spans are all its job's, and the pass checks them before
        // removing the build; SQLite's own check would scan every span for
        // each build removed (`spans.build_id` has no index of its own).
        self.conn
            .pragma_update(None, "foreign_keys", "OFF")
            .context("pruning")?;
        let pruned = self.prune_jobsets(before, batch.max(1), max_batches);
        self.conn
            .pragma_update(None, "foreign_keys", "ON")
            .context("pruning")?;
        pruned
    }

    fn prune_jobsets(
        &mut self,
        before: i64,
        batch: usize,
        max_batches: Option<usize>,
    ) -> Result<Pruned, StoreError> {
        let jobsets: Vec<(i64, Option<i64>)> = {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT js.id, (SELECT max(seq) FROM evals e WHERE e.jobset_id = js.id AND e.timestamp < ?1)
                     FROM jobsets js ORDER BY js.id",
                )
                .context("finding the horizon")?;
            stmt.query_map([before], |r| Ok((r.get(0)?, r.get(1)?)))
                .context("finding the horizon")?
                .collect::<Result<_, _>>()
                .context("finding the horizon")?
        };
        let mut pruned = Pruned {
            complete: true,
            ..Pruned::default()
        };
        let mut batches = 0;
        for (jobset_id, horizon) in jobsets {
            let Some(horizon) = horizon else { continue };
            let mut cursor: Cursor = (i64::MIN, i64::MIN, i64::MIN);
            loop {
                if max_batches.is_some_and(|max| batches >= max) {
                    pruned.complete = false;
                    return Ok(pruned);
                }
                batches += 1;
                let (spans, builds, next) = self.prune_batch(jobset_id, horizon, cursor, batch)?;
                pruned.spans += spans;
                pruned.builds += builds;
                match next {
                    Some(next) => cursor = next,
                    None => break,
                }
            }
        }
        Ok(pruned)
    }

    /// One transaction: up to `batch` old spans after `cursor` removed.
    /// Returns the spans and builds removed and where to go on (`None`:
    /// the jobset has no more).
    fn prune_batch(
        &mut self,
        jobset_id: i64,
        horizon: i64,
        cursor: Cursor,
        batch: usize,
    ) -> Result<(usize, usize, Option<Cursor>), StoreError> {
        const CONTEXT: &str = "pruning old history";
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context(CONTEXT)?;
        let old: Vec<(i64, i64, i64, i64)> = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT s.last_seq, s.job_id, s.first_seq, s.build_id
                     FROM spans s INDEXED BY spans_closed_by_last JOIN jobs j ON j.id = s.job_id
                     WHERE s.last_seq IS NOT NULL AND s.last_seq <= ?2
                       AND (s.last_seq, s.job_id, s.first_seq) > (?3, ?4, ?5)
                       AND j.jobset_id = ?1
                       AND NOT EXISTS (SELECT 1 FROM actions a WHERE a.attr = j.attr)
                       AND NOT EXISTS (
                           SELECT 1 FROM spans o JOIN builds b ON b.id = o.build_id
                           WHERE o.job_id = s.job_id AND o.last_seq IS NULL
                             AND NOT (b.finished = 1 AND b.status = 0))
                     ORDER BY s.last_seq, s.job_id, s.first_seq
                     LIMIT ?6",
                )
                .context(CONTEXT)?;
            stmt.query_map(
                params![
                    jobset_id,
                    horizon,
                    cursor.0,
                    cursor.1,
                    cursor.2,
                    i64::try_from(batch).unwrap_or(i64::MAX)
                ],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .context(CONTEXT)?
            .collect::<Result<_, _>>()
            .context(CONTEXT)?
        };
        let mut builds = 0;
        for &(_, job_id, first_seq, build_id) in &old {
            tx.prepare_cached("DELETE FROM spans WHERE job_id = ?1 AND first_seq = ?2")
                .and_then(|mut s| s.execute([job_id, first_seq]))
                .context(CONTEXT)?;
            let still_named: Option<i64> = tx
                .prepare_cached("SELECT 1 FROM spans WHERE job_id = ?1 AND build_id = ?2 LIMIT 1")
                .and_then(|mut s| s.query_row([job_id, build_id], |r| r.get(0)).optional())
                .context(CONTEXT)?;
            if still_named.is_none() {
                for delete in [
                    "DELETE FROM build_versions WHERE build_id = ?1",
                    "DELETE FROM build_causes WHERE build_id = ?1",
                    "DELETE FROM builds WHERE id = ?1",
                ] {
                    tx.prepare_cached(delete)
                        .and_then(|mut s| s.execute([build_id]))
                        .context(CONTEXT)?;
                }
                builds += 1;
            }
        }
        tx.commit().context(CONTEXT)?;
        let next = (old.len() == batch)
            .then(|| old.last().map(|&(last, job, first, _)| (last, job, first)))
            .flatten();
        Ok((old.len(), builds, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JobsetRef;
    use crate::policy::{ActionKind, Policy};
    use crate::sim::{YearSpec, YearWriter};
    use crate::store::{NewAction, PlanScope};

    const DAY: i64 = 86_400;

    /// A month of a small trunk (an eval every 12.5 hours), and a ledger
    /// that names one package whose jobs build now.
    fn month(path: &std::path::Path) -> (YearWriter, String) {
        let mut store = Store::open(path).unwrap();
        let mut spec = YearSpec::trunk(1_500);
        spec.churn = 0.05;
        spec.mass_breakages = vec![10];
        spec.turnover = 3;
        let mut year = YearWriter::new(spec);
        let trunk = JobsetRef {
            project: "nixpkgs".into(),
            jobset: "trunk".into(),
        };
        for _ in 0..60 {
            year.write_eval(&mut store, &trunk).unwrap();
        }
        let named: String = store
            .conn
            .query_row(
                "SELECT j.attr FROM jobs j JOIN spans s ON s.job_id = j.id
                 JOIN builds b ON b.id = s.build_id
                 WHERE s.last_seq IS NULL AND b.status = 0
                   AND (SELECT count(*) FROM spans o WHERE o.job_id = j.id) > 2
                 ORDER BY j.id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        store
            .record_intent(
                &NewAction {
                    kind: ActionKind::Notify,
                    attr: Some(named.clone()),
                    systems: vec![],
                    all_platforms: false,
                    step: Some("notice".into()),
                    batch: None,
                    pinged: vec![],
                    pr: None,
                },
                year.newest_time() - 20 * DAY,
            )
            .unwrap();
        (year, named)
    }

    fn count(store: &Store, sql: &str) -> i64 {
        store
            .conn
            .query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Whatever a pass removed, what is left holds together.
    fn assert_consistent(store: &Store) {
        let orphans = count(
            store,
            "SELECT count(*) FROM spans s LEFT JOIN builds b ON b.id = s.build_id WHERE b.id IS NULL",
        );
        assert_eq!(orphans, 0, "spans whose build was removed");
        let unnamed = count(
            store,
            "SELECT count(*) FROM builds b WHERE NOT EXISTS (SELECT 1 FROM spans s WHERE s.build_id = b.id)",
        );
        assert_eq!(unnamed, 0, "builds no span names were left");
        let problems: i64 = count(store, "SELECT count(*) FROM pragma_foreign_key_check");
        assert_eq!(problems, 0, "foreign keys broken");
        let ok: String = store
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
    }

    fn plan_text(store: &Store, now: i64) -> String {
        let policy = Policy::nixpkgs();
        let facts = store
            .plan_facts(
                &"https://hydra.nixos.org".parse().unwrap(),
                "NixOS/nixpkgs",
                PlanScope::new(now, &policy.streak),
            )
            .unwrap();
        let plan = crate::policy::plan(&policy, &facts, &store.ledger().unwrap(), now);
        serde_json::to_string_pretty(&plan).unwrap()
    }

    #[test]
    fn old_history_of_jobs_that_build_goes_and_what_explains_decisions_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let (year, named) = month(&path);
        let mut store = Store::open(&path).unwrap();
        let now = year.newest_time() + 3600;
        let plan_before = plan_text(&store, now);
        let spans = |store: &Store, which: &str| {
            count(
                store,
                &format!(
                    "SELECT count(*) FROM spans s JOIN jobs j ON j.id = s.job_id WHERE {which}"
                ),
            )
        };
        let failing_now = "EXISTS (SELECT 1 FROM spans o JOIN builds b ON b.id = o.build_id
                             WHERE o.job_id = s.job_id AND o.last_seq IS NULL AND b.status != 0)";
        let open = spans(&store, "s.last_seq IS NULL");
        let of_failing = spans(&store, failing_now);
        let of_named = spans(&store, &format!("j.attr = '{named}'"));
        let before = year.newest_time() - 15 * DAY;
        let old = |store: &Store| {
            spans(
                store,
                &format!(
                    "s.last_seq IS NOT NULL AND (SELECT timestamp FROM evals e
                       WHERE e.jobset_id = j.jobset_id AND e.seq = s.last_seq) < {before}"
                ),
            )
        };
        assert!(old(&store) > 1_000, "the month has old history to prune");

        let pruned = store.prune(before, 200, None).unwrap();

        assert!(
            pruned.complete && pruned.spans > 1_000 && pruned.builds > 0,
            "{pruned:?}"
        );
        let left_old = spans(
            &store,
            &format!(
                "s.last_seq IS NOT NULL AND NOT {failing_now} AND j.attr != '{named}'
                 AND (SELECT timestamp FROM evals e WHERE e.jobset_id = j.jobset_id AND e.seq = s.last_seq) < {before}"
            ),
        );
        assert_eq!(left_old, 0, "old spans of jobs that build were left");
        assert_eq!(spans(&store, "s.last_seq IS NULL"), open, "open spans");
        assert_eq!(
            spans(&store, failing_now),
            of_failing,
            "spans of failing jobs"
        );
        assert_eq!(
            spans(&store, &format!("j.attr = '{named}'")),
            of_named,
            "spans of {named}"
        );
        assert_consistent(&store);
        assert_eq!(plan_text(&store, now), plan_before, "the plan changed");
        assert_eq!(
            store.prune(before, 200, None).unwrap(),
            Pruned {
                complete: true,
                ..Pruned::default()
            },
            "a second pass has nothing left"
        );
    }

    #[test]
    fn a_pass_cut_short_holds_together_and_the_next_one_finishes_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let (year, _) = month(&path);
        let reference_path = dir.path().join("reference.sqlite");
        std::fs::copy(&path, &reference_path).unwrap();
        let before = year.newest_time() - 15 * DAY;

        let mut reference = Store::open(&reference_path).unwrap();
        let whole = reference.prune(before, 200, None).unwrap();

        let mut store = Store::open(&path).unwrap();
        let first = store.prune(before, 200, Some(2)).unwrap();
        assert!(!first.complete && first.spans == 400, "{first:?}");
        assert_consistent(&store);
        let rest = store.prune(before, 200, None).unwrap();
        assert!(rest.complete);
        assert_eq!(first.spans + rest.spans, whole.spans);
        assert_eq!(first.builds + rest.builds, whole.builds);
        for table in HISTORY_TABLES {
            let sql = format!("SELECT count(*) FROM {table}");
            assert_eq!(count(&store, &sql), count(&reference, &sql), "{table}");
        }
        assert_consistent(&store);
    }
}
