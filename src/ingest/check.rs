//! Validation of each build before it reaches the store.

use crate::config::JobsetRef;
use crate::history::JobName;
use crate::hydra::{Build, BuildRef, StorePath};
use crate::store::{BuildRow, EvalWriter, StoreError};

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

    /// Check one build and write it (for builds fetched one by one).
    pub(super) fn write(
        &mut self,
        writer: &mut EvalWriter<'_>,
        build: &Build,
    ) -> Result<(), StoreError> {
        self.write_checked(writer, check(self.jobset, build.as_ref()))
    }

    /// Write a build [`check`] looked at, perhaps on another thread.
    pub(super) fn write_checked(
        &mut self,
        writer: &mut EvalWriter<'_>,
        checked: Checked,
    ) -> Result<(), StoreError> {
        if let Some(name) = &checked.renamed_to {
            self.renamed(writer, name)?;
        }
        let refused = match checked.verdict {
            Ok(row) => return writer.add_build(row),
            Err(refused) => refused,
        };
        let first_time = writer.refuse(refused.id, &refused.job, &refused.reason)?;
        if first_time && self.logged < MAX_REJECTIONS_LOGGED {
            self.logged += 1;
            tracing::warn!(eval = self.eval, build = refused.id, job = ?refused.job,
                reason = refused.reason, "refused a build");
        }
        Ok(())
    }
}

/// A build Hydra sent, looked at: the row to write, or why it is refused.
#[derive(Debug)]
pub(super) struct Checked {
    verdict: Result<BuildRow, Refused>,
    /// The jobset's name as the build reports it, when that is not the
    /// configured one (see [`BuildChecker::renamed`]).
    renamed_to: Option<String>,
}

#[derive(Debug)]
struct Refused {
    id: i64,
    job: String,
    reason: String,
}

/// Validate a build and cut it into the row the store writes. Pure, so that
/// a streamed eval does this on the parsing thread, off the writer's.
pub(super) fn check(jobset: &JobsetRef, build: BuildRef<'_>) -> Checked {
    let refuse = |build: BuildRef<'_>, reason: String| Checked {
        verdict: Err(Refused {
            id: build.id,
            job: build.job.into_owned(),
            reason,
        }),
        renamed_to: None,
    };
    if build.project != jobset.project {
        let reason = format!("belongs to {}:{}", build.project, build.jobset);
        return refuse(build, reason);
    }
    let renamed_to = (build.jobset != jobset.jobset.as_str()).then(|| build.jobset.to_string());
    let name = match JobName::parse(&build.job, &build.system) {
        Ok(name) => name,
        Err(e) => {
            return Checked {
                renamed_to,
                ..refuse(build, e.to_string())
            };
        }
    };
    let drv = match StorePath::parse(&build.drvpath) {
        Ok(drv) => drv,
        Err(e) => {
            let reason = e.to_string();
            return Checked {
                renamed_to,
                ..refuse(build, reason)
            };
        }
    };
    let drv_hash = drv.hash.to_owned();
    let nixname = match build.nixname {
        Some(nixname) => nixname.into_owned(),
        None => drv.name.strip_suffix(".drv").unwrap_or(drv.name).to_owned(),
    };
    Checked {
        verdict: Ok(BuildRow {
            id: build.id,
            hydra_job: build.job.into_owned(),
            job: name,
            finished: build.finished,
            status: build.buildstatus,
            stoptime: build.stoptime,
            drv_hash,
            nixname,
        }),
        renamed_to,
    }
}
