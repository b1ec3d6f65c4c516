//! Learning an eval too big to ask for whole: build by build, within each
//! pass's request budget, resumed by the next pass where the last stopped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hydra_sentinel::hydra::HydraClient;
use hydra_sentinel::ingest::{Ingestor, JobsetReport, PassControl, PassOptions};
use hydra_sentinel::sim::{FakeHydra, Fault, SimHydra};
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
