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
    /// The jobset's new name, once a build reported it.
    renamed_to: Option<String>,
}

impl<'a> BuildChecker<'a> {
    pub(super) fn new(jobset: &'a JobsetRef, eval: i64) -> Self {
        BuildChecker {
            jobset,
            eval,
            logged: 0,
            renamed_to: None,
        }
    }

    /// A build of our eval reports another jobset of the same project: Hydra
    /// renamed the jobset. An eval's builds are its jobset's own (NixOS/hydra
    /// `script/hydra-eval-jobset` reuses builds of the jobset only), and
    /// `Builds.pm` `as_json` reports the jobset's current name; the old URLs
    /// answer 301 (`Controller/Jobset.pm` `jobsetChain`, `jobsetrenames`),
    /// which the client follows. The history stays on the jobset's row and
    /// the operator is told to update the configuration.
    fn renamed(&mut self, writer: &mut EvalWriter<'_>, name: &str) -> Result<(), StoreError> {
        if self.renamed_to.as_deref() == Some(name) {
            return Ok(());
        }
        // Told once per eval (and recheck), until the configuration follows.
        let news = writer.note_jobset_renamed(name)?;
        tracing::warn!(jobset = %self.jobset, new_name = name, eval = self.eval, first_seen = news,
            "Hydra renamed this jobset (its builds report the new name, its old URLs redirect); \
             its history continues, but set `jobset = {name:?}` in the configuration's [[jobsets]]");
        self.renamed_to = Some(name.to_owned());
        Ok(())
    }

    pub(super) fn write(
        &mut self,
        writer: &mut EvalWriter<'_>,
        build: &Build,
    ) -> Result<(), StoreError> {
        let refusal = if build.project != self.jobset.project {
            Some(format!("belongs to {}:{}", build.project, build.jobset))
        } else {
            if build.jobset != self.jobset.jobset {
                self.renamed(writer, &build.jobset)?;
            }
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
