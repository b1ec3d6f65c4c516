//! Killing the real binary mid-ingest: the database keeps the last complete
//! eval, nothing partial, and the next run carries on to the same result as
//! a run that was never interrupted.

use std::process::{Command, Stdio};
use std::time::Duration;

use hydra_sentinel::sim::{Rng, SimSpec};
use hydra_sentinel::store::HISTORY_TABLES;

use crate::helpers::{Sandbox, assert_evals_complete, fingerprint, small_spec, start};

fn ingest_command(sandbox: &Sandbox) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hydra-sentinel"));
    command
        .args([
            "--config",
            sandbox.config_path.to_str().unwrap(),
            "ingest",
            "--max-evals",
            "100",
        ])
        .env("HYDRA_SENTINEL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

#[test]
fn a_kill_at_any_moment_leaves_whole_evals_and_the_next_run_finishes_the_job() {
    kill_and_resume("");
}

/// The same while an eval too big to ask for whole is learned build by
/// build, in small passes kept as they go.
#[test]
fn a_kill_while_learning_build_by_build_loses_nothing_and_the_next_run_finishes_the_job() {
    kill_and_resume("[ingest]\nwhole_eval_max_builds = 0\nrequests_per_pass = 200\n");
}

fn kill_and_resume(config: &str) {
    let spec = SimSpec {
        rebuild_rate: 0.2,
        flip_rate: 0.05,
        ..small_spec(300, 16)
    };
    let hydra = start(&spec);
    // About 60 KB of gzip per eval at 150 KB/s and a little latency per
    // request: a whole run takes several seconds, so kills land everywhere.
    hydra.throttle(Some(150_000));
    hydra.set_latency(Some(Duration::from_millis(3)));

    let reference = Sandbox::new(&hydra, config);
    while reference.pass(Some(100)).pending.is_some() {}
    let expected = fingerprint(&reference);

    let sandbox = Sandbox::new(&hydra, config);
    let mut rng = Rng::new(0x6b696c6c);
    let mut stored = 0;
    for round in 0..10 {
        let delay = Duration::from_millis(200 + rng.below(2800));
        let mut child = ingest_command(&sandbox)
            .spawn()
            .expect("starting hydra-sentinel");
        std::thread::sleep(delay);
        let finished_early = child.try_wait().unwrap().is_some();
        child.kill().ok();
        let status = child.wait().unwrap();
        if !sandbox.db().exists() {
            continue;
        }
        let conn = sandbox.sql();
        assert_evals_complete(&conn);
        let now = sandbox.count("SELECT count(*) FROM evals");
        assert!(
            now >= stored,
            "round {round}: evals went from {stored} to {now}"
        );
        eprintln!(
            "round {round}: killed after {delay:?} ({status}, finished early: {finished_early}); {now} evals stored"
        );
        stored = now;
    }

    // Runs to the end (a budgeted run may need a few).
    for _ in 0..100 {
        let output = ingest_command(&sandbox).output().unwrap();
        assert!(
            output.status.success(),
            "the run after the kills failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if fingerprint(&sandbox) == expected {
            break;
        }
    }
    assert_evals_complete(&sandbox.sql());
    assert_eq!(
        fingerprint(&sandbox),
        expected,
        "killed-and-resumed ingest differs from an uninterrupted one"
    );
    let leftovers: Vec<_> = std::fs::read_dir(sandbox.db().parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    assert!(leftovers.len() <= 6, "spool files pile up: {leftovers:?}");
}

/// A quarter of a small trunk written straight into a store at `path`;
/// returns the time of its newest eval.
fn quarter_of_trunk(path: &std::path::Path) -> i64 {
    use hydra_sentinel::config::JobsetRef;
    use hydra_sentinel::sim::{YearSpec, YearWriter};
    let mut store = hydra_sentinel::store::Store::open(path).expect("opening the store");
    let mut spec = YearSpec::trunk(1_500);
    spec.churn = 0.05;
    spec.mass_breakages = vec![40];
    let mut year = YearWriter::new(spec);
    let trunk = JobsetRef {
        project: "nixpkgs".into(),
        jobset: "trunk".into(),
    };
    for _ in 0..180 {
        year.write_eval(&mut store, &trunk)
            .expect("writing an eval");
    }
    year.newest_time()
}

fn prune_command(config: &std::path::Path, now: i64) -> Command {
    let now = chrono::DateTime::from_timestamp(now, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut command = Command::new(env!("CARGO_BIN_EXE_hydra-sentinel"));
    command
        .args(["--config", config.to_str().unwrap(), "prune", "--now", &now])
        .env("HYDRA_SENTINEL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// What a database holds, table by table, and whether it holds together.
fn contents(db: &std::path::Path) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open(db).expect("opening the database");
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let broken: i64 = conn
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(broken, 0, "foreign keys broken");
    let unnamed: i64 = conn
        .query_row(
            "SELECT count(*) FROM builds b WHERE NOT EXISTS (SELECT 1 FROM spans s WHERE s.build_id = b.id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(unnamed, 0, "builds no span names were left");
    HISTORY_TABLES
        .iter()
        .chain(&["actions"])
        .map(|table| {
            let n = conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap();
            (table.to_string(), n)
        })
        .collect()
}

#[test]
fn a_prune_killed_at_any_moment_holds_together_and_the_next_one_finishes_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.sqlite");
    let newest = quarter_of_trunk(&db);
    let reference_db = dir.path().join("reference.sqlite");
    std::fs::copy(&db, &reference_db).unwrap();
    let config_for = |name: &str, db: &std::path::Path| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "[[jobsets]]\nproject = \"nixpkgs\"\njobset = \"trunk\"\n[database]\npath = {:?}\nkeep_history_days = 30\n",
                db.display().to_string()
            ),
        )
        .unwrap();
        path
    };
    let config = config_for("killed.toml", &db);
    let reference = config_for("reference.toml", &reference_db);
    let before = contents(&reference_db);
    let output = prune_command(&reference, newest).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected = contents(&reference_db);
    assert!(
        expected[0].1 * 2 < before[0].1,
        "two thirds of the quarter are older than 30 days: {before:?} → {expected:?}"
    );

    let mut rng = Rng::new(0x7072756e65);
    for round in 0..8 {
        let delay = Duration::from_millis(5 + rng.below(150));
        let mut child = prune_command(&config, newest).spawn().unwrap();
        std::thread::sleep(delay);
        child.kill().ok();
        let status = child.wait().unwrap();
        let now = contents(&db);
        eprintln!("round {round}: killed after {delay:?} ({status}): {now:?}");
    }
    let output = prune_command(&config, newest).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        contents(&db),
        expected,
        "a killed-and-resumed prune differs from an uninterrupted one"
    );
}
