//! Ingest through the real HTTP client into a real SQLite file.

use std::collections::{HashMap, HashSet};

use hydra_sentinel::history::{JobName, StatusClass};
use hydra_sentinel::sim::{Fault, SimSpec};

use crate::helpers::{Sandbox, assert_evals_complete, small_spec, start};

/// Make single-build requests look expensive or cheap to pin a strategy.
const STREAM_ALWAYS: &str = "[ingest]\nper_build_fetch_limit = 0\n";
const PER_BUILD_WHEN_POSSIBLE: &str = "[ingest]\nbuilds_per_request = 1\n";

const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hydra");

#[test]
fn ingests_every_eval_across_pages_in_hydras_order() {
    let hydra = start(&small_spec(30, 8));
    hydra.set_page_size(3);
    let sandbox = Sandbox::new(&hydra, "");
    let report = sandbox.pass(Some(100));

    let expected: Vec<i64> = hydra.hydra().evals.iter().map(|e| e.id).collect();
    assert_eq!(report.evals_ingested, expected);
    let stored: Vec<i64> = {
        let conn = sandbox.sql();
        let mut stmt = conn.prepare("SELECT id FROM evals ORDER BY seq").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(stored, expected, "evals must be stored oldest first");
    assert_evals_complete(&sandbox.sql());

    let requests = hydra.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert!(
        paths.contains(&"/jobset/nixpkgs/trunk/evals?page=3"),
        "pagination not followed: {paths:?}"
    );
    for r in &requests {
        assert_eq!(r.accept.as_deref(), Some("application/json"), "{r:?}");
        assert!(
            r.user_agent
                .as_deref()
                .is_some_and(|ua| ua.starts_with("hydra-sentinel/")),
            "{r:?}"
        );
        assert!(
            r.accept_encoding
                .as_deref()
                .is_some_and(|e| e.contains("gzip")),
            "{r:?}"
        );
    }

    let again = sandbox.pass(Some(100));
    assert!(
        again.evals_ingested.is_empty(),
        "a second pass found evals again: {again:?}"
    );
}

#[test]
fn a_job_that_stays_green_costs_no_row_per_eval() {
    let spec = SimSpec {
        rebuild_rate: 0.0,
        ..small_spec(40, 12)
    };
    let hydra = start(&spec);
    let sandbox = Sandbox::new(&hydra, "");
    sandbox.pass(Some(100));
    let jobs = sandbox.count("SELECT count(*) FROM jobs");
    assert_eq!(
        jobs,
        hydra.hydra().builds.len() as i64,
        "one build per job when nothing is rebuilt"
    );
    assert_eq!(sandbox.count("SELECT count(*) FROM builds"), jobs);
    assert_eq!(
        sandbox.count("SELECT count(*) FROM spans"),
        jobs,
        "unchanged jobs must not add spans"
    );
    assert_eq!(sandbox.count("SELECT count(*) FROM evals"), 12);
}

#[test]
fn a_first_backfill_takes_the_newest_evals_and_later_passes_catch_up_in_order() {
    let hydra = start(&small_spec(10, 12));
    let ids: Vec<i64> = hydra.hydra().evals.iter().map(|e| e.id).collect();
    hydra.publish(8);
    let sandbox = Sandbox::new(&hydra, "");
    assert_eq!(sandbox.pass(Some(3)).evals_ingested, ids[5..8]);
    hydra.publish(12);
    assert_eq!(sandbox.pass(Some(2)).evals_ingested, ids[8..10]);
    assert_eq!(sandbox.pass(Some(2)).evals_ingested, ids[10..12]);
    assert_evals_complete(&sandbox.sql());
}

/// The job of a build in the newest eval, and the build id.
fn some_newest_job(hydra: &hydra_sentinel::sim::FakeHydra) -> (JobName, i64) {
    let sim = hydra.hydra();
    let newest = sim.evals.last().unwrap();
    let build = &sim.builds[&newest.builds[0]];
    (JobName::parse(&build.job, &build.system).unwrap(), build.id)
}

fn class_of(sandbox: &Sandbox, job: &JobName) -> StatusClass {
    let records = sandbox
        .store()
        .jobs_by_attr(&job.attr, &hydra_sentinel::policy::Policy::nixpkgs().streak)
        .unwrap();
    let record = records
        .iter()
        .find(|r| r.name.system == job.system)
        .unwrap_or_else(|| panic!("no history for {job}: {records:?}"));
    record.history.class
}

#[test]
fn a_build_unfinished_at_first_sight_is_asked_about_again_until_it_finishes() {
    for strategy in [STREAM_ALWAYS, PER_BUILD_WHEN_POSSIBLE] {
        let hydra = start(&small_spec(10, 3));
        let (job, build) = some_newest_job(&hydra);
        hydra.edit_build(build, |b| b.restart());
        let sandbox = Sandbox::new(&hydra, strategy);
        sandbox.pass(None);
        assert_eq!(class_of(&sandbox, &job), StatusClass::Pending, "{strategy}");

        hydra.edit_build(build, |b| b.finish(1, 1_800_000_000));
        let report = sandbox.pass(None);
        assert_eq!(
            (report.rechecked_builds, report.changed_builds),
            (1, 1),
            "{strategy}: {report:?}"
        );
        assert_eq!(class_of(&sandbox, &job), StatusClass::Failing, "{strategy}");
    }
}

#[test]
fn a_restarted_build_is_noticed_once_the_recheck_interval_has_passed() {
    for strategy in [STREAM_ALWAYS, PER_BUILD_WHEN_POSSIBLE] {
        let hydra = start(&small_spec(10, 3));
        let (job, build) = some_newest_job(&hydra);
        hydra.edit_build(build, |b| b.finish(1, 1_800_000_000));
        let sandbox = Sandbox::new(&hydra, &format!("{strategy}recheck_after_secs = 3600\n"));
        let t0 = 2_000_000_000;
        assert!(sandbox.pass_at(None, t0).1.is_none());
        assert_eq!(class_of(&sandbox, &job), StatusClass::Failing, "{strategy}");

        // Someone restarts it on Hydra and it builds.
        hydra.edit_build(build, |b| b.finish(0, 1_800_100_000));
        assert!(sandbox.pass_at(None, t0 + 600).1.is_none());
        assert_eq!(
            class_of(&sandbox, &job),
            StatusClass::Failing,
            "{strategy}: rechecked before the interval passed"
        );
        let (reports, error) = sandbox.pass_at(None, t0 + 3600);
        assert!(error.is_none(), "{error:?}");
        assert!(
            reports[0].changed_builds >= 1,
            "{strategy}: {:?}",
            reports[0]
        );
        assert_eq!(class_of(&sandbox, &job), StatusClass::Ok, "{strategy}");
    }
}

/// Serve the recorded samples exactly as they are.
fn serve_samples() -> (hydra_sentinel::sim::FakeHydra, Sandbox) {
    let hydra = start(&small_spec(1, 1));
    let read = |name: &str| std::fs::read_to_string(format!("{SAMPLES}/{name}")).unwrap();
    let evals: serde_json::Value = serde_json::from_str(&read("evals.json")).unwrap();
    hydra.serve_file("/jobset/nixpkgs/trunk/evals", read("evals.json"));
    hydra.serve_file("/eval/1818043", evals["evals"][0].to_string());
    hydra.serve_file("/eval/1818043/builds", read("eval-builds.json"));
    hydra.serve_file("/build/301944122", read("build.json"));
    let sandbox = Sandbox::new(&hydra, STREAM_ALWAYS);
    (hydra, sandbox)
}

#[test]
fn recorded_shapes_are_classified_as_hydra_means_them() {
    let (_hydra, sandbox) = serve_samples();
    let report = sandbox.pass(Some(1));
    assert_eq!(report.evals_ingested, vec![1818043]);
    let summary = &sandbox.store().jobset_summaries().unwrap()[0];
    let count = |c: StatusClass| summary.jobs[&c];
    // hello and jq build; aiohttp-fixture (1) and big-solver (7) fail on
    // their own; pytest-aiohttp-fixture is a victim (2); firefox (3) and the
    // cancelled test (4) are noise; libreoffice is queued.
    assert_eq!(count(StatusClass::Ok), 2, "{summary:?}");
    assert_eq!(count(StatusClass::Failing), 2, "{summary:?}");
    assert_eq!(count(StatusClass::DependencyFailed), 1, "{summary:?}");
    assert_eq!(count(StatusClass::Noise), 2, "{summary:?}");
    assert_eq!(count(StatusClass::Pending), 1, "{summary:?}");
    let eval = summary.latest_eval.as_ref().unwrap();
    assert_eq!(
        eval.revision.as_deref(),
        Some("e9fbe4231216421ad78c5d0f1d5d84f27deaaa15")
    );
    let victim = sandbox
        .store()
        .jobs_by_attr(
            "python313Packages.pytest-aiohttp-fixture",
            &hydra_sentinel::policy::Policy::nixpkgs().streak,
        )
        .unwrap();
    assert_eq!(victim[0].name.system, "x86_64-linux");
    assert_eq!(victim[0].history.class, StatusClass::DependencyFailed);
}

#[test]
fn hostile_job_names_are_refused_counted_and_never_stored() {
    let spec = SimSpec {
        hostile_jobs: true,
        ..small_spec(10, 4)
    };
    let hydra = start(&spec);
    let sandbox = Sandbox::new(&hydra, "");
    let report = sandbox.pass(None);
    assert_eq!(
        report.rejected_jobs,
        3 * 4,
        "three hostile jobs in four evals: {report:?}"
    );
    let summary = &sandbox.store().jobset_summaries().unwrap()[0];
    assert_eq!(summary.rejected_jobs, 3);
    let stored = sandbox.count(
        "SELECT count(*) FROM jobs WHERE attr LIKE '%@%' OR attr LIKE '% %' OR attr LIKE '%(%'",
    );
    assert_eq!(stored, 0);
    assert_evals_complete(&sandbox.sql());
}

fn requests_to(hydra: &hydra_sentinel::sim::FakeHydra, path: &str) -> usize {
    hydra.requests().iter().filter(|r| r.path == path).count()
}

#[test]
fn server_errors_are_retried_and_the_pass_completes() {
    let hydra = start(&small_spec(10, 2));
    let [first, second] = [0, 1].map(|i| hydra.hydra().evals[i].id);
    // The first eval of a jobset is streamed whole; the next one is looked at first.
    for path in [format!("/eval/{first}/builds"), format!("/eval/{second}")] {
        hydra.inject(&path, Fault::Status(500));
        hydra.inject(&path, Fault::Status(503));
    }
    let sandbox = Sandbox::new(&hydra, "");
    assert_eq!(sandbox.pass(None).evals_ingested.len(), 2);
    assert_eq!(requests_to(&hydra, &format!("/eval/{first}/builds")), 3);
    assert_eq!(requests_to(&hydra, &format!("/eval/{second}")), 3);
    assert_evals_complete(&sandbox.sql());
}

#[test]
fn a_404_is_not_retried() {
    let hydra = start(&small_spec(10, 1));
    let first = hydra.hydra().evals[0].id;
    let path = format!("/eval/{first}/builds");
    hydra.inject(&path, Fault::Status(404));
    let sandbox = Sandbox::new(&hydra, "");
    let (_, error) = sandbox.pass_at(None, 2_000_000_000);
    let error = error.expect("a 404 fails the pass");
    assert!(
        hydra_sentinel::error_chain(&error).contains("404"),
        "{error}"
    );
    assert_eq!(requests_to(&hydra, &path), 1, "{:?}", hydra.requests());
}

#[test]
fn a_body_cut_mid_array_is_downloaded_again_and_nothing_is_half_written() {
    let hydra = start(&small_spec(50, 1));
    let first = hydra.hydra().evals[0].id;
    let path = format!("/eval/{first}/builds");
    // Once cut with a Content-Length that matches (only the JSON is short),
    // once with the connection closing before the promised length.
    hydra.inject(
        &path,
        Fault::Truncate {
            per_mille: 500,
            honest_length: true,
        },
    );
    hydra.inject(
        &path,
        Fault::Truncate {
            per_mille: 300,
            honest_length: false,
        },
    );
    let sandbox = Sandbox::new(&hydra, STREAM_ALWAYS);
    assert_eq!(sandbox.pass(None).evals_ingested, vec![first]);
    assert_eq!(requests_to(&hydra, &path), 3);
    assert_eq!(
        sandbox.count("SELECT count(*) FROM builds"),
        hydra.hydra().builds.len() as i64
    );
    assert_evals_complete(&sandbox.sql());
}

#[test]
fn a_body_that_stays_broken_writes_nothing_and_the_next_pass_recovers() {
    let hydra = start(&small_spec(50, 1));
    let first = hydra.hydra().evals[0].id;
    let path = format!("/eval/{first}/builds");
    for _ in 0..4 {
        hydra.inject(
            &path,
            Fault::Truncate {
                per_mille: 700,
                honest_length: true,
            },
        );
    }
    let sandbox = Sandbox::new(&hydra, STREAM_ALWAYS);
    let (_, error) = sandbox.pass_at(None, 2_000_000_000);
    assert!(
        error.is_some(),
        "four cut bodies with three retries must fail the pass"
    );
    for table in ["evals", "builds", "spans", "jobs"] {
        assert_eq!(
            sandbox.count(&format!("SELECT count(*) FROM {table}")),
            0,
            "{table} was half-written"
        );
    }
    assert_eq!(sandbox.pass(None).evals_ingested, vec![first]);
    assert_evals_complete(&sandbox.sql());
}

/// (attribute, system) → (class, first eval, evals, distinct derivations).
type Streaks = HashMap<(String, String), (StatusClass, i64, u32, usize)>;
/// (attribute, system) → one (eval, class, derivation) per eval the job was in.
type Results = HashMap<(String, String), Vec<(i64, StatusClass, String)>>;

/// The streak of each job, computed the slow way from what the fake Hydra
/// served: one result per eval the job was in.
fn naive_streaks(sim: &hydra_sentinel::sim::SimHydra) -> Streaks {
    let mut results = Results::new();
    for eval in &sim.evals {
        for id in &eval.builds {
            let b = &sim.builds[id];
            let Ok(name) = JobName::parse(&b.job, &b.system) else {
                continue;
            };
            let class = StatusClass::from_hydra(b.finished, b.status);
            results.entry((name.attr, name.system)).or_default().push((
                eval.id,
                class,
                b.drv_hash.clone(),
            ));
        }
    }
    results
        .into_iter()
        .filter_map(|(job, results)| {
            let signals: Vec<_> = results.into_iter().filter(|r| r.1.is_signal()).collect();
            let class = signals.last()?.1;
            let run: Vec<_> = signals.iter().rev().take_while(|r| r.1 == class).collect();
            let drvs: HashSet<_> = run.iter().map(|r| &r.2).collect();
            Some((job, (class, run.last()?.0, run.len() as u32, drvs.len())))
        })
        .collect()
}

#[test]
fn every_streak_matches_a_per_eval_reading_of_what_hydra_served() {
    let spec = SimSpec {
        packages: 60,
        ..SimSpec::demo()
    };
    let hydra = start(&spec);
    let expected = naive_streaks(&hydra.hydra());
    assert!(
        expected.len() > 200,
        "too few jobs to mean anything: {}",
        expected.len()
    );
    for strategy in [STREAM_ALWAYS, PER_BUILD_WHEN_POSSIBLE, ""] {
        let sandbox = Sandbox::new(&hydra, strategy);
        sandbox.pass(Some(1000));
        assert_evals_complete(&sandbox.sql());
        let store = sandbox.store();
        let mut checked = 0;
        let attrs: HashSet<&String> = expected.keys().map(|(a, _)| a).collect();
        for attr in attrs {
            for record in store
                .jobs_by_attr(attr, &hydra_sentinel::policy::Policy::nixpkgs().streak)
                .unwrap()
            {
                let key = (record.name.attr.clone(), record.name.system.clone());
                let streak = record
                    .history
                    .streak
                    .as_ref()
                    .map(|s| (s.class, s.since.id, s.evals, s.distinct_drvs as usize));
                assert_eq!(
                    streak.as_ref(),
                    expected.get(&key),
                    "{strategy:?}: streak of {} on {}",
                    key.0,
                    key.1
                );
                checked += 1;
            }
        }
        assert_eq!(checked, expected.len(), "{strategy:?}");
        let gone = store
            .jobs_by_attr("oldtool", &hydra_sentinel::policy::Policy::nixpkgs().streak)
            .unwrap();
        assert!(
            gone.iter().all(|r| !r.history.present),
            "{strategy:?}: a removed package is still present"
        );
    }
}
