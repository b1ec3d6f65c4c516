//! The policy benchmark: plan over a nixpkgs-sized jobset (about 290,000
//! jobs on four systems) and backtest 40 evals of it, on facts built in
//! memory from the generator (the engine's cost, not SQLite's).
//!
//! 1% of jobs are made to fail for good from some eval on.
//!
//! Run with `cargo bench --bench policy`. Targets: a plan under 200 ms, the
//! backtest under 10 s.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hydra_sentinel::config::JobsetRef;
use hydra_sentinel::history::EvalPoint;
use hydra_sentinel::policy::{
    Facts, JobFacts, JobsetFacts, Ledger, Policy, Run, backtest, drv_digest, plan,
};
use hydra_sentinel::sim::{SimHydra, SimSpec};

fn facts_from(sim: &SimHydra) -> Facts {
    let index: HashMap<i64, u32> = sim
        .evals
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id, i as u32))
        .collect();
    let mut jobs: HashMap<&str, JobFacts> = HashMap::new();
    for b in sim.builds.values() {
        let attr = b
            .job
            .strip_suffix(&format!(".{}", b.system))
            .unwrap_or(&b.job);
        let job = jobs.entry(b.job.as_str()).or_insert_with(|| JobFacts {
            attr: attr.to_owned(),
            system: b.system.clone(),
            suffixed: true,
            runs: Vec::new(),
        });
        let mut idx: Vec<u32> = b.evals.iter().map(|e| index[e]).collect();
        idx.sort_unstable();
        let mut start = 0;
        for i in 1..=idx.len() {
            if i == idx.len() || idx[i] != idx[i - 1] + 1 {
                job.runs.push(Run {
                    first: idx[start],
                    last: idx[i - 1],
                    build: b.id,
                    finished: b.finished,
                    status: b.status,
                    drv: drv_digest(&b.drv_hash),
                    cause: hydra_sentinel::history::Cause::Own,
                });
                start = i;
            }
        }
    }
    let mut jobs: Vec<JobFacts> = jobs.into_values().collect();
    for j in &mut jobs {
        j.runs.sort_by_key(|r| r.first);
    }
    jobs.sort_by(|a, b| (&a.attr, &a.system).cmp(&(&b.attr, &b.system)));
    // The generator's flips last one eval; make 1% of jobs fail for good
    // from some eval on (rebuilt every 10 evals), as real breakages do.
    for (i, job) in jobs.iter_mut().enumerate().filter(|(i, _)| i % 100 == 0) {
        let from = (i as u32 * 7) % 30 + 1;
        job.runs.retain(|r| r.first < from);
        if let Some(last) = job.runs.last_mut() {
            last.last = last.last.min(from - 1);
        }
        let mut first = from;
        while first < 40 {
            let last = (first + 9).min(39);
            job.runs.push(Run {
                first,
                last,
                build: 900_000_000 + (i as i64) * 10 + i64::from(first / 10),
                finished: true,
                status: Some(1),
                drv: (i as u64) << 8 | u64::from(first),
                cause: hydra_sentinel::history::Cause::Own,
            });
            first = last + 1;
        }
    }
    Facts {
        hydra_url: url::Url::parse("https://hydra.nixos.org").unwrap(),
        repository: hydra_sentinel::config::NIXPKGS_REPOSITORY.to_owned(),
        jobsets: vec![JobsetFacts {
            unlisted_building: 0,
            jobset: JobsetRef {
                project: sim.project.clone(),
                jobset: sim.jobset.clone(),
            },
            evals: sim
                .evals
                .iter()
                .enumerate()
                .map(|(i, e)| EvalPoint {
                    id: e.id,
                    seq: i as i64 + 1,
                    timestamp: e.timestamp,
                    revision: Some(e.revision.clone()),
                })
                .collect(),
            jobs,
            propagated_from: Default::default(),
            origins: Default::default(),
        }],
        maintainers: Default::default(),
        branch_pulls: Default::default(),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    eprintln!("generating 40 nixpkgs-sized evals (1% of jobs change result per eval) ...");
    let sim = SimHydra::generate(&SimSpec::nixpkgs_sized(40));
    let facts = facts_from(&sim);
    drop(sim);
    let js = &facts.jobsets[0];
    let runs: usize = js.jobs.iter().map(|j| j.runs.len()).sum();
    let newest = js.evals.last().unwrap().timestamp;
    let first = js.evals[0].timestamp;
    println!(
        "jobs {}, runs {runs}, evals {}",
        js.jobs.len(),
        js.evals.len()
    );

    let policy = Policy::nixpkgs();
    let ledger = Ledger::default();
    let mut times = Vec::new();
    let mut actions = 0;
    for _ in 0..7 {
        let t = Instant::now();
        let p = plan(&policy, &facts, &ledger, newest + 3600);
        times.push(t.elapsed());
        actions = p.actions.len() + p.deferred.len();
    }
    let plan_time = median(times);
    println!(
        "plan over {} jobs: median {:.1} ms of 7 ({actions} actions and deferrals) [target < 200 ms]",
        js.jobs.len(),
        plan_time.as_secs_f64() * 1000.0
    );

    let t = Instant::now();
    let report = backtest(&policy, &facts, &[], first, newest);
    let bt = t.elapsed();
    println!(
        "backtest over {} evals ({} days, planning after every eval and at each day's end): {:.2} s; {} pings, {} PRs, {} of {} days held [target < 10 s, no permanent hold]",
        js.evals.len(),
        report.days,
        bt.as_secs_f64(),
        report.pings,
        report.prs,
        report.holds.len(),
        report.days
    );
    // Ordinary churn (1% of jobs failing for one eval, 1% breaking for good
    // at spread-out evals) is no mass breakage: the built-in breaker must
    // leave the ladder to do its work.
    let permanent_hold = report.days > 0 && report.holds.len() >= report.days as usize;
    let ok =
        plan_time < Duration::from_millis(200) && bt < Duration::from_secs(10) && !permanent_hold;
    if !ok {
        eprintln!("a target was missed");
        std::process::exit(1);
    }
}
