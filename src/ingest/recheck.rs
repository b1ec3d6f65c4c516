//! Asking again about builds whose status may still change.

use super::check::BuildChecker;
use super::{FetchStrategy, IngestError, Ingestor, JobsetReport, WriteMode};
use crate::config::JobsetRef;

impl Ingestor {
    /// Ask again about builds of the newest eval whose status may change:
    /// unfinished ones unless a new eval just fetched them, and failed ones
    /// every `recheck_after` unless the newest eval was just streamed whole.
    pub(super) async fn recheck(
        &self,
        jobset: &JobsetRef,
        jobset_id: i64,
        now: i64,
        ingested_any: bool,
        newest_streamed: bool,
        report: &mut JobsetReport,
    ) -> Result<(), IngestError> {
        let recheck_after = self.settings.recheck_after.as_secs() as i64;
        let (due, unsettled) = self
            .with_store(move |store| {
                let due = now - store.rechecked_at(jobset_id)? >= recheck_after;
                let unfinished = !ingested_any;
                let failed = due && !newest_streamed;
                Ok((due, store.unsettled_builds(jobset_id, unfinished, failed)?))
            })
            .await?;
        if unsettled.is_empty() {
            if due {
                self.with_store(move |store| Ok(store.set_rechecked_at(jobset_id, now)?))
                    .await?;
            }
            return Ok(());
        }
        report.rechecked_builds = unsettled.len();
        let Some(newest) = self
            .with_store(move |store| Ok(store.newest_eval(jobset_id)?))
            .await?
        else {
            return Ok(());
        };
        let total = newest.nr_builds as usize;
        let mut streamed = None;
        if FetchStrategy::choose(total, unsettled.len(), &self.settings) == FetchStrategy::WholeEval
            && self.may_ask_whole_eval(jobset_id, newest.id, total).await?
        {
            let mode = WriteMode::Recheck { jobset_id };
            streamed = self
                .whole_eval(jobset, jobset_id, newest.id, total, mode, now)
                .await?
                .ok();
        }
        let outcome = match streamed {
            Some(outcome) => outcome,
            None => {
                let fetched = self.fetch_builds_cancellable(&unsettled).await??;
                let jobset = jobset.clone();
                self.with_store(move |store| {
                    let mut writer = store.begin_recheck(jobset_id)?;
                    let mut checker = BuildChecker::new(&jobset, 0);
                    for build in &fetched {
                        checker.write(&mut writer, build)?;
                    }
                    Ok(writer.commit()?)
                })
                .await?
            }
        };
        report.changed_builds = outcome.builds_written;
        let labels = [("jobset", jobset.to_string())];
        metrics::counter!("hydra_sentinel_builds_rechecked_total", &labels)
            .increment(unsettled.len() as u64);
        metrics::counter!("hydra_sentinel_builds_changed_total", &labels)
            .increment(outcome.builds_written as u64);
        if outcome.builds_written > 0 {
            tracing::info!(%jobset, rechecked = unsettled.len(), changed = outcome.builds_written, "builds changed status since last seen");
        }
        if due {
            self.with_store(move |store| Ok(store.set_rechecked_at(jobset_id, now)?))
                .await?;
        }
        Ok(())
    }
}
