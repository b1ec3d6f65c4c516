//! The circuit breaker's built-in thresholds against a history shaped like
//! nixpkgs:trunk: normal churn never holds, a real mass breakage holds from
//! the eval it lands in, and the hold is released once it is fixed. The
//! numbers behind the thresholds are in `policies/nixpkgs.toml`.
//!
//! 120,000 jobs (trunk has 250k–290k) keep the test fast in a debug build
//! while leaving the share, not the count, as the binding threshold, as it
//! is at trunk scale. The policy benchmark runs the same breaker over
//! 288,730 jobs.

mod policy_common;

use hydra_sentinel::policy::{Facts, JobFacts, Ledger, Run, plan};
use policy_common::*;

const JOBS: usize = 120_000;
const EVALS: u32 = 60;
/// One in a hundred jobs fails in any one eval and builds again in the next
/// (timeouts, flaky tests): the churn that made the old thresholds trip.
const FLIP_PER_MILLE: u64 = 10;
/// Real breakages that stay: a few a day.
const LASTING_BREAKS_PER_EVAL: usize = 30;
/// A staging-next merge: every job rebuilt, 0.4% newly failing for good.
const MERGE: u32 = 30;
const MERGE_BREAKS_PER_MILLE: u64 = 4;
/// A root breaks 5% of the jobset (dependency failures) and is fixed later.
const MASS: u32 = 45;
const MASS_FIXED: u32 = 50;
const MASS_VICTIMS_PER_MILLE: u64 = 50;

fn mix(a: u64, b: u64) -> u64 {
    let mut x = a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 29)
}

/// Status of job `j` in eval `e`, and a derivation tag that changes when the
/// job is rebuilt.
fn result(j: usize, e: u32) -> (i64, u64) {
    let jj = j as u64;
    let drv = if e >= MERGE { 1 } else { 0 };
    // The mass breakage: one root and its victims, for a few evals.
    if (MASS..MASS_FIXED).contains(&e) {
        if j == 0 {
            return (1, 2);
        }
        if mix(jj, 7) % 1000 < MASS_VICTIMS_PER_MILLE {
            return (2, 2);
        }
    }
    // Lasting breakages: job j breaks for good at eval j / LASTING (if < EVALS).
    let lasting_at = (j / LASTING_BREAKS_PER_EVAL) as u32 + 1;
    if j % 7 == 3 && lasting_at < EVALS && e >= lasting_at {
        return (1, drv);
    }
    if e >= MERGE && mix(jj, 11) % 1000 < MERGE_BREAKS_PER_MILLE {
        return (1, drv);
    }
    if e > 0 && mix(jj, u64::from(e)) % 1000 < FLIP_PER_MILLE {
        return (1, drv);
    }
    (0, drv)
}

fn trunk_sized() -> Facts {
    let mut js = trunk(EVALS as usize);
    js.jobs.reserve(JOBS);
    for j in 0..JOBS {
        let mut runs: Vec<Run> = Vec::new();
        for e in 0..EVALS {
            let (status, drv) = result(j, e);
            match runs.last_mut() {
                Some(r) if r.status == Some(status) && r.drv == drv && r.last + 1 == e => {
                    r.last = e;
                }
                _ => runs.push(Run {
                    first: e,
                    last: e,
                    build: (j as i64) * 1000 + i64::from(e),
                    finished: true,
                    status: Some(status),
                    drv: (j as u64) << 8 | drv << 6 | u64::from(e % 64),
                    cause: hydra_sentinel::history::Cause::Own,
                }),
            }
        }
        js.jobs.push(JobFacts {
            attr: format!("pkg{j:06}"),
            system: "x86_64-linux".into(),
            suffixed: true,
            runs,
        });
    }
    facts(vec![js])
}

#[test]
fn the_built_in_breaker_ignores_churn_and_merges_and_holds_a_mass_breakage_until_it_is_fixed() {
    let policy = nixpkgs_policy();
    let facts = trunk_sized();
    let ledger = Ledger::default();
    let held_at = |e: u32| plan(&policy, &facts, &ledger, day(i64::from(e)) + 3600).held;
    for e in [20, MERGE, MERGE + 1, MASS - 1] {
        assert!(
            !held_at(e),
            "eval {e}: normal churn or a merge must not hold"
        );
    }
    let p = plan(&policy, &facts, &ledger, day(i64::from(MASS)) + 3600);
    assert!(
        p.held,
        "the mass breakage holds from the eval it lands in: {}",
        p.to_text().lines().take(30).collect::<Vec<_>>().join("\n")
    );
    let window = p.actions[0].evidence.window.as_ref().expect("the window");
    assert_eq!(
        window.first.id,
        3_000_000 + i64::from(MASS),
        "the hold names the eval of the breakage: {window:?}"
    );
    assert!(held_at(MASS_FIXED - 1), "held while the breakage lasts");
    for e in [MASS_FIXED, EVALS - 1] {
        assert!(!held_at(e), "eval {e}: released once the breakage is fixed");
    }
}
