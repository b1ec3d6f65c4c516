//! The forge's memo between cycles.
//!
//! Owns: the `forge_memo` rows, one per repository, as opaque text (the
//! forge owns its shape). Must never: read into it: a cache is the
//! forge's business.

use rusqlite::{OptionalExtension, params};

use super::{Context, Store, StoreError};

impl Store {
    /// The memo saved for `repo`, if any.
    pub fn forge_memo(&self, repo: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT memo FROM forge_memo WHERE repo = ?1", [repo], |r| {
                r.get(0)
            })
            .optional()
            .context("reading the forge memo")
    }

    /// Replace the memo of `repo`.
    pub fn save_forge_memo(&self, repo: &str, memo: &str, now: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO forge_memo (repo, memo, saved_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (repo) DO UPDATE SET memo = excluded.memo, saved_at = excluded.saved_at",
                params![repo, memo, now],
            )
            .context("saving the forge memo")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;

    #[test]
    fn a_saved_memo_reads_back_and_a_second_save_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        assert_eq!(store.forge_memo("NixOS/nixpkgs").unwrap(), None);
        store.save_forge_memo("NixOS/nixpkgs", "{}", 1).unwrap();
        store
            .save_forge_memo("NixOS/nixpkgs", "{\"a\":1}", 2)
            .unwrap();
        assert_eq!(
            store.forge_memo("NixOS/nixpkgs").unwrap().as_deref(),
            Some("{\"a\":1}")
        );
        assert_eq!(store.forge_memo("other/repo").unwrap(), None);
    }
}
