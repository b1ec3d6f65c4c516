//! What Hydra's build pages said about failed builds (`build_causes`):
//! recorded once per build and status, read back with every build.

use rusqlite::params;

use super::{Context, Store, StoreError};
use crate::history::Cause;

/// The join that finds a build's cause (as `c`), valid only while the
/// build has the status it had when its page was read (a restart may
/// change both). Every reader of builds uses it.
const CAUSE_JOIN: &str = "LEFT JOIN build_causes c ON c.build_id = b.id AND c.status = b.status";

/// A stored cause from its columns `c.cause, c.propagated_from`.
pub(crate) fn cause_of(cause: Option<String>, from: Option<i64>) -> Cause {
    match (cause.as_deref(), from) {
        (Some("own"), _) => Cause::Own,
        (Some("propagated"), Some(from)) => Cause::Propagated { from },
        (Some(_), _) => Cause::Unknown,
        (None, _) => Cause::Unread,
    }
}

/// A failed build of the newest eval whose page is worth reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CauseToRead {
    pub build: i64,
    pub status: i64,
}

impl Store {
    /// Failed builds whose page was not read (for their current status),
    /// most useful first, at most `limit`: those of the jobset's newest
    /// eval, failures that wait for their cause before they may be acted on
    /// (7, 8, 10, 11, ...) before dependency failures (2, read only to name
    /// the root), the newest failures first (a new failure, or a streak's
    /// newest build, is what a decision hangs on); then the older builds of
    /// jobs failing now, newest first, so that a streak's length counts only
    /// failures known to be the package's own. Older dependency failures are
    /// never read: only the newest one's root is charged.
    ///
    /// The jobs failing now are found from the open spans that did not
    /// build (`built`, schema version 16, is 0 whenever a build is not
    /// surely built), not by joining all open spans with their builds: on
    /// a year of trunk that took 0.6 s of each ingest pass, this 0.06 s.
    pub fn causes_to_read(
        &self,
        jobset_id: i64,
        limit: usize,
    ) -> Result<Vec<CauseToRead>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "WITH failing_now AS (
                     SELECT s.job_id
                     FROM spans s INDEXED BY spans_open_unbuilt CROSS JOIN jobs j ON j.id = s.job_id
                     JOIN builds b ON b.id = s.build_id
                     WHERE s.last_seq IS NULL AND s.built = 0 AND j.jobset_id = ?1
                       AND b.finished = 1
                       AND b.status IS NOT NULL AND b.status NOT IN (0, 3, 4, 9))
                 SELECT b.id, b.status FROM spans s JOIN failing_now f ON f.job_id = s.job_id
                 JOIN builds b ON b.id = s.build_id {CAUSE_JOIN}
                 WHERE b.finished = 1 AND b.status IS NOT NULL AND b.status NOT IN (0, 1, 3, 4, 6, 9)
                   AND c.build_id IS NULL
                 GROUP BY b.id
                 HAVING max(s.last_seq IS NULL) OR b.status != 2
                 ORDER BY max(s.last_seq IS NULL) DESC, b.status = 2, max(s.first_seq) DESC, b.id
                 LIMIT ?2"
            ))
            .context("finding builds whose cause is unread")?;
        let rows = stmt
            .query_map(params![jobset_id, limit as i64], |r| {
                Ok(CauseToRead {
                    build: r.get(0)?,
                    status: r.get(1)?,
                })
            })
            .context("finding builds whose cause is unread")?;
        rows.collect::<Result<_, _>>()
            .context("finding builds whose cause is unread")
    }

    /// Record what build `build`'s page said while it had `status`, with
    /// the failed step's status as Hydra words it.
    pub fn record_cause(
        &self,
        build: i64,
        status: i64,
        cause: Cause,
        step_status: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let (kind, from) = match cause {
            Cause::Own => ("own", None),
            Cause::Propagated { from } => ("propagated", Some(from)),
            // Nothing read is nothing to record.
            Cause::Unread => return Ok(()),
            Cause::Unknown => ("unknown", None),
        };
        self.conn
            .execute(
                "INSERT INTO build_causes (build_id, status, cause, propagated_from, step_status, read_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (build_id) DO UPDATE SET status = ?2, cause = ?3,
                    propagated_from = ?4, step_status = ?5, read_at = ?6",
                params![build, status, kind, from, step_status, now],
            )
            .map(drop)
            .context("recording a build's cause")
    }

    /// Pages read so far (for reports and tests).
    pub fn causes_read(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM build_causes", [], |r| r.get(0))
            .context("counting read causes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_cause_reads_back_as_it_was_recorded() {
        assert_eq!(cause_of(None, None), Cause::Unread);
        assert_eq!(cause_of(Some("own".into()), None), Cause::Own);
        assert_eq!(
            cause_of(Some("propagated".into()), Some(7)),
            Cause::Propagated { from: 7 }
        );
        assert_eq!(cause_of(Some("unknown".into()), None), Cause::Unknown);
    }
}
