//! Small fixtures for the store's own tests: a store with `nixpkgs:trunk`,
//! an eval, a build of a job.

use super::{BuildRow, NewEval, Store};
use crate::history::JobName;

/// An eval whose id is also its time.
pub(super) fn new_eval(id: i64) -> NewEval {
    NewEval {
        id,
        timestamp: id,
        revision: None,
        checkout_time: None,
        eval_time: None,
        strategy: "eval-builds",
    }
}

/// Build `id` of `attr` on x86_64-linux, finished and succeeded.
pub(super) fn build_of(id: i64, attr: &str) -> BuildRow {
    let hydra_job = format!("{attr}.x86_64-linux");
    BuildRow {
        id,
        job: JobName::parse(&hydra_job, "x86_64-linux").unwrap(),
        hydra_job,
        finished: true,
        status: Some(0),
        stoptime: Some(100),
        drv_hash: "aaaa".into(),
        nixname: attr.into(),
    }
}

/// A store in a temporary folder (kept while the folder lives) with
/// `nixpkgs:trunk`, and that jobset's id.
pub(super) fn trunk_store() -> (tempfile::TempDir, Store, i64) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let jobset = crate::config::JobsetRef {
        project: "nixpkgs".into(),
        jobset: "trunk".into(),
    };
    let jobset_id = store.jobset_id(&jobset).unwrap();
    (dir, store, jobset_id)
}

/// The steps of SQLite's plan for `sql`, whose parameters are all 1.
pub(super) fn query_plan(store: &Store, sql: &str) -> Vec<String> {
    let mut statement = store
        .conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .unwrap();
    let ones = vec![1; statement.parameter_count()];
    statement
        .query_map(rusqlite::params_from_iter(ones), |r| r.get(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}
