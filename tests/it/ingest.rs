//! Ingest through the real HTTP client into a real SQLite file.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hydra_sentinel::history::{Cause, JobName, StatusClass, may_be_inherited};
use hydra_sentinel::hydra::{HydraClient, Pacing};
use hydra_sentinel::ingest::{Ingestor, PassControl, PassOptions, WHOLE_EVAL_MAX_BUILDS};
use hydra_sentinel::sim::{Costs, FakeHydra, Fault, SimHydra, SimSpec};
use hydra_sentinel::store::Store;

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
fn some_newest_job(hydra: &FakeHydra) -> (JobName, i64) {
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
        // Asked about again once the gap between two questions has passed.
        let (reports, error) = sandbox.pass_at(None, 2_000_000_000 + 3600);
        assert!(error.is_none(), "{error:?}");
        let report = &reports[0];
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
fn serve_samples() -> (FakeHydra, Sandbox) {
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

fn requests_to(hydra: &FakeHydra, path: &str) -> usize {
    hydra.requests().iter().filter(|r| r.path == path).count()
}

/// How the whole-eval request of `eval` ended, as noted in the database:
/// None when it was never sent.
fn whole_eval_request(sandbox: &Sandbox, eval: i64) -> Option<(Option<String>, Option<String>)> {
    sandbox
        .sql()
        .query_row(
            "SELECT outcome, reason FROM whole_eval_requests WHERE eval_id = ?1",
            [eval],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok()
}

#[test]
fn server_errors_are_retried_but_a_failed_whole_eval_request_falls_back_to_single_builds() {
    let hydra = start(&small_spec(10, 2));
    let [first, second] = [0, 1].map(|i| hydra.hydra().evals[i].id);
    // The first eval of a jobset is asked for whole; the next one is looked at first.
    let whole = format!("/eval/{first}/builds");
    hydra.inject(&whole, Fault::Status(500));
    // The fallback's single builds meet two server errors, retried.
    for _ in 0..2 {
        hydra.inject("/build/", Fault::Status(503));
    }
    let sandbox = Sandbox::new(&hydra, "");
    assert_eq!(sandbox.pass(None).evals_ingested.len(), 2);
    assert_eq!(
        requests_to(&hydra, &whole),
        1,
        "the whole eval is asked for once"
    );
    // The evals page carried the build ids: no `/eval/{id}` for either.
    assert_eq!(requests_to(&hydra, &format!("/eval/{first}")), 0);
    assert_eq!(requests_to(&hydra, &format!("/eval/{second}")), 0);
    assert_eq!(hydra.counters().status(503), 2);
    let (outcome, reason) = whole_eval_request(&sandbox, first).expect("noted");
    assert_eq!(outcome.as_deref(), Some("failed"));
    assert!(reason.is_some_and(|r| r.contains("500")));
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
fn a_body_cut_mid_array_writes_nothing_and_the_eval_is_completed_build_by_build() {
    for honest_length in [true, false] {
        // Cut with a Content-Length that matches (only the JSON is short),
        // or with the connection closing before the promised length.
        let hydra = start(&small_spec(50, 1));
        let first = hydra.hydra().evals[0].id;
        let path = format!("/eval/{first}/builds");
        hydra.inject(
            &path,
            Fault::Truncate {
                per_mille: 400,
                honest_length,
            },
        );
        let sandbox = Sandbox::new(&hydra, STREAM_ALWAYS);
        assert_eq!(sandbox.pass(None).evals_ingested, vec![first]);
        assert_eq!(requests_to(&hydra, &path), 1, "never downloaded again");
        assert_eq!(
            hydra.counters().requests("build"),
            hydra.hydra().builds.len()
        );
        assert_eq!(
            sandbox.count("SELECT count(*) FROM builds"),
            hydra.hydra().builds.len() as i64
        );
        assert_eq!(
            sandbox.count("SELECT count(*) FROM evals WHERE strategy = 'per-build'"),
            1
        );
        assert_evals_complete(&sandbox.sql());
    }
}

#[test]
fn a_pass_that_fails_after_the_whole_eval_request_never_sends_it_again() {
    let hydra = start(&small_spec(50, 1));
    let first = hydra.hydra().evals[0].id;
    let whole = format!("/eval/{first}/builds");
    hydra.inject(
        &whole,
        Fault::Truncate {
            per_mille: 700,
            honest_length: true,
        },
    );
    // One of the fallback's single builds stays unavailable beyond the
    // retries (one at a time, so the same request meets every fault).
    for _ in 0..4 {
        hydra.inject("/build/", Fault::Status(502));
    }
    let mut sandbox = Sandbox::new(&hydra, STREAM_ALWAYS);
    sandbox.config.hydra.max_in_flight = 1;
    let (_, error) = sandbox.pass_at(None, 2_000_000_000);
    assert!(error.is_some(), "the pass must fail");
    // Builds that arrived may be kept (the next pass need not ask again);
    // the eval itself is written whole or not at all.
    for table in ["evals", "spans"] {
        assert_eq!(
            sandbox.count(&format!("SELECT count(*) FROM {table}")),
            0,
            "{table} was half-written"
        );
    }
    assert!(whole_eval_request(&sandbox, first).is_some());

    assert_eq!(sandbox.pass(None).evals_ingested, vec![first]);
    assert_eq!(
        requests_to(&hydra, &whole),
        1,
        "asked for again after a restart"
    );
    assert_evals_complete(&sandbox.sql());
}

/// (attribute, system) → (class, first eval, evals, distinct derivations).
pub(crate) type Streaks = HashMap<(String, String), (StatusClass, i64, u32, usize)>;
/// (attribute, system) → one (eval, class, derivation) per eval the job was in.
pub(crate) type Results = HashMap<(String, String), Vec<(i64, StatusClass, String)>>;

/// The streak of each job, computed the slow way from what the fake Hydra
/// served: one result per eval the job was in.
fn naive_streaks(sim: &SimHydra) -> Streaks {
    let mut results = Results::new();
    for eval in &sim.evals {
        record_served(&mut results, sim, eval.id, &eval.builds);
    }
    streaks_of(results)
}

/// Add what the look-alike serves now for `builds` as eval `eval`'s results.
///
/// Whose failure each build is, as read from its build page: the pages of
/// the newest eval's failures and of the older builds of jobs failing in it
/// are read; a failure that may be a dependency's (7, 8, 10, ...) with its
/// page unread is no signal yet.
pub(crate) fn record_served(results: &mut Results, sim: &SimHydra, eval: i64, builds: &[i64]) {
    let newest: HashSet<i64> = sim
        .evals
        .last()
        .map_or_else(HashSet::new, |e| e.builds.iter().copied().collect());
    let failing_now: HashSet<&str> = newest
        .iter()
        .map(|id| &sim.builds[id])
        .filter(|b| b.finished && b.status.is_some_and(|s| !matches!(s, 0 | 3 | 4 | 9)))
        .map(|b| b.job.as_str())
        .collect();
    for id in builds {
        let b = &sim.builds[id];
        let Ok(name) = JobName::parse(&b.job, &b.system) else {
            continue;
        };
        let read = newest.contains(id) || failing_now.contains(b.job.as_str());
        let cause = match b.propagated_from {
            _ if !read => Cause::Unread,
            Some(from) => Cause::Propagated { from },
            None => Cause::Own,
        };
        let class =
            if b.finished && cause == Cause::Unread && b.status.is_some_and(may_be_inherited) {
                StatusClass::Noise
            } else {
                StatusClass::of(b.finished, b.status, cause)
            };
        results.entry((name.attr, name.system)).or_default().push((
            eval,
            class,
            b.drv_hash.clone(),
        ));
    }
}

/// Each job's newest streak, read eval by eval from its results.
pub(crate) fn streaks_of(results: Results) -> Streaks {
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

/// Every job's streak in the store equals the one read eval by eval from
/// what the look-alike served.
pub(crate) fn assert_history_is_what_hydra_served(sandbox: &Sandbox, sim: &SimHydra, label: &str) {
    assert_streaks_are(sandbox, &naive_streaks(sim), label);
}

/// Every job's streak in the store is the expected one, and every job has one.
pub(crate) fn assert_streaks_are(sandbox: &Sandbox, expected: &Streaks, label: &str) {
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
                "{label}: streak of {} on {}",
                key.0,
                key.1
            );
            checked += 1;
        }
    }
    assert_eq!(checked, expected.len(), "{label}");
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
        assert_history_is_what_hydra_served(&sandbox, &hydra.hydra(), strategy);
        let gone = sandbox
            .store()
            .jobs_by_attr("oldtool", &hydra_sentinel::policy::Policy::nixpkgs().streak)
            .unwrap();
        assert!(
            gone.iter().all(|r| !r.history.present),
            "{strategy:?}: a removed package is still present"
        );
    }
}

// Against hydra.nixos.org's costs: the look-alike's "real cost" mode.

/// The look-alike's clock runs this much faster than real time: its 900 s
/// gateway timeout takes 1.8 s, nginx's 2 requests a second are 1000.
const SCALE: f64 = 0.002;

/// One more pass, late enough that builds seen unfinished are asked about
/// again (in the real-cost look-alike builds finish as its clock runs).
fn settle(sandbox: &Sandbox) {
    let (_, error) = sandbox.pass_at(None, 2_000_000_000 + 2 * 3600);
    assert!(error.is_none(), "{error:?}");
}

/// A sandbox paced as configured by default, on the look-alike's clock.
fn paced(hydra: &FakeHydra, extra: &str) -> Sandbox {
    let mut sandbox = Sandbox::new(hydra, extra);
    let pacing = Pacing::default();
    sandbox.config.hydra.pacing = Pacing {
        requests_per_second: pacing.requests_per_second / SCALE,
        ..pacing
    };
    sandbox
}

fn total_requests(counters: &hydra_sentinel::sim::Counters) -> usize {
    counters.endpoints.values().map(|e| e.requests).sum()
}

#[test]
fn at_the_default_pace_hydra_never_refuses_us_nor_sees_more_than_two_requests_at_once() {
    let hydra = start(&small_spec(100, 4));
    hydra.set_costs(Costs::hydra_nixos_org(SCALE));
    // Every eval is above this limit: every build one by one.
    let smallest = hydra
        .hydra()
        .evals
        .iter()
        .map(|e| e.builds.len())
        .min()
        .unwrap();
    let sandbox = paced(
        &hydra,
        &format!("[ingest]\nwhole_eval_max_builds = {}\n", smallest - 1),
    );
    // A first install of a jobset too big to ask for whole starts at its
    // newest eval; here that is the first, and the rest follow.
    let started = Instant::now();
    hydra.publish(1);
    sandbox.pass(None);
    hydra.publish(usize::MAX);
    sandbox.pass(None);
    let elapsed = started.elapsed();

    let counters = hydra.counters();
    let total = total_requests(&counters);
    let served: HashSet<i64> = hydra
        .hydra()
        .evals
        .iter()
        .flat_map(|e| e.builds.iter().copied())
        .collect();
    assert!(
        counters.requests("build") >= served.len(),
        "{} builds served: {counters:?}",
        served.len()
    );
    assert_eq!(counters.status(429), 0, "{counters:?}");
    assert_eq!(
        counters.requests("eval_builds"),
        0,
        "an eval above the limit was asked for whole"
    );
    assert!(counters.max_in_flight <= 2, "{counters:?}");
    let interval = Duration::from_secs_f64(SCALE / Pacing::default().requests_per_second);
    assert!(
        elapsed >= interval * (total as u32 - 1),
        "{total} requests in {elapsed:?}: not paced"
    );
    assert_evals_complete(&sandbox.sql());
    settle(&sandbox);
    assert_history_is_what_hydra_served(&sandbox, &hydra.hydra(), "paced");
}

#[test]
fn without_a_pace_hydra_refuses_with_429_and_the_pass_rides_it_out() {
    let hydra = start(&small_spec(40, 2));
    // A slower clock here: nginx lets 40 requests a second through.
    hydra.set_costs(Costs::hydra_nixos_org(0.05));
    let mut sandbox = Sandbox::new(&hydra, "[ingest]\nwhole_eval_max_builds = 0\n");
    // Test-only settings the configuration refuses: no pace, many at once.
    sandbox.config.hydra.pacing = Pacing::unlimited();
    sandbox.config.hydra.max_in_flight = 16;
    sandbox.config.hydra.retry_initial_delay = Duration::from_millis(100);
    sandbox.config.hydra.retry_max_delay = Duration::from_millis(400);
    hydra.publish(1);
    sandbox.pass(None);
    hydra.publish(usize::MAX);
    sandbox.pass(None);

    let counters = hydra.counters();
    assert!(counters.status(429) > 0, "no refusal: {counters:?}");
    assert!(counters.max_in_flight > 2, "{counters:?}");
    assert_evals_complete(&sandbox.sql());
    settle(&sandbox);
    assert_history_is_what_hydra_served(&sandbox, &hydra.hydra(), "refused");
}

#[test]
fn a_first_eval_whose_whole_eval_request_times_out_is_ingested_build_by_build_after_one_request() {
    let spec = SimSpec {
        // The second eval rebuilds everything: every build id is new.
        mass_rebuild_at: Some(1),
        ..small_spec(300, 3)
    };
    let hydra = start(&spec);
    let sim = hydra.hydra();
    let first = sim.evals[0].id;
    assert!(sim.evals[0].builds.len() <= WHOLE_EVAL_MAX_BUILDS);
    let mut costs = Costs::hydra_nixos_org(SCALE);
    // Hydra slower than we assume (busy): 600 builds take 1,200 s to
    // prepare, beyond the gateway's 900 s, as trunk's 250,000 do.
    costs.eval_builds_work_per_build = Duration::from_secs(2);
    hydra.set_costs(costs);
    let sandbox = paced(&hydra, "");
    let report = sandbox.pass(None);
    assert_eq!(report.evals_ingested.len(), 3);

    let counters = hydra.counters();
    assert_eq!(
        counters.requests("eval_builds"),
        1,
        "only the first eval is asked for whole: {counters:?}"
    );
    assert_eq!(counters.status(504), 1, "{counters:?}");
    assert_eq!(counters.status(429), 0, "{counters:?}");
    assert!(counters.max_in_flight <= 2, "{counters:?}");
    assert!(counters.bytes("build") > 0 && counters.bytes("eval_builds") < 1000);
    let (outcome, reason): (String, String) = sandbox
        .sql()
        .query_row(
            "SELECT outcome, reason FROM whole_eval_requests WHERE eval_id = ?1",
            [first],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(outcome, "timeout", "{reason}");
    assert!(reason.contains("504"), "{reason}");
    assert_eq!(
        sandbox.count("SELECT count(*) FROM evals WHERE strategy = 'per-build'"),
        3
    );
    assert_evals_complete(&sandbox.sql());
    assert_history_is_what_hydra_served(&sandbox, &sim, "timed out");

    // Later passes (a restarted service) never ask for it again.
    sandbox.pass(None);
    assert_eq!(hydra.counters().requests("eval_builds"), 1);
}

#[test]
fn waiting_for_the_pace_tells_the_watchdog_the_pass_is_alive() {
    let hydra = start(&small_spec(2, 1));
    let mut sandbox = Sandbox::new(&hydra, "");
    // Two requests (the evals page, the whole eval), two seconds apart.
    sandbox.config.hydra.pacing = Pacing {
        requests_per_second: 0.5,
        burst: 1,
    };
    let beats = Arc::new(AtomicUsize::new(0));
    let control = PassControl {
        heartbeat: Some({
            let beats = Arc::clone(&beats);
            Arc::new(move || {
                beats.fetch_add(1, Ordering::SeqCst);
            })
        }),
        ..PassControl::default()
    };
    let store = Store::open(sandbox.db()).unwrap();
    let client = HydraClient::new(&sandbox.config.hydra).unwrap();
    let ingestor = Ingestor::new(&sandbox.config, client, store).with_control(control);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (reports, error) = runtime.block_on(ingestor.pass(
        &sandbox.config.jobsets,
        &PassOptions {
            max_evals: None,
            now: 2_000_000_000,
        },
    ));
    assert!(error.is_none(), "{error:?}");
    assert_eq!(reports[0].evals_ingested.len(), 1);
    // One beat for the page read, one for the eval committed, and at least
    // one while the second request waited its turn.
    assert!(beats.load(Ordering::SeqCst) >= 3, "{beats:?}");
}

/// GET `url` with `accept`, not following redirects: status, Location, body.
fn get(url: &str, accept: &str) -> (u16, Option<String>, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let response = client
            .get(url)
            .header("Accept", accept)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, location, response.text().await.unwrap())
    })
}

#[test]
fn the_look_alikes_build_page_tells_an_own_failure_from_a_propagated_one() {
    let hydra = start(&SimSpec::demo());
    let sim = hydra.hydra();
    let settled = sim.evals.len() - 2;
    let victim = sim.build_of(settled, "foo-gui.x86_64-linux").unwrap();
    let root = sim.build_of(settled, "libfoo.x86_64-linux").unwrap();
    let page = |id: i64| get(&format!("{}/build/{id}", hydra.url()), "text/html");

    let (status, _, victims) = page(victim.id);
    assert_eq!(status, 200);
    let link = format!(
        "(propagated from <a href=\"/build/{0}\">build {0}</a>)",
        root.id
    );
    assert!(victims.contains(&link), "{victims}");
    let (_, _, roots) = page(root.id);
    assert!(roots.contains("Failed build steps"), "{roots}");
    assert!(!roots.contains("propagated from"), "{roots}");

    let (_, _, json) = get(
        &format!("{}/build/{}", hydra.url(), victim.id),
        "application/json",
    );
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["buildstatus"], 2);
}

#[test]
fn a_renamed_jobset_redirects_and_its_builds_report_the_new_name() {
    let hydra = start(&small_spec(5, 2));
    let build = *hydra.hydra().builds.keys().next().unwrap();
    hydra.rename_jobset("trunk-2");
    let (status, location, _) = get(
        &format!("{}/jobset/nixpkgs/trunk/evals?page=2", hydra.url()),
        "application/json",
    );
    assert_eq!(status, 301);
    assert_eq!(
        location.as_deref(),
        Some("/jobset/nixpkgs/trunk-2/evals?page=2")
    );
    let (_, _, json) = get(
        &format!("{}/build/{build}", hydra.url()),
        "application/json",
    );
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["jobset"], "trunk-2");
}
