//! Serve a generated history from the Hydra look-alike until interrupted, to
//! try `hydra-sentinel` against it or profile an ingest by hand:
//!
//! ```text
//! cargo run --release --example fake_hydra -- 76000 2   # packages, evals
//! ```

use hydra_sentinel::sim::{FakeHydra, SimHydra, SimSpec};

fn main() {
    let mut args = std::env::args().skip(1);
    let packages = args.next().and_then(|a| a.parse().ok()).unwrap_or(400);
    let evals = args.next().and_then(|a| a.parse().ok()).unwrap_or(63);
    let spec = if packages > 10_000 {
        SimSpec {
            packages,
            ..SimSpec::nixpkgs_sized(evals)
        }
    } else {
        SimSpec {
            packages,
            evals,
            ..SimSpec::demo()
        }
    };
    let sim = SimHydra::generate(&spec);
    let builds = sim.builds.len();
    let hydra = FakeHydra::start(sim).expect("starting the fake Hydra");
    println!(
        "serving {evals} evals with {builds} builds of nixpkgs:trunk at {}",
        hydra.url()
    );
    std::thread::park();
}
