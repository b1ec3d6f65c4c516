//! Killing the real binary mid-ingest: the database keeps the last complete
//! eval, nothing partial, and the next run carries on to the same result as
//! a run that was never interrupted.

use std::process::{Command, Stdio};
use std::time::Duration;

use hydra_sentinel::sim::{Rng, SimSpec};

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
