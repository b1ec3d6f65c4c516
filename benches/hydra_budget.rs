//! What following nixpkgs:trunk costs hydra.nixos.org, measured against the
//! Hydra look-alike in its real-cost mode (nginx's 2 r/s with a burst of 7,
//! its 900 s gateway timeout, Hydra's work before the first byte of
//! `/eval/{id}/builds`), on a clock running `1/SCALE` times faster, with
//! hydra-sentinel's default pace and budget scaled the same way.
//!
//! The history: a trunk-sized first eval (about 300,000 builds on four
//! systems), two ordinary evals with a few % of builds new, a mass rebuild
//! (every build new, as a staging-next merge), and one more ordinary eval.
//! For each eval: the passes and requests until its picture is complete,
//! by endpoint, the bytes, the 429s and 504s, and the time that takes at
//! the default pace of one request a second.
//!
//! Run with `cargo bench --bench hydra_budget` (a few minutes).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use hydra_sentinel::config::Config;
use hydra_sentinel::hydra::{HydraClient, Pacing};
use hydra_sentinel::ingest::{Ingestor, PassOptions};
use hydra_sentinel::sim::{Costs, Counters, FakeHydra, SimHydra, SimSpec};
use hydra_sentinel::store::Store;

/// Real seconds per simulated second: one request a second runs at 2,000.
const SCALE: f64 = 0.0005;

fn main() {
    let spec = SimSpec {
        rebuild_rate: 0.03,
        mass_rebuild_at: Some(3),
        ..SimSpec::nixpkgs_sized(5)
    };
    eprintln!("generating a trunk-sized history ...");
    let sim = SimHydra::generate(&spec);
    let evals = sim.evals.clone();
    let hydra = FakeHydra::start(sim).expect("starting the look-alike");
    hydra.set_costs(Costs::hydra_nixos_org(SCALE));
    hydra.publish(0);

    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[hydra]\nurl = \"{}\"\n[[jobsets]]\nproject = \"nixpkgs\"\njobset = \"trunk\"\n[database]\npath = {:?}\n",
        hydra.url(),
        dir.path().join("state.sqlite").display().to_string()
    );
    let mut config = Config::parse(&text, Path::new("<bench>")).expect("a valid config");
    let pacing = Pacing::default();
    config.hydra.pacing = Pacing {
        requests_per_second: pacing.requests_per_second / SCALE,
        ..pacing
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();

    println!(
        "hydra budget benchmark: {} evals, default pace ({} request/s) and budget ({} requests a pass)",
        evals.len(),
        pacing.requests_per_second,
        config.ingest.requests_per_pass
    );
    println!(
        "{:<34} {:>6} {:>8} {:>9} {:>11} {:>5} {:>5} {:>14}",
        "eval", "passes", "requests", "/build", "MB", "429", "504", "at 1 request/s"
    );
    let mut passes_total = 0;
    for (index, eval) in evals.iter().enumerate() {
        hydra.publish(index + 1);
        let before = hydra.counters();
        let started = Instant::now();
        let mut passes = 0;
        let mut now = eval.timestamp;
        loop {
            passes += 1;
            now += 900;
            let store = Store::open(&config.database).unwrap();
            let client = HydraClient::new(&config.hydra).unwrap();
            let ingestor = Ingestor::new(&config, client, store);
            let (reports, error) = runtime.block_on(ingestor.pass(
                &config.jobsets,
                &PassOptions {
                    max_evals: None,
                    now,
                },
            ));
            if let Some(e) = error {
                panic!("pass {passes} failed: {}", hydra_sentinel::error_chain(&e));
            }
            if reports[0].pending.is_none() {
                break;
            }
        }
        passes_total += passes;
        let spent = difference(&before, &hydra.counters());
        let requests: usize = spent.values().map(|e| e.0).sum();
        let bytes: usize = spent.values().map(|e| e.1).sum();
        let new = eval
            .builds
            .iter()
            .filter(|id| index == 0 || !evals[index - 1].builds.contains(id))
            .count();
        let label = format!(
            "{} ({} builds, {} new{})",
            eval.id,
            eval.builds.len(),
            new,
            if Some(index) == spec.mass_rebuild_at {
                ", mass rebuild"
            } else {
                ""
            }
        );
        let at_pace = Duration::from_secs_f64(requests as f64 / pacing.requests_per_second);
        println!(
            "{:<34} {:>6} {:>8} {:>9} {:>11.1} {:>5} {:>5} {:>14}",
            label,
            passes,
            requests,
            spent.get("build").map_or(0, |e| e.0),
            bytes as f64 / 1e6,
            status_count(&before, &hydra.counters(), 429),
            status_count(&before, &hydra.counters(), 504),
            hours(at_pace)
        );
        eprintln!(
            "  (eval {} took {:.1} s of real time; by endpoint: {:?})",
            eval.id,
            started.elapsed().as_secs_f64(),
            spent
        );
    }
    println!("passes in all: {passes_total}");
}

/// Requests and bytes per endpoint between two readings.
fn difference(before: &Counters, after: &Counters) -> BTreeMap<&'static str, (usize, usize)> {
    after
        .endpoints
        .iter()
        .map(|(name, a)| {
            let b = before.endpoints.get(name);
            (
                *name,
                (
                    a.requests - b.map_or(0, |b| b.requests),
                    a.bytes - b.map_or(0, |b| b.bytes),
                ),
            )
        })
        .filter(|(_, (requests, _))| *requests > 0)
        .collect()
}

fn status_count(before: &Counters, after: &Counters, status: u16) -> usize {
    after.status(status) - before.status(status)
}

fn hours(d: Duration) -> String {
    let minutes = d.as_secs() / 60;
    format!("{}h{:02}m", minutes / 60, minutes % 60)
}
