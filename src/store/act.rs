//! What the act stage remembers besides the ledger: commands already handled.

use rusqlite::params;

use super::{Context, Store, StoreError};

impl Store {
    /// Whether the comment with this GitHub id was handled already.
    pub fn command_handled(&self, comment_id: u64) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM handled_comments WHERE id = ?1)",
                [comment_id as i64],
                |r| r.get(0),
            )
            .context("looking up a handled comment")
    }

    /// Remember a handled command, before replying to it.
    pub fn record_command(
        &self,
        comment_id: u64,
        number: u64,
        author: &str,
        body: &str,
        accepted: bool,
        at: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO handled_comments (id, number, author, body, accepted, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![comment_id as i64, number as i64, author, body, accepted, at],
            )
            .map(drop)
            .context("recording a handled comment")
    }
}
