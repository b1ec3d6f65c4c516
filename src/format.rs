//! Formatting shared by every text the program writes: times and links
//! into Hydra.
//!
//! Owns: how a Unix time reads (RFC 3339 in UTC) and the shape of a Hydra
//! URL (build, log, eval, job pages).
//!
//! Must never: depend on another module of this crate, read a clock or do
//! I/O. It is a leaf, so the pure policy engine can use it without reaching
//! the store through `report`.

use chrono::{DateTime, Utc};
use url::Url;

/// RFC 3339 in UTC, e.g. `2025-11-01T08:00:00Z`.
pub fn time(unix: i64) -> String {
    DateTime::<Utc>::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| format!("@{unix}"))
}

/// Links into a Hydra instance.
#[derive(Debug, Clone)]
pub struct HydraLinks {
    base: Url,
}

impl HydraLinks {
    pub fn new(base: &Url) -> HydraLinks {
        HydraLinks { base: base.clone() }
    }

    fn join(&self, segments: &[&str]) -> String {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url.to_string()
    }

    pub fn build(&self, id: i64) -> String {
        self.join(&["build", &id.to_string()])
    }

    /// The build's log (Hydra's `/build/N/log`).
    pub fn log(&self, id: i64) -> String {
        self.join(&["build", &id.to_string(), "log"])
    }

    pub fn eval(&self, id: i64) -> String {
        self.join(&["eval", &id.to_string()])
    }

    pub fn job(&self, project: &str, jobset: &str, job: &str) -> String {
        self.join(&["job", project, jobset, job])
    }
}
