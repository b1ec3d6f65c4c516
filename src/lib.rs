//! hydra-sentinel: watches Hydra for failing nixpkgs jobs, tells maintainers,
//! and proposes marking long-failing packages broken.
//!
//! Data flows one way through the modules: [`hydra`] fetches, [`ingest`]
//! writes what changed into the [`store`], [`history`] says what a job's
//! record means; [`nixpkgs`] locates and edits package files; [`daemon`] runs
//! it all as a service. [`sim`] is a Hydra look-alike for the demo, tests and
//! benchmarks. See `DESIGN.md` in the repository for the whole pipeline.

pub mod act;
pub mod config;
pub mod daemon;
pub mod digest;
pub mod forge;
pub mod format;
pub mod history;
pub mod hydra;
pub mod ingest;
pub mod nixpkgs;
pub mod policy;
pub mod report;
pub mod settings;
pub mod sim;
pub mod site;
pub mod store;

/// An error and its causes on one line, for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
