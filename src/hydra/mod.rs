//! The Hydra client: Hydra's JSON shapes and how to fetch them politely.
//!
//! Owns: the wire models of hydra.nixos.org's JSON API (with its traps: `0`/`1`
//! for booleans, nullable statuses, relative pagination links), the HTTP client
//! (Accept header, gzip, User-Agent, timeouts, jittered retries, at most two
//! requests in flight, every request through one [`pacer::Pacer`]), streaming the huge `/eval/{id}/builds` array with
//! bounded memory, and reading a build page's failed steps (own or
//! propagated failure; HTML, as no JSON has it).
//!
//! Must never: write to the database (that is [`crate::ingest`]'s job), hold a
//! whole `/eval/{id}/builds` document in memory, or retry a request that
//! cannot succeed (a 404 stays a 404).

mod build_page;
mod client;
mod models;
pub mod pacer;
mod store_path;
mod stream;

pub use build_page::{BuildCause, parse_build_page};
pub use client::{HydraClient, HydraSettings};
pub use models::{Build, BuildInEvals, BuildRef, Eval, EvalHeader, EvalsPage, JobsetOverview};
pub use pacer::Pacing;
pub use store_path::{StorePath, StorePathError};
pub use stream::{StreamError, for_each_build};

use std::time::Duration;

/// Everything that can go wrong talking to Hydra.
#[derive(Debug, thiserror::Error)]
pub enum HydraError {
    #[error("invalid Hydra URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("could not build the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("GET {url} failed")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url} answered {status}{}", hydra_message(.message))]
    Status {
        url: String,
        status: u16,
        message: Option<String>,
        retry_after: Option<Duration>,
    },
    #[error("GET {url} returned JSON we could not read")]
    Json {
        url: String,
        #[source]
        source: serde_json::Error,
    },
}

fn hydra_message(message: &Option<String>) -> String {
    message
        .as_ref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

impl HydraError {
    /// Whether trying the same request again later may succeed: network
    /// errors, 5xx, 429, and bodies that were cut or malformed.
    pub fn is_transient(&self) -> bool {
        match self {
            HydraError::Http { .. } | HydraError::Json { .. } => true,
            HydraError::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            HydraError::BadUrl { .. } | HydraError::Client(_) => false,
        }
    }

    /// The gateway gave up waiting for Hydra (504), or we gave up waiting
    /// for a byte.
    pub fn is_timeout(&self) -> bool {
        match self {
            HydraError::Status { status, .. } => *status == 504,
            HydraError::Http { source, .. } => source.is_timeout(),
            _ => false,
        }
    }

    /// An answer asking again will not change (a 4xx other than 408/429:
    /// that build or eval is gone): no information, not a failure.
    pub fn is_refused_for_good(&self) -> bool {
        matches!(self, HydraError::Status { .. }) && !self.is_transient()
    }

    /// nginx's `limit_req` refusal: "slow down", not a failure.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, HydraError::Status { status: 429, .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            HydraError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
