//! hydra-sentinel: watches Hydra for failing nixpkgs jobs.
pub mod nixpkgs;
