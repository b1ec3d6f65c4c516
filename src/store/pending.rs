//! The eval being learned over several passes (`pending_evals`).

use rusqlite::{OptionalExtension, params};

use super::{Context, Store, StoreError};

impl Store {
    /// Keep the eval being learned (Hydra's JSON of it, build ids included).
    pub fn save_pending_eval(
        &self,
        jobset_id: i64,
        eval_id: i64,
        header_json: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO pending_evals (jobset_id, eval_id, header, saved_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![jobset_id, eval_id, header_json, now],
            )
            .context("keeping the eval being learned")?;
        Ok(())
    }

    /// The eval being learned, if any: its id and Hydra's JSON of it.
    pub fn pending_eval(&self, jobset_id: i64) -> Result<Option<(i64, String)>, StoreError> {
        self.conn
            .query_row(
                "SELECT eval_id, header FROM pending_evals WHERE jobset_id = ?1",
                [jobset_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .context("reading the eval being learned")
    }

    pub fn clear_pending_eval(&self, jobset_id: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM pending_evals WHERE jobset_id = ?1",
                [jobset_id],
            )
            .context("forgetting the eval learned")?;
        Ok(())
    }
}
