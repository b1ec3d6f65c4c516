//! Learning an eval too big to ask for whole: build by build, within each
//! pass's request budget, resumed by the next pass where the last stopped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hydra_sentinel::hydra::HydraClient;
use hydra_sentinel::ingest::{Ingestor, JobsetReport, PassControl, PassOptions};
use hydra_sentinel::policy::{Ledger, Policy, assess};
use hydra_sentinel::sim::{FakeHydra, Fault, PlantedFailure, SimHydra, SimSpec};
use hydra_sentinel::store::Store;

use crate::helpers::{Sandbox, assert_evals_complete, small_spec, start};
use crate::ingest::assert_history_is_what_hydra_served;

const NOW: i64 = 2_000_000_000;

/// Every eval counts as too big to ask for whole, and failed builds are not
/// asked about again within these tests (so each request is accounted for).
fn build_by_build(budget: usize) -> String {
    format!(
        "[ingest]\nwhole_eval_max_builds = 0\nrecheck_after_secs = 100000000\nrequests_per_pass = {budget}\n"
    )
}

/// What the look-alike served, as of its newest eval only (a first install
/// of a big jobset starts there).
fn newest_eval_only(hydra: &FakeHydra) -> SimHydra {
    let mut served = hydra.hydra();
    let newest = served.evals.pop().expect("an eval");
    served.evals = vec![newest];
    served
}

fn newest_builds(hydra: &FakeHydra) -> HashSet<i64> {
    let sim = hydra.hydra();
    sim.evals.last().unwrap().builds.iter().copied().collect()
}

/// How many times each `/build/{id}` was asked for.
fn build_requests(hydra: &FakeHydra) -> HashMap<String, usize> {
    let mut asked = HashMap::new();
    for record in hydra.requests() {
        if record.path.starts_with("/build/") {
            *asked.entry(record.path).or_default() += 1;
        }
    }
    asked
}

fn total_requests(hydra: &FakeHydra) -> usize {
    hydra
        .counters()
        .endpoints
        .values()
        .map(|e| e.requests)
        .sum()
}

#[test]
fn a_big_first_eval_is_learned_over_several_passes_each_within_its_budget() {
    let hydra = start(&small_spec(150, 3));
    let budget = 60;
    let sandbox = Sandbox::new(&hydra, &build_by_build(budget));
    let builds = newest_builds(&hydra).len();
    assert!(
        builds > 3 * budget,
        "too small to need several passes: {builds}"
    );

    let mut passes: Vec<JobsetReport> = Vec::new();
    loop {
        let before = total_requests(&hydra);
        let report = sandbox.pass(None);
        let spent = total_requests(&hydra) - before;
        assert!(
            spent <= budget && report.requests == spent,
            "pass {}: {spent} requests sent, {} counted, budget {budget}: {report:?}",
            passes.len() + 1,
            report.requests
        );
        let done = report.pending.is_none();
        passes.push(report);
        if done {
            break;
        }
        assert_eq!(
            sandbox.count("SELECT count(*) FROM evals"),
            0,
            "an eval was stored before all its builds were known"
        );
        assert!(passes.len() < 50, "no end in sight: {passes:?}");
    }
    let missing: Vec<usize> = passes
        .iter()
        .filter_map(|r| r.pending.map(|p| p.missing))
        .collect();
    assert!(missing.len() >= 3, "{missing:?}");
    assert!(
        missing.windows(2).all(|w| w[1] < w[0]),
        "each pass learns more: {missing:?}"
    );
    assert_eq!(
        passes.last().unwrap().evals_ingested,
        vec![hydra.hydra().evals.last().unwrap().id],
        "the first install starts at the newest eval"
    );

    assert_eq!(
        hydra.counters().requests("eval"),
        0,
        "the evals page carried the build ids; /eval/{{id}} costs Hydra a comparison"
    );
    assert_eq!(
        hydra.counters().requests("evals"),
        1,
        "the eval being learned is kept: its heavy page is read once, not every pass"
    );
    let asked = build_requests(&hydra);
    let twice: Vec<_> = asked.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "asked more than once: {twice:?}");
    assert_eq!(asked.len(), builds, "every build of the eval, once");
    assert_evals_complete(&sandbox.sql());
    assert_history_is_what_hydra_served(&sandbox, &newest_eval_only(&hydra), "budgeted");
}

#[test]
fn a_pass_cancelled_while_learning_loses_at_most_one_batch_and_the_next_goes_on() {
    let hydra = start(&small_spec(150, 2));
    let sandbox = Sandbox::new(&hydra, &build_by_build(1_000_000));
    let builds = newest_builds(&hydra).len();

    // Cancelled after about 250 answers: mid-way through the third batch.
    let beats = Arc::new(AtomicUsize::new(0));
    let control = PassControl::default();
    let control = PassControl {
        heartbeat: Some({
            let (beats, cancel) = (Arc::clone(&beats), control.cancel.clone());
            Arc::new(move || {
                if beats.fetch_add(1, Ordering::SeqCst) == 250 {
                    cancel.cancel();
                }
            })
        }),
        ..control
    };
    let store = Store::open(sandbox.db()).unwrap();
    let client = HydraClient::new(&sandbox.config.hydra).unwrap();
    let ingestor = Ingestor::new(&sandbox.config, client, store).with_control(control);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_, error) = runtime.block_on(ingestor.pass(
        &sandbox.config.jobsets,
        &PassOptions {
            max_evals: None,
            now: NOW,
        },
    ));
    assert!(
        matches!(error, Some(hydra_sentinel::ingest::IngestError::Cancelled)),
        "{error:?}"
    );
    let kept = sandbox.count("SELECT count(*) FROM builds") as usize;
    assert!(kept >= 200, "the finished batches are kept: {kept}");
    assert_eq!(sandbox.count("SELECT count(*) FROM evals"), 0);

    let report = sandbox.pass(None);
    assert!(report.pending.is_none(), "{report:?}");
    let asked = build_requests(&hydra);
    let again = asked.values().filter(|n| **n > 1).count();
    assert!(
        again <= 100,
        "{again} builds asked about twice: more than the batch in flight"
    );
    assert_eq!(asked.len(), builds);
    assert_evals_complete(&sandbox.sql());
    assert_history_is_what_hydra_served(&sandbox, &newest_eval_only(&hydra), "cancelled");
}

#[test]
fn a_build_hydra_refuses_for_good_is_recorded_and_the_eval_is_stored() {
    let hydra = start(&small_spec(20, 1));
    let gone = *newest_builds(&hydra).iter().min().unwrap();
    hydra.inject(&format!("/build/{gone}"), Fault::Status(404));
    let sandbox = Sandbox::new(&hydra, &build_by_build(1_000_000));
    let report = sandbox.pass(None);

    assert_eq!(report.evals_ingested.len(), 1, "{report:?}");
    assert_eq!(build_requests(&hydra)[&format!("/build/{gone}")], 1);
    let reason: String = sandbox
        .sql()
        .query_row(
            "SELECT reason FROM refused_builds WHERE id = ?1",
            [gone],
            |r| r.get(0),
        )
        .unwrap();
    assert!(reason.contains("404"), "{reason}");
    assert_eq!(
        sandbox.count("SELECT rejected_jobs FROM evals"),
        1,
        "the refused build is counted in the eval"
    );
}

/// The newest eval's time of the look-alike, and the time of eval `index`.
fn eval_time(hydra: &FakeHydra, index: usize) -> i64 {
    hydra.hydra().evals[index].timestamp
}

#[test]
fn a_first_install_learns_from_hydra_when_a_failure_older_than_its_records_began() {
    let spec = SimSpec {
        planted: vec![PlantedFailure {
            attr: "longbroken".into(),
            since: 3,
            systems: vec!["x86_64-linux".into()],
            ..PlantedFailure::default()
        }],
        ..small_spec(30, 10)
    };
    let hydra = start(&spec);
    let sandbox = Sandbox::new(&hydra, &build_by_build(1_000_000));
    let now = eval_time(&hydra, 9) + 3600;
    let (reports, error) = sandbox.pass_at(None, now);
    assert!(error.is_none(), "{error:?}");
    let report = &reports[0];
    assert_eq!(
        report.evals_ingested.len(),
        1,
        "first install: the newest eval"
    );
    assert!(report.origins_learned >= 1, "{report:?}");
    let asked = |endpoint: &str| hydra.counters().requests(endpoint);
    assert!(asked("job_latest") >= 1 && asked("job_latest") <= report.origins_learned);

    let store = sandbox.store();
    let facts = store
        .policy_facts(&sandbox.config.hydra.url, "NixOS/nixpkgs")
        .unwrap();
    let assessment = assess(&Policy::nixpkgs(), &facts, &Ledger::default(), now);
    let job = assessment.attrs["longbroken"]
        .jobs
        .iter()
        .find(|j| j.system == "x86_64-linux")
        .expect("the planted job");
    let evidence = job.evidence.as_ref().expect("evidence of the failure");
    let began = hydra.hydra().evals[3].id;
    assert_eq!(
        (evidence.since.id, evidence.before_our_records),
        (began, Some(false)),
        "{evidence:?}"
    );
    let day = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .unwrap()
            .format("%Y-%m-%d")
            .to_string()
    };
    assert_eq!(
        &evidence.since.time[..10],
        day(eval_time(&hydra, 3)),
        "failing since the eval it began in, not since our first"
    );
    assert_eq!(evidence.evals, 7, "evals 3 to 9: {evidence:?}");
    let last_good = evidence.last_good.as_ref().expect("the last success");
    assert_eq!(
        last_good.eval.id,
        hydra.hydra().evals[2].id,
        "{last_good:?}"
    );

    // Learned once: another pass asks nothing more about it.
    let before = asked("job_latest");
    assert!(sandbox.pass_at(None, now + 60).1.is_none());
    assert_eq!(asked("job_latest"), before);
}

#[test]
fn a_failure_older_than_the_horizon_is_told_as_at_least_the_horizon() {
    let spec = SimSpec {
        planted: vec![PlantedFailure {
            attr: "longbroken".into(),
            since: 0,
            systems: vec!["x86_64-linux".into()],
            ..PlantedFailure::default()
        }],
        ..small_spec(10, 10)
    };
    let hydra = start(&spec);
    let span = eval_time(&hydra, 9) - eval_time(&hydra, 0);
    let horizon_days = 1;
    assert!(
        span > horizon_days * 86_400,
        "the history must outlast the horizon"
    );
    let sandbox = Sandbox::new(
        &hydra,
        &format!(
            "{}origin_horizon_days = {horizon_days}\n",
            build_by_build(1_000_000)
        ),
    );
    let now = eval_time(&hydra, 9) + 60;
    let (_, error) = sandbox.pass_at(None, now);
    assert!(error.is_none(), "{error:?}");
    let (since, beyond): (i64, bool) = sandbox
        .sql()
        .query_row(
            "SELECT o.since, o.beyond_horizon FROM job_origins o JOIN jobs j ON j.id = o.job_id
             WHERE j.attr = 'longbroken' AND j.system = 'x86_64-linux'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((since, beyond), (now - horizon_days * 86_400, true));
}

#[test]
fn a_pass_reads_the_heavy_evals_page_only_after_hydra_checked_the_jobset_again() {
    let hydra = start(&small_spec(20, 4));
    hydra.publish(2);
    let sandbox = Sandbox::new(&hydra, "");
    sandbox.pass(None);
    let pages = |hydra: &FakeHydra| hydra.counters().requests("evals");
    let read = pages(&hydra);
    assert!(read >= 1);

    let before = total_requests(&hydra);
    let quiet = sandbox.pass(None);
    assert!(quiet.evals_ingested.is_empty(), "{quiet:?}");
    assert_eq!(pages(&hydra), read, "a quiet pass read the evals page");
    assert_eq!(
        total_requests(&hydra) - before,
        1,
        "a quiet pass costs one small request: {:?}",
        hydra.counters()
    );

    // Hydra evaluates again: the next pass finds the new evals.
    hydra.publish(4);
    let report = sandbox.pass(None);
    assert_eq!(report.evals_ingested.len(), 2, "{report:?}");
    assert_eq!(pages(&hydra), read + 1);
}
