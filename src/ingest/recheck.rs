//! Asking again about builds of the newest eval whose status may change.
//!
//! Hydra changes builds after the fact: a restart sets `finished = 0` and
//! keeps the old status until the build finishes again (NixOS/hydra
//! `Helper/Nix.pm` `restartBuilds`), and an eval that reuses a build by
//! output path repoints it at a new derivation with `finished = 0` and no
//! status (`script/hydra-eval-jobset` `applyDrvPathRepoints`). Neither shows
//! on the evals page or in `/eval/{id}`, which carry build ids only, so the
//! cheap signals are ours: a build we hold unfinished, and a failed build
//! that a newer eval lists again. The store records what changed as a new
//! version of the build from the newest eval on (see [`crate::store`]).
//!
//! The budget: at most `recheck_budget` builds per pass and jobset, and no
//! more than is left of the pass's request budget. Unfinished builds come
//! first (each at most once an hour, the least recently asked first, then
//! the lowest ids, the likeliest to be done), but
//! take at most half while a round through the failed builds runs; a round
//! starts at most every `recheck_after` and goes in build id order, in
//! chunks, each chunk written together with how far the round got, so a
//! killed pass resumes the round where it stopped: nothing is lost, and at
//! most one chunk's requests are sent again.

use super::check::BuildChecker;
use super::{FetchStrategy, IngestError, Ingestor, JobsetReport, WriteMode};
use crate::config::JobsetRef;
use crate::store::WriteOutcome;

/// Builds fetched and written per transaction while rechecking.
const RECHECK_CHUNK: usize = 50;

/// An unfinished build is asked about again at most this often: Hydra takes
/// hours to build most of an eval, and the budget is better spent on builds
/// not asked about for longer.
const UNFINISHED_RECHECK_GAP: i64 = 3600;

/// What one pass asks about again.
#[derive(Debug, Default)]
struct RecheckPlan {
    unfinished: Vec<i64>,
    /// The next part of a running round of failed builds.
    failed: Vec<i64>,
    /// `failed` reaches the end of the round.
    ends_round: bool,
    /// Failed builds the round still has to go (for the choice of strategy).
    failed_left: usize,
}

impl Ingestor {
    /// Ask again about builds of the newest eval whose status may change:
    /// unfinished ones not asked about for an hour, and a round of failed
    /// ones every `recheck_after`, unless the newest eval was just streamed
    /// whole (which read every build afresh), within the budgets.
    pub(super) async fn recheck(
        &self,
        jobset: &JobsetRef,
        jobset_id: i64,
        now: i64,
        newest_streamed: bool,
        report: &mut JobsetReport,
    ) -> Result<(), IngestError> {
        let recheck_after = self.settings.recheck_after.as_secs() as i64;
        let budget = self.settings.recheck_budget.min(self.budget.left());
        let plan = self
            .with_store(move |store| {
                let mut cursor = store.recheck_cursor(jobset_id)?;
                let due = cursor.is_none() && now - store.rechecked_at(jobset_id)? >= recheck_after;
                if newest_streamed {
                    // Every build of the newest eval was just read: that is a round.
                    if due || cursor.is_some() {
                        store.recheck_round_done(jobset_id, now)?;
                    }
                    cursor = None;
                } else if due {
                    store.start_recheck_round(jobset_id, now)?;
                    cursor = Some(0);
                }
                let unfinished_budget = if cursor.is_some() { budget / 2 } else { budget };
                let unfinished = if newest_streamed {
                    Vec::new()
                } else {
                    store.unfinished_builds(
                        jobset_id,
                        now - UNFINISHED_RECHECK_GAP,
                        unfinished_budget,
                    )?
                };
                let mut plan = RecheckPlan {
                    unfinished,
                    ..RecheckPlan::default()
                };
                if let Some(after) = cursor {
                    let room = budget.saturating_sub(plan.unfinished.len());
                    // One more than there is room for tells whether the round ends.
                    let mut failed =
                        store.failed_builds_after(jobset_id, after, room.saturating_add(1))?;
                    plan.ends_round = failed.len() <= room;
                    failed.truncate(room);
                    plan.failed_left = store.failed_builds_left(jobset_id, after)?;
                    plan.failed = failed;
                }
                Ok(plan)
            })
            .await?;
        let asked = plan.unfinished.len() + plan.failed.len();
        if asked == 0 && !plan.ends_round {
            return Ok(());
        }
        report.rechecked_builds = asked;
        let Some(newest) = self
            .with_store(move |store| Ok(store.newest_eval(jobset_id)?))
            .await?
        else {
            return Ok(());
        };
        let total = newest.nr_builds as usize;
        let needed = plan.unfinished.len() + plan.failed_left;
        let mut streamed = None;
        if asked > 0
            && FetchStrategy::choose(total, needed, &self.settings) == FetchStrategy::WholeEval
            && self.may_ask_whole_eval(jobset_id, newest.id, total).await?
            && self.budget.take()
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
                self.recheck_build_by_build(jobset, jobset_id, &plan, now)
                    .await?
            }
        };
        report.changed_builds = outcome.builds_written;
        let labels = [("jobset", jobset.to_string())];
        metrics::counter!("hydra_sentinel_builds_rechecked_total", &labels).increment(asked as u64);
        metrics::counter!("hydra_sentinel_builds_changed_total", &labels)
            .increment(outcome.builds_written as u64);
        if outcome.builds_written > 0 {
            tracing::info!(%jobset, rechecked = asked, changed = outcome.builds_written,
                restarted_or_repointed = outcome.new_versions, "builds changed since last seen");
        }
        Ok(())
    }

    /// The plan's builds, a chunk at a time: each chunk is fetched, then
    /// written in one transaction together with how far the round got.
    async fn recheck_build_by_build(
        &self,
        jobset: &JobsetRef,
        jobset_id: i64,
        plan: &RecheckPlan,
        now: i64,
    ) -> Result<WriteOutcome, IngestError> {
        let ids: Vec<(i64, bool)> = plan
            .unfinished
            .iter()
            .map(|&id| (id, false))
            .chain(plan.failed.iter().map(|&id| (id, true)))
            .collect();
        let mut total = WriteOutcome::default();
        let chunks: Vec<&[(i64, bool)]> = ids.chunks(RECHECK_CHUNK).collect();
        let last = chunks.len().saturating_sub(1);
        if chunks.is_empty() && plan.ends_round {
            self.with_store(move |store| Ok(store.end_recheck_round(jobset_id)?))
                .await?;
        }
        for (n, chunk) in chunks.into_iter().enumerate() {
            self.control.check()?;
            let wanted: Vec<i64> = chunk.iter().map(|(id, _)| *id).collect();
            // The plan fits in what was left of the budget when it was made.
            let granted = self.budget.take_up_to(wanted.len());
            debug_assert_eq!(granted, wanted.len(), "a recheck plan beyond the budget");
            let mut fetched = Vec::with_capacity(wanted.len());
            for (id, answer) in self.fetch_each_cancellable(&wanted).await? {
                match answer {
                    Ok(build) => fetched.push(build),
                    // Gone for good: nothing more to learn about it.
                    Err(e) if e.is_refused_for_good() => {
                        tracing::warn!(%jobset, build = id, error = %crate::error_chain(&e),
                            "Hydra refused a build asked about again; left as it was");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let cursor = match chunk
                .iter()
                .filter(|(_, failed)| *failed)
                .map(|(id, _)| *id)
                .max()
            {
                _ if n == last && plan.ends_round => Some(None),
                Some(id) => Some(Some(id)),
                None => None,
            };
            let jobset = jobset.clone();
            let outcome = self
                .with_store(move |store| {
                    let mut writer = store.begin_recheck(jobset_id)?;
                    let mut checker = BuildChecker::new(&jobset, 0);
                    for build in &fetched {
                        checker.write(&mut writer, build)?;
                        writer.note_fetched(build.id, now)?;
                    }
                    if let Some(cursor) = cursor {
                        writer.set_recheck_cursor(cursor)?;
                    }
                    Ok(writer.commit()?)
                })
                .await?;
            self.control.beat();
            total.builds_written += outcome.builds_written;
            total.new_versions += outcome.new_versions;
            total.rejected_jobs += outcome.rejected_jobs;
        }
        Ok(total)
    }
}
