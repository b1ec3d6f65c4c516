//! Validation of each build before it reaches the store.

use crate::config::JobsetRef;
use crate::history::JobName;
use crate::hydra::{Build, StorePath};
use crate::store::{EvalWriter, StoreError};

/// Log at most this many refused job names per eval (they are all counted).
const MAX_REJECTIONS_LOGGED: usize = 10;

/// Validates each build before it reaches the store, counting what it refuses.
pub(super) struct BuildChecker<'a> {
    jobset: &'a JobsetRef,
    eval: i64,
    logged: usize,
}

impl<'a> BuildChecker<'a> {
    pub(super) fn new(jobset: &'a JobsetRef, eval: i64) -> Self {
        BuildChecker {
            jobset,
            eval,
            logged: 0,
        }
    }

    pub(super) fn write(
        &mut self,
        writer: &mut EvalWriter<'_>,
        build: &Build,
    ) -> Result<(), StoreError> {
        let refusal = if build.project != self.jobset.project || build.jobset != self.jobset.jobset
        {
            Some(format!("belongs to {}:{}", build.project, build.jobset))
        } else {
            match (
                JobName::parse(&build.job, &build.system),
                StorePath::parse(&build.drvpath),
            ) {
                (Ok(name), Ok(drv)) => return writer.add_build(build, &name, &drv),
                (Err(e), _) => Some(e.to_string()),
                (_, Err(e)) => Some(e.to_string()),
            }
        };
        let reason = refusal.unwrap_or_default();
        let first_time = writer.refuse(build.id, &build.job, &reason)?;
        if first_time && self.logged < MAX_REJECTIONS_LOGGED {
            self.logged += 1;
            tracing::warn!(eval = self.eval, build = build.id, job = ?build.job, reason, "refused a build");
        }
        Ok(())
    }
}
