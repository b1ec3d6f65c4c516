//! A Hydra look-alike: a generator of realistic nixpkgs-like evaluation
//! histories and a small HTTP server on loopback that serves them in Hydra's
//! real JSON shapes.
//!
//! Owns: everything the demo, the integration tests and the benchmarks need
//! to exercise the real client and store without hydra.nixos.org: failures,
//! dependency failures, flaky jobs, infra noise, a mass breakage, platform-only
//! failures, build reuse across evals, restarts, and injected faults (5xx,
//! truncated bodies, slow bodies).
//!
//! Must never: be reachable from anything but loopback, or be used by the
//! daemon against real data.

mod generate;
mod github;
mod http;
mod policy;
mod rng;
mod server;
mod year;

pub use generate::{PlantedFailure, SimBuild, SimEval, SimHydra, SimSpec, propagated_status};
pub use github::{FakeGitHub, GitHubFault, GitHubRequest};
pub use policy::paced_policy;
pub use rng::Rng;
pub use server::{
    Costs, Counters, EndpointCounters, FakeHydra, Fault, Limiter, RequestRecord, endpoint,
};
pub use year::{YearSpec, YearWriter, write_trunk_and_staging_next};
