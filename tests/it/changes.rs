//! Builds that change after the fact (restarts, repointing) and renamed
//! jobsets, through the real client and store against the look-alike.

use hydra_sentinel::history::{JobName, StatusClass};
use hydra_sentinel::policy::Policy;
use hydra_sentinel::sim::{FakeHydra, PlantedFailure, Rng, SimSpec};
use hydra_sentinel::store::JobRecord;

use crate::helpers::{Sandbox, assert_evals_complete, small_spec, start};
use crate::ingest::{Results, assert_streaks_are, record_served, streaks_of};

/// Streamed whole whenever anything is to be fetched, and a round through
/// the failed builds on every pass: the round reads the newest eval whole.
const STREAM_ALWAYS: &str = "[ingest]\nper_build_fetch_limit = 0\nrecheck_after_secs = 0\n";
/// Build by build, with a round through the failed builds on every pass.
const PER_BUILD_EVERY_ROUND: &str =
    "[ingest]\nbuilds_per_request = 1\nrecheck_after_secs = 0\nrecheck_budget = 10000\n";

const NOW: i64 = 2_000_000_000;

/// A history without rebuilds: each job keeps its build in every eval. One
/// package (its builds come first) fails throughout, so that every round of
/// rechecks has work.
fn steady(evals: usize) -> SimSpec {
    SimSpec {
        rebuild_rate: 0.0,
        planted: vec![PlantedFailure {
            attr: "always-failing".into(),
            ..PlantedFailure::default()
        }],
        ..small_spec(8, evals)
    }
}

/// A job of the oldest eval (not the failing one), its name and build,
/// which every eval reuses.
fn a_job(hydra: &FakeHydra, n: usize) -> (JobName, i64) {
    let sim = hydra.hydra();
    let build = &sim.builds[&sim.evals[0].builds[2 + n]];
    assert!(!build.job.starts_with("always-failing"));
    assert_eq!(
        build.evals.len(),
        sim.evals.len(),
        "the build is reused by every eval"
    );
    (JobName::parse(&build.job, &build.system).unwrap(), build.id)
}

fn record(sandbox: &Sandbox, job: &JobName) -> JobRecord {
    sandbox
        .store()
        .jobs_by_attr(&job.attr, &Policy::nixpkgs().streak)
        .unwrap()
        .into_iter()
        .find(|r| r.name.system == job.system)
        .unwrap_or_else(|| panic!("no history for {job}"))
}

/// The job's class in each stored eval, oldest first, as the store reads it.
fn classes_by_eval(sandbox: &Sandbox, job: &JobName) -> Vec<(i64, StatusClass)> {
    let record = record(sandbox, job);
    let conn = sandbox.sql();
    let mut stmt = conn
        .prepare("SELECT id, seq FROM evals ORDER BY seq")
        .unwrap();
    let evals: Vec<(i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    evals
        .into_iter()
        .filter_map(|(id, seq)| {
            record
                .spans
                .iter()
                .find(|s| s.first.seq <= seq && seq <= s.last.seq)
                .map(|s| (id, s.build.class()))
        })
        .collect()
}

fn eval_ids(hydra: &FakeHydra) -> Vec<i64> {
    hydra.hydra().evals.iter().map(|e| e.id).collect()
}

#[test]
fn a_repointed_builds_streak_starts_at_the_repoint() {
    // Streamed: a build that built, repointed by the fifth eval, fails.
    // Build by build: a failing build, repointed by the fifth eval, builds.
    for (strategy, before, after) in [(STREAM_ALWAYS, 0, 1), (PER_BUILD_EVERY_ROUND, 1, 0)] {
        let hydra = start(&steady(6));
        let (job, build) = a_job(&hydra, 0);
        let ids = eval_ids(&hydra);
        hydra.edit_build(build, |b| b.finish(before, 1_800_000_000));
        hydra.publish(4);
        let sandbox = Sandbox::new(&hydra, strategy);
        assert!(sandbox.pass_at(None, NOW).1.is_none());
        let old_drv = record(&sandbox, &job).spans[0].build.drv_hash.clone();

        // The fifth eval reuses the build by output path, for a new derivation.
        hydra.edit_build(build, |b| b.repoint("0000000000000000000000000000000z"));
        hydra.publish(5);
        assert!(sandbox.pass_at(None, NOW + 3_600).1.is_none());
        hydra.edit_build(build, |b| b.finish(after, 1_800_100_000));
        hydra.publish(6);
        assert!(sandbox.pass_at(None, NOW + 7_200).1.is_none());
        // The sixth eval came with the build still pending for some: ask once more.
        assert!(sandbox.pass_at(None, NOW + 10_800).1.is_none());

        let class = |status| StatusClass::from_hydra(true, Some(status));
        let expected: Vec<(i64, StatusClass)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, if i < 4 { class(before) } else { class(after) }))
            .collect();
        assert_eq!(classes_by_eval(&sandbox, &job), expected, "{strategy}");
        let record = record(&sandbox, &job);
        let streak = record.history.streak.as_ref().expect("a streak");
        assert_eq!(
            (
                streak.class,
                streak.since.id,
                streak.evals,
                streak.distinct_drvs
            ),
            (class(after), ids[4], 2, 1),
            "{strategy}: the streak starts at the repoint, with the new derivation only"
        );
        assert_eq!(record.spans[0].build.drv_hash, old_drv, "{strategy}");
        assert_eq!(
            record.spans.last().unwrap().build.drv_hash,
            "0000000000000000000000000000000z",
            "{strategy}"
        );
        assert_evals_complete(&sandbox.sql());
    }
}

#[test]
fn a_restarted_builds_history_before_the_restart_is_untouched() {
    for strategy in [STREAM_ALWAYS, PER_BUILD_EVERY_ROUND] {
        let hydra = start(&steady(6));
        let (job, build) = a_job(&hydra, 1);
        let ids = eval_ids(&hydra);
        hydra.edit_build(build, |b| b.finish(1, 1_800_000_000));
        hydra.publish(4);
        let sandbox = Sandbox::new(&hydra, strategy);
        assert!(sandbox.pass_at(None, NOW).1.is_none());

        // Restarted as Hydra does: unfinished, the old status kept.
        hydra.edit_build(build, |b| b.restart_like_hydra());
        hydra.publish(5);
        assert!(sandbox.pass_at(None, NOW + 3_600).1.is_none());
        let pending = classes_by_eval(&sandbox, &job);
        assert_eq!(
            pending.last(),
            Some(&(ids[4], StatusClass::Pending)),
            "{strategy}: {pending:?}"
        );
        let streak = record(&sandbox, &job).history.streak.unwrap();
        assert_eq!(
            (streak.class, streak.since.id, streak.evals),
            (StatusClass::Failing, ids[0], 4),
            "{strategy}: a pending restart neither ends nor extends the failure"
        );

        // It builds this time.
        hydra.edit_build(build, |b| b.finish(0, 1_800_100_000));
        assert!(sandbox.pass_at(None, NOW + 7_200).1.is_none());
        hydra.publish(6);
        assert!(sandbox.pass_at(None, NOW + 10_800).1.is_none());

        let expected: Vec<(i64, StatusClass)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let class = if i < 4 {
                    StatusClass::Failing
                } else {
                    StatusClass::Ok
                };
                (*id, class)
            })
            .collect();
        assert_eq!(classes_by_eval(&sandbox, &job), expected, "{strategy}");
        let record = record(&sandbox, &job);
        let streak = record.history.streak.as_ref().unwrap();
        assert_eq!(
            (streak.class, streak.since.id, streak.evals),
            (StatusClass::Ok, ids[4], 2),
            "{strategy}: the new status counts from the eval where it was seen"
        );
        assert_eq!(
            record.spans.iter().map(|s| s.build.id).collect::<Vec<_>>(),
            vec![build, build],
            "{strategy}: one build, two versions"
        );
        assert_eq!(
            sandbox.count("SELECT count(*) FROM build_versions"),
            1,
            "{strategy}: the version before the restart is kept"
        );
        assert_evals_complete(&sandbox.sql());
    }
}

#[test]
fn with_restarts_and_repoints_every_streak_matches_what_hydra_served_eval_by_eval() {
    // Packages that keep failing (their builds are reused eval after eval),
    // and others whose result flips now and then.
    let spec = SimSpec {
        flip_rate: 0.03,
        planted: (0..12)
            .map(|n| PlantedFailure {
                attr: format!("failing-{n}"),
                since: n % 5,
                ..PlantedFailure::default()
            })
            .collect(),
        ..small_spec(40, 12)
    };
    for strategy in [STREAM_ALWAYS, PER_BUILD_EVERY_ROUND] {
        let hydra = start(&spec);
        let evals = hydra.hydra().evals;
        let sandbox = Sandbox::new(&hydra, strategy);
        let mut rng = Rng::new(0x7265_7374);
        let mut served = Results::new();
        let mut changed = 0;
        for (i, eval) in evals.iter().enumerate() {
            // Before Hydra publishes this eval, some failed builds that it
            // lists again are restarted or repointed.
            let sim = hydra.hydra();
            let mut touched = Vec::new();
            for id in &eval.builds {
                let b = &sim.builds[id];
                let again = i > 0 && evals[i - 1].builds.contains(id);
                if again && b.finished && b.status != Some(0) && rng.chance(0.3) {
                    if rng.chance(0.5) {
                        hydra.edit_build(*id, |b| b.restart_like_hydra());
                    } else {
                        let drv = format!("{:0>32}", format!("{id}{i}"));
                        hydra.edit_build(*id, |b| b.repoint(&drv));
                    }
                    touched.push(*id);
                }
            }
            hydra.publish(i + 1);
            let now = NOW + 7_200 * i as i64;
            assert!(sandbox.pass_at(None, now).1.is_none(), "{strategy}");
            // They finish, some of them with another result, and are seen.
            for id in &touched {
                let status = if rng.chance(0.5) { 0 } else { 1 };
                hydra.edit_build(*id, |b| b.finish(status, 1_900_000_000 + i as i64));
            }
            assert!(sandbox.pass_at(None, now + 3_600).1.is_none(), "{strategy}");
            changed += touched.len();
            record_served(&mut served, &hydra.hydra(), eval.id, &eval.builds);
        }
        assert!(changed >= 10, "too few changes to mean anything: {changed}");
        assert_evals_complete(&sandbox.sql());
        assert!(
            sandbox.count("SELECT count(*) FROM build_versions") >= changed as i64,
            "{strategy}: every change is a version"
        );
        assert_streaks_are(&sandbox, &streaks_of(served), strategy);
    }
}

/// `hydra-sentinel ingest` on the sandbox's configuration.
fn ingest_command(sandbox: &Sandbox) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hydra-sentinel"));
    command
        .args(["--config", sandbox.config_path.to_str().unwrap(), "ingest"])
        .env("HYDRA_SENTINEL_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    command
}

/// What a round of rechecks leaves behind, to compare two databases.
fn recheck_fingerprint(sandbox: &Sandbox) -> Vec<i64> {
    [
        "SELECT count(*) FROM builds",
        "SELECT count(*) FROM build_versions",
        "SELECT coalesce(sum(version), 0) FROM builds",
        "SELECT count(*) FROM spans",
        "SELECT count(*) FROM spans WHERE last_seq IS NULL",
        "SELECT count(*) FROM span_builds WHERE last_seq IS NULL AND status = 0",
        "SELECT count(*) FROM span_builds WHERE last_seq IS NOT NULL AND status != 0",
        "SELECT count(*) FROM jobsets WHERE recheck_cursor IS NOT NULL",
    ]
    .iter()
    .map(|sql| sandbox.count(sql))
    .collect()
}

#[test]
fn a_kill_during_a_round_of_rechecks_resumes_it_without_losing_or_repeating_work() {
    let spec = SimSpec {
        rebuild_rate: 0.0,
        planted: (0..120)
            .map(|n| PlantedFailure {
                attr: format!("failing-{n}"),
                ..PlantedFailure::default()
            })
            .collect(),
        ..small_spec(20, 3)
    };
    let hydra = start(&spec);
    // Build by build, a day between rounds, one round in one pass.
    let config =
        "[ingest]\nbuilds_per_request = 1\nrecheck_after_secs = 86400\nrecheck_budget = 10000\n";
    let reference = Sandbox::new(&hydra, config);
    let sandbox = Sandbox::new(&hydra, config);
    for s in [&reference, &sandbox] {
        // At time 0 no round is due yet: the evals only.
        assert!(s.pass_at(None, 0).1.is_none());
    }
    // Every failed build of the newest eval is restarted and builds.
    let sim = hydra.hydra();
    let newest = sim.evals.last().unwrap();
    let failed: Vec<i64> = newest
        .builds
        .iter()
        .copied()
        .filter(|id| sim.builds[id].status != Some(0))
        .collect();
    assert_eq!(failed.len(), 240);
    for id in &failed {
        hydra.edit_build(*id, |b| b.finish(0, 1_900_000_000));
    }
    hydra.set_latency(Some(std::time::Duration::from_millis(15)));

    let before = hydra.counters().requests("build");
    let output = ingest_command(&reference).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reference_requests = hydra.counters().requests("build") - before;
    assert_eq!(reference_requests, failed.len());
    let expected = recheck_fingerprint(&reference);
    assert_eq!(
        expected[1],
        failed.len() as i64,
        "one new version per restarted build"
    );

    let before = hydra.counters().requests("build");
    let mut rng = Rng::new(0x6b69_6c6c);
    let mut kills = 0;
    let mut done_before = 0;
    for round in 0..8 {
        let mut child = ingest_command(&sandbox).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(150 + rng.below(900)));
        if child.try_wait().unwrap().is_none() {
            kills += 1;
        }
        child.kill().ok();
        child.wait().unwrap();
        assert_evals_complete(&sandbox.sql());
        let done = sandbox.count("SELECT count(*) FROM build_versions");
        assert!(
            done >= done_before,
            "round {round}: versions went from {done_before} to {done}"
        );
        done_before = done;
        eprintln!(
            "round {round}: {done} of {} rechecked builds written",
            failed.len()
        );
    }
    let output = ingest_command(&sandbox).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(kills >= 2, "the kills must land during the round: {kills}");
    assert_eq!(
        recheck_fingerprint(&sandbox),
        expected,
        "a killed and resumed round differs from an uninterrupted one"
    );
    let requests = hydra.counters().requests("build") - before;
    // A killed chunk is asked for again; nothing else is.
    assert!(
        requests <= reference_requests + kills * 50,
        "{requests} build requests for {reference_requests} builds and {kills} kills"
    );
}

#[test]
fn a_renamed_jobset_keeps_its_history_and_the_operator_is_told_to_update_the_configuration() {
    let spec = SimSpec {
        planted: vec![
            PlantedFailure {
                attr: "fails-early".into(),
                since: 1,
                ..PlantedFailure::default()
            },
            // New builds after the rename, which report the new name.
            PlantedFailure {
                attr: "fails-late".into(),
                since: 4,
                ..PlantedFailure::default()
            },
        ],
        ..small_spec(10, 6)
    };
    let hydra = start(&spec);
    let ids = eval_ids(&hydra);
    hydra.publish(3);
    let mut sandbox = Sandbox::new(&hydra, "");
    sandbox.pass(None);

    hydra.rename_jobset("trunk-2");
    hydra.publish(6);
    hydra.set_page_size(2);
    let asked_before = hydra.requests().len();
    let report = sandbox.pass(None);
    assert_eq!(report.evals_ingested, ids[3..6], "{report:?}");
    assert_eq!(report.rejected_jobs, 0, "builds with the new name are ours");
    let pages: Vec<String> = hydra.requests()[asked_before..]
        .iter()
        .map(|r| r.path.clone())
        .filter(|p| p.contains("/evals"))
        .collect();
    assert_eq!(
        pages,
        [
            "/jobset/nixpkgs/trunk/evals",
            "/jobset/nixpkgs/trunk-2/evals",
            "/jobset/nixpkgs/trunk-2/evals?page=2"
        ],
        "the redirect is followed once, and the next page asked for at its new address"
    );
    assert_eq!(sandbox.count("SELECT count(*) FROM jobsets"), 1);
    assert_eq!(sandbox.count("SELECT count(*) FROM evals"), 6);
    assert_evals_complete(&sandbox.sql());
    let job = JobName::parse("fails-early.x86_64-linux", "x86_64-linux").unwrap();
    let streak = record(&sandbox, &job).history.streak.unwrap();
    assert_eq!(
        (streak.class, streak.since.id, streak.evals),
        (StatusClass::Failing, ids[1], 5),
        "one history across the rename"
    );

    let status = std::process::Command::new(env!("CARGO_BIN_EXE_hydra-sentinel"))
        .args(["--config", sandbox.config_path.to_str().unwrap(), "status"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(
        text.contains("renamed on Hydra   now nixpkgs:trunk-2")
            && text.contains("Set jobset = \"trunk-2\" in [[jobsets]]"),
        "{text}"
    );

    // The operator follows the advice: the same row, under its new name.
    sandbox.config.jobsets[0].jobset = "trunk-2".into();
    let report = sandbox.pass(None);
    assert!(report.evals_ingested.is_empty(), "{report:?}");
    assert_eq!(
        sandbox.count("SELECT count(*) FROM jobsets WHERE name = 'trunk-2' AND renamed_to IS NULL"),
        1
    );
    assert_eq!(sandbox.count("SELECT count(*) FROM jobsets"), 1);
    let streak = record(&sandbox, &job).history.streak.unwrap();
    assert_eq!((streak.since.id, streak.evals), (ids[1], 5));
    let summary = &sandbox.store().jobset_summaries().unwrap()[0];
    assert_eq!((summary.evals, &summary.renamed_to), (6, &None));
}

#[test]
fn a_round_of_rechecks_keeps_to_its_budget_per_pass_and_comes_back_after_the_interval() {
    let spec = SimSpec {
        rebuild_rate: 0.0,
        planted: (0..60)
            .map(|n| PlantedFailure {
                attr: format!("failing-{n}"),
                ..PlantedFailure::default()
            })
            .collect(),
        ..small_spec(20, 2)
    };
    let hydra = start(&spec);
    let sandbox = Sandbox::new(
        &hydra,
        "[ingest]\nbuilds_per_request = 1\nrecheck_after_secs = 3600\nrecheck_budget = 50\n",
    );
    // At time 0 no round is due: the evals only.
    assert!(sandbox.pass_at(None, 0).1.is_none());
    let asked = |now: i64| {
        let before = hydra.counters().requests("build");
        let (reports, error) = sandbox.pass_at(None, now);
        assert!(error.is_none(), "{error:?}");
        let requests = hydra.counters().requests("build") - before;
        assert_eq!(requests, reports[0].rechecked_builds, "{reports:?}");
        requests
    };
    let t = 10_000;
    // 120 failed builds, 50 a pass: the round takes three passes.
    assert_eq!([asked(t), asked(t + 60), asked(t + 120)], [50, 50, 20]);
    assert_eq!(
        asked(t + 180),
        0,
        "the round is over until the interval has passed"
    );
    assert_eq!(
        asked(t + 3600),
        50,
        "the next round starts an interval after the last"
    );
}
