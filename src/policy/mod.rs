//! Policy: what to do about failing jobs, and why.
//!
//! Owns: the policy file (`policies/*.toml`, validated once into
//! [`Policy`]), the ledger types ([`Ledger`]: what was done and what humans
//! asked), and the engine — a pure function
//! `(facts, ledger, policy, now) → plan` ([`plan`]) — with its early
//! warnings about pre-merge branches ([`early_warning`]), explanations
//! ([`explain`]) and replays of history ([`backtest`]).
//!
//! Must never: do I/O (a policy file is read by [`crate::settings`] and
//! parsed here from text), read the clock (`now` is always an argument), or
//! act: it only says what should happen. The same inputs always give the
//! same plan, in the same order. It depends only on [`crate::history`],
//! [`crate::config`] (jobset names) and the leaf [`crate::format`], never
//! on the store or the reports built on it.

pub mod backtest;
pub mod config;
pub mod early_warning;
pub mod engine;
pub mod explain;
pub mod facts;
pub mod ledger;
pub mod plan;

pub use backtest::{BacktestReport, FalseNegative, MissReason, backtest};
pub use config::{NIXPKGS_POLICY, Period, Policy, PolicyError};
pub use early_warning::Warning;
pub use engine::{Assessment, AttrAssessment, JobAssessment, Rule, assess, plan, plan_from};
pub use explain::explain;
pub use facts::{
    BranchPull, BranchPullState, Facts, FailureOrigin, JobFacts, JobsetFacts, Run, drv_digest,
};
pub use ledger::{ActionKind, ActionRecord, Ledger, OptOut, OptOutKind, RecordState};
pub use plan::{Action, Deferred, Evidence, Plan};
