//! The SQLite state: schema, migrations, and every query.
//!
//! Owns: the database file (WAL), `schema.sql` and its application, writing
//! one evaluation per transaction, the versions of a build that Hydra
//! changed after the fact (restarts, repointing), and reading back summaries
//! and job histories as plain values (a plan through a cache of the older
//! part of long failures, `history_memo`, that triggers forget whenever it
//! could be wrong).
//!
//! Must never: talk to the network, decide what a history means (that is
//! [`crate::history`]), rewrite what an earlier eval saw (a changed build is
//! a new version from the eval where the change was seen), or leave an eval
//! half-written: every eval is one transaction, so a kill at any moment
//! leaves the previous complete state.

mod act;
mod causes;
mod facts;
mod lease;
mod memo;
mod origins;
mod pending;
mod prune;
mod read;
#[cfg(test)]
mod test_support;
mod write;

pub use causes::CauseToRead;
pub use facts::{ActionResult, NewAction, NewOptOut, PlanScope};
pub use lease::{LeaseHeld, LeaseHolder};
pub use origins::OriginWanted;
pub use prune::{HISTORY_TABLES, PRUNE_BATCH, Pruned};
pub use read::{JobRecord, JobsetSummary, RootBuild, StoredEval};
pub use write::{BuildRow, EvalWriter, KnownBuild, NewEval, WriteOutcome};

use rustc_hash::FxHashMap as HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use rusqlite_migration::{M, Migrations};

use crate::config::JobsetRef;

/// `schema.sql`, the source of truth for the schema.
const SCHEMA: &str = include_str!("../../schema.sql");

/// The migrations: one per `-- version N` section of `schema.sql`, in order.
fn migrations() -> Migrations<'static> {
    Migrations::new(schema_sections(SCHEMA).into_iter().map(M::up).collect())
}

/// Split the schema at lines `-- version N…`; the text before the first
/// marker (comments) belongs to version 1.
fn schema_sections(schema: &'static str) -> Vec<&'static str> {
    let mut starts: Vec<usize> = schema
        .match_indices("\n-- version ")
        .map(|(i, _)| i + 1)
        .collect();
    if starts.first() != Some(&0) && !starts.is_empty() {
        starts[0] = 0;
    }
    let mut sections = Vec::new();
    for (n, start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(schema.len());
        sections.push(&schema[*start..end]);
    }
    sections
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot bring the database {path} to the current schema")]
    Migrate {
        path: PathBuf,
        #[source]
        source: rusqlite_migration::Error,
    },
    #[error("the database {path} does not exist yet: run `hydra-sentinel ingest` first")]
    Missing { path: PathBuf },
    #[error("database error while {context}")]
    Sqlite {
        context: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "eval {eval} of {jobset} is older than the newest stored eval {newest}; evals are stored in Hydra's order"
    )]
    OutOfOrder {
        jobset: String,
        eval: i64,
        newest: i64,
    },
}

pub(crate) trait Context<T> {
    fn context(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, rusqlite::Error> {
    fn context(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite { context, source })
    }
}

/// The one writer of the state database (readers may open their own).
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Per jobset, its job ids and open spans as committed, filled lazily
    /// (see [`write::JobsetCache`]).
    caches: HashMap<i64, write::JobsetCache>,
    /// The ledger as this connection last read or wrote it: a cycle reads
    /// it many times between its own few writes (see [`Store::ledger`]).
    ledger_memo: std::cell::RefCell<Option<facts::LedgerMemo>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Open (creating if needed) and migrate the database.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        configure(&conn).map_err(open_err)?;
        // Off while migrating, as SQLite asks for rebuilding a table that
        // others refer to (https://sqlite.org/lang_altertable.html#otheralter);
        // a migration cannot turn them off itself, it runs in a transaction.
        conn.pragma_update(None, "foreign_keys", "OFF")
            .map_err(open_err)?;
        migrations()
            .to_latest(&mut conn)
            .map_err(|source| StoreError::Migrate {
                path: path.to_owned(),
                source,
            })?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        Ok(Store {
            conn,
            path: path.to_owned(),
            caches: HashMap::default(),
            ledger_memo: Default::default(),
        })
    }

    /// Open an existing database for reading only (status, history): works
    /// while the daemon writes, and never creates a file by mistake.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.to_owned(),
            });
        }
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(open_err)?;
        if version == 0 {
            return Err(StoreError::Missing {
                path: path.to_owned(),
            });
        }
        Ok(Store {
            conn,
            path: path.to_owned(),
            caches: HashMap::default(),
            ledger_memo: Default::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The jobset's row id, creating the row on first sight. A jobset that
    /// Hydra renamed keeps its row: once the configuration names it by its
    /// new name, the row takes that name (and its history goes on).
    pub fn jobset_id(&mut self, jobset: &JobsetRef) -> Result<i64, StoreError> {
        let renamed: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT id, name FROM jobsets WHERE project = ?1 AND renamed_to = ?2",
                (&jobset.project, &jobset.jobset),
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .context("looking up a renamed jobset")?;
        if let Some((id, old)) = renamed {
            self.conn
                .execute(
                    "UPDATE jobsets SET name = ?2, renamed_to = NULL WHERE id = ?1",
                    (id, &jobset.jobset),
                )
                .context("renaming a jobset")?;
            tracing::info!(%jobset, old, "the configuration now names the renamed jobset by its new name; its history goes on");
            return Ok(id);
        }
        self.conn
            .execute(
                "INSERT INTO jobsets (project, name) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                (&jobset.project, &jobset.jobset),
            )
            .context("registering a jobset")?;
        self.find_jobset(jobset)?.ok_or(StoreError::Sqlite {
            context: "registering a jobset",
            source: rusqlite::Error::QueryReturnedNoRows,
        })
    }

    /// The jobset's row id, by the name it has here or the one Hydra gave it.
    pub fn find_jobset(&self, jobset: &JobsetRef) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT id FROM jobsets WHERE project = ?1 AND (name = ?2 OR renamed_to = ?2)
                 ORDER BY name = ?2 DESC LIMIT 1",
                (&jobset.project, &jobset.jobset),
                |r| r.get(0),
            )
            .optional()
            .context("looking up a jobset")
    }

    /// The name Hydra gives the jobset now, when it was renamed there.
    pub fn jobset_renamed_to(&self, jobset_id: i64) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT renamed_to FROM jobsets WHERE id = ?1",
                [jobset_id],
                |r| r.get(0),
            )
            .context("reading a jobset's new name")
    }

    /// `PRAGMA integrity_check` and every reference between rows (the
    /// ingest writer does not have SQLite check them as it goes, see
    /// `write::ReferencesUnchecked`): "ok", or what is wrong. For tests and
    /// the crash-safety checks.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        let pages: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .context("checking integrity")?;
        if pages != "ok" {
            return Ok(pages);
        }
        let dangling: Vec<String> = self
            .conn
            // `rowid` is NULL for a table without one (`spans`).
            .prepare(
                "SELECT \"table\" || coalesce(' row ' || rowid, ' has a row that') || ' refers to a missing row of ' || parent
                 FROM pragma_foreign_key_check LIMIT 10",
            )
            .and_then(|mut stmt| stmt.query_map([], |r| r.get(0))?.collect())
            .context("checking references")?;
        Ok(if dangling.is_empty() {
            pages
        } else {
            dangling.join("; ")
        })
    }
}

/// How long a connection waits for another one's write.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

fn configure(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL in WAL mode: a power cut may lose the newest eval, never
    // consistency; the eval is simply fetched again.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -32_000)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        migrations().validate().unwrap();
    }

    #[test]
    fn each_version_section_of_the_schema_is_one_migration_in_order() {
        let sections = schema_sections(SCHEMA);
        assert!(!sections.is_empty());
        for (i, section) in sections.iter().enumerate() {
            let marker = format!("-- version {}", i + 1);
            assert!(
                section.contains(&marker),
                "section {} lacks {marker:?}",
                i + 1
            );
        }
        assert_eq!(
            sections.concat(),
            SCHEMA,
            "sections must cover the whole file"
        );
    }

    #[test]
    fn opening_twice_keeps_the_data_and_the_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let jobset = JobsetRef {
            project: "nixpkgs".into(),
            jobset: "trunk".into(),
        };
        let id = Store::open(&path).unwrap().jobset_id(&jobset).unwrap();
        let store = Store::open(&path).unwrap();
        assert_eq!(store.find_jobset(&jobset).unwrap(), Some(id));
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }

    /// A database file brought to schema `version` only, as an older
    /// release left it, and a connection to it.
    fn database_at_version(version: usize) -> (tempfile::TempDir, PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        migrations().to_version(&mut conn, version).unwrap();
        (dir, path, conn)
    }

    #[test]
    fn a_database_from_before_build_versions_keeps_its_history() {
        let (_dir, path, conn) = database_at_version(6);
        conn.execute_batch(
            "INSERT INTO jobsets (id, project, name) VALUES (1, 'nixpkgs', 'trunk');
             INSERT INTO evals VALUES (10, 1, 1, 100, 'r1', NULL, NULL, 1, 0, 'per-build', 0),
                                      (11, 1, 2, 200, 'r2', NULL, NULL, 1, 0, 'per-build', 0);
             INSERT INTO jobs (id, jobset_id, attr, system, suffixed) VALUES (5, 1, 'hello', 'x86_64-linux', 1);
             INSERT INTO builds VALUES (7, 5, 1, 1, 150, 'aaaa', 'hello-1'), (8, 5, 1, 0, 250, 'bbbb', 'hello-1');
             INSERT INTO spans VALUES (5, 1, 1, 7), (5, 2, NULL, 8);",
        )
        .unwrap();
        drop(conn);
        let store = Store::open(&path).unwrap();
        let spans = store.spans(1, 5).unwrap();
        let seen: Vec<(i64, Option<i64>, &str, bool)> = spans
            .iter()
            .map(|s| {
                (
                    s.build.id,
                    s.build.status,
                    s.build.drv_hash.as_str(),
                    s.open,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [(7, Some(1), "aaaa", false), (8, Some(0), "bbbb", true)]
        );
        assert_eq!(store.recheck_cursor(1).unwrap(), None);
        let facts = store
            .policy_facts(&"https://hydra.nixos.org".parse().unwrap(), "NixOS/nixpkgs")
            .unwrap();
        let runs = &facts.jobsets[0].jobs[0].runs;
        assert_eq!(
            runs.iter().map(|r| (r.build, r.status)).collect::<Vec<_>>(),
            [(7, Some(1)), (8, Some(0))]
        );
    }

    /// Version 16 learns each span's `built` and `job_left` from the
    /// history already stored, so that a plan right after the upgrade lists
    /// the same failing jobs as the whole history.
    #[test]
    fn the_span_hints_are_learned_from_a_database_written_before_them() {
        let (_dir, path, conn) = database_at_version(15);
        conn.execute_batch(
            "INSERT INTO jobsets (id, project, name) VALUES (1, 'nixpkgs', 'trunk');
             INSERT INTO evals (id, jobset_id, seq, timestamp, nr_builds, rejected_jobs, strategy, ingested_at)
                 VALUES (10, 1, 1, 100, 3, 0, 'per-build', 0), (11, 1, 2, 200, 2, 0, 'per-build', 0);
             INSERT INTO jobs (id, jobset_id, attr, system, suffixed)
                 VALUES (5, 1, 'hello', 'x86_64-linux', 1), (6, 1, 'gone', 'x86_64-linux', 1),
                        (7, 1, 'restarted', 'x86_64-linux', 1);
             -- hello: failed, then built; gone: failed and left; restarted:
             -- built, then restarted (version 2) and pending.
             INSERT INTO builds (id, job_id, finished, status, stoptime, drv_hash, nixname, version)
                 VALUES (70, 5, 1, 1, 150, 'aaaa', 'hello-1', 1), (71, 5, 1, 0, 250, 'bbbb', 'hello-1', 1),
                        (80, 6, 1, 1, 150, 'cccc', 'gone-1', 1), (90, 7, 0, 0, 150, 'dddd', 'r-1', 2);
             INSERT INTO build_versions (build_id, version, finished, status, stoptime, drv_hash)
                 VALUES (90, 1, 1, 0, 150, 'dddd');
             INSERT INTO spans (job_id, first_seq, last_seq, build_id, version)
                 VALUES (5, 1, 1, 70, 1), (5, 2, NULL, 71, 1), (6, 1, 1, 80, 1),
                        (7, 1, 1, 90, 1), (7, 2, NULL, 90, 2);",
        )
        .unwrap();
        drop(conn);
        let store = Store::open(&path).unwrap();
        let hints: Vec<(i64, i64, bool, bool)> = store
            .conn
            .prepare(
                "SELECT job_id, first_seq, built, job_left FROM spans ORDER BY job_id, first_seq",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            hints,
            [
                (5, 1, false, false),
                (5, 2, true, false),
                (6, 1, false, true),
                (7, 1, true, false),
                (7, 2, false, false),
            ],
            "(job, first eval, built, job left)"
        );
    }

    #[test]
    fn the_early_warning_migration_keeps_every_action_and_allows_warn() {
        // A database of the version before early warnings, with a notice.
        let (_dir, path, conn) = database_at_version(10);
        conn.execute(
            "INSERT INTO actions (id, kind, attr, systems, step, state, planned_at, issue, pinged, refused)
             VALUES (41, 'notify', 'hello', '[\"x86_64-linux\"]', 'notice', 'done', 100, 7, '[\"alice\"]', NULL)",
            [],
        )
        .unwrap();
        assert!(
            conn.execute(
                "INSERT INTO actions (kind, systems, state, planned_at) VALUES ('warn', '[]', 'intent', 1)",
                [],
            )
            .is_err(),
            "version 7 refuses a warn"
        );
        drop(conn);
        let store = Store::open(&path).unwrap();
        let ledger = store.ledger().unwrap();
        assert_eq!(ledger.actions.len(), 1, "{ledger:?}");
        let kept = &ledger.actions[0];
        assert_eq!(
            (
                kept.id,
                kept.attr.as_deref(),
                kept.issue,
                kept.pinged.clone()
            ),
            (41, Some("hello"), Some(7), vec!["alice".to_owned()])
        );
        store
            .conn
            .execute(
                "INSERT INTO actions (kind, attr, systems, step, batch, state, planned_at)
                 VALUES ('warn', 'hello', '[]', 'notice', 'nixpkgs:staging-next', 'intent', 200)",
                [],
            )
            .unwrap();
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }

    /// Version 18 rebuilds `jobs` (SQLite cannot drop its UNIQUE
    /// constraint): every job keeps its id, so every row that names one
    /// still finds it, and the named index still refuses a second job of
    /// the same name.
    #[test]
    fn the_jobs_rebuilt_with_a_named_index_keep_their_ids_and_their_uniqueness() {
        let (_dir, path, conn) = database_at_version(17);
        conn.execute_batch(
            "INSERT INTO jobsets (id, project, name) VALUES (1, 'nixpkgs', 'trunk');
             INSERT INTO evals (id, jobset_id, seq, timestamp, nr_builds, rejected_jobs, strategy, ingested_at)
                 VALUES (10, 1, 1, 100, 2, 0, 'eval-builds', 0);
             INSERT INTO jobs (id, jobset_id, attr, system, suffixed)
                 VALUES (5, 1, 'hello', 'x86_64-linux', 1), (9, 1, 'tested', 'x86_64-linux', 0);
             INSERT INTO builds (id, job_id, finished, status, stoptime, drv_hash, nixname)
                 VALUES (70, 5, 1, 1, 150, 'aaaa', 'hello-1'), (71, 9, 1, 0, 150, 'bbbb', 'tested');
             INSERT INTO spans (job_id, first_seq, last_seq, build_id, version, built)
                 VALUES (5, 1, NULL, 70, 1, 0), (9, 1, NULL, 71, 1, 1);
             INSERT INTO job_origins (job_id, build_id, learned_at, since, evals_before, derivations_before, beyond_horizon)
                 VALUES (5, 70, 100, 50, 3, 1, 0);",
        )
        .unwrap();
        drop(conn);

        let store = Store::open(&path).unwrap();
        assert_eq!(store.integrity_check().unwrap(), "ok");
        let jobs: Vec<(i64, String, bool)> = store
            .conn
            .prepare("SELECT id, attr, suffixed FROM jobs ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            jobs,
            [
                (5, "hello".to_owned(), true),
                (9, "tested".to_owned(), false)
            ]
        );
        let indexes: Vec<String> = store
            .conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'jobs' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(indexes, ["jobs_by_jobset", "jobs_by_name"]);
        let again = store.conn.execute(
            "INSERT INTO jobs (jobset_id, attr, system, suffixed) VALUES (1, 'hello', 'x86_64-linux', 1)",
            [],
        );
        assert!(again.is_err(), "a second hello was accepted");
        let refers: (i64, i64) = store
            .conn
            .query_row(
                "SELECT b.job_id, o.job_id FROM builds b JOIN jobs j ON j.id = b.job_id
                 JOIN job_origins o ON o.job_id = j.id WHERE j.attr = 'hello'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(refers, (5, 5));
        let checked: bool = store
            .conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert!(checked, "foreign keys are checked again after migrating");
    }

    #[test]
    fn reading_a_missing_database_says_to_ingest_first() {
        let dir = tempfile::tempdir().unwrap();
        let err = Store::open_read_only(&dir.path().join("none.sqlite")).unwrap_err();
        assert!(
            err.to_string()
                .contains("run `hydra-sentinel ingest` first"),
            "{err}"
        );
        assert!(!dir.path().join("none.sqlite").exists());
    }
}
