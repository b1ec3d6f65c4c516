//! The one `/eval/{id}/builds` request an eval may get: whether it may be
//! asked for, noting it before it is sent, and streaming its body into one
//! transaction while it downloads.

use futures_util::StreamExt;

use super::check::{BuildChecker, Checked, check};
use super::{IngestError, Ingestor, WriteMode};
use crate::config::JobsetRef;
use crate::hydra::{StreamError, for_each_build};
use crate::store::WriteOutcome;

/// What the parsing thread hands the writing thread.
enum Parsed {
    /// Builds parsed and checked, ready to be written.
    Builds(Vec<Checked>),
    /// The array ended where it should: the eval may be committed.
    End,
    /// The body broke off or is malformed after this many builds.
    Broken(usize, serde_json::Error),
}

/// Why the one whole-eval request of an eval gave way to single builds.
#[derive(Debug)]
pub(super) struct WholeEvalFailed {
    /// The gateway or we gave up waiting (this size is too big for Hydra).
    timed_out: bool,
    reason: String,
}

/// The writer went away (it failed); the parser stops.
#[derive(Debug, thiserror::Error)]
#[error("the writer stopped")]
struct WriterGone;

/// Builds handed over at a time (fewer, larger messages).
const PARSE_BATCH: usize = 256;

/// Parsed builds between two heartbeats while streaming an eval.
const BUILDS_PER_HEARTBEAT: usize = 2000;

impl Ingestor {
    /// Whether `/eval/{eval_id}/builds` may be asked for: never asked before
    /// (in this process or an earlier one), and small enough to plausibly
    /// answer within the gateway's limit: at most `whole_eval_max_builds`,
    /// and smaller than any eval of the jobset whose request timed out.
    pub(super) async fn may_ask_whole_eval(
        &self,
        jobset_id: i64,
        eval_id: i64,
        total: usize,
    ) -> Result<bool, IngestError> {
        if total > self.settings.whole_eval_max_builds {
            tracing::debug!(
                eval = eval_id,
                builds = total,
                "too big for /eval/{{id}}/builds; build by build"
            );
            return Ok(false);
        }
        let (asked, timed_out) = self
            .with_store(move |store| {
                Ok((
                    store.whole_eval_requested(eval_id)?,
                    store.smallest_timed_out_whole_eval(jobset_id)?,
                ))
            })
            .await?;
        if let Some(size) = timed_out.filter(|size| total as i64 >= *size) {
            tracing::debug!(
                eval = eval_id,
                builds = total,
                timed_out_at = size,
                "an eval this big timed out before; build by build"
            );
            return Ok(false);
        }
        Ok(!asked)
    }

    /// The one request for `/eval/{id}/builds` of an eval: noted (and
    /// committed) before it is sent, its outcome noted after. `Ok(Err(_))`
    /// when it failed in a way `/build/{id}` requests make up for.
    pub(super) async fn whole_eval(
        &self,
        jobset: &JobsetRef,
        jobset_id: i64,
        eval_id: i64,
        total: usize,
        mode: WriteMode,
        now: i64,
    ) -> Result<Result<WriteOutcome, WholeEvalFailed>, IngestError> {
        self.with_store(move |store| {
            Ok(store.note_whole_eval_request(jobset_id, eval_id, total as i64, now)?)
        })
        .await?;
        let result = self.stream_eval(jobset, eval_id, total, mode).await;
        let (outcome, reason) = match &result {
            Ok(Ok(_)) => ("ok", None),
            Ok(Err(failed)) if failed.timed_out => ("timeout", Some(failed.reason.clone())),
            Ok(Err(failed)) => ("failed", Some(failed.reason.clone())),
            Err(e) => ("failed", Some(crate::error_chain(e))),
        };
        self.with_store(move |store| {
            Ok(store.note_whole_eval_outcome(eval_id, outcome, reason.as_deref())?)
        })
        .await?;
        let result = result?;
        if let Err(failed) = &result {
            metrics::counter!("hydra_sentinel_whole_eval_fallbacks_total", "jobset" => jobset.to_string())
                .increment(1);
            tracing::warn!(%jobset, eval = eval_id, builds = total, reason = %failed.reason,
                "/eval/{{id}}/builds failed and is not asked for again; fetching the eval build by build");
        }
        Ok(result)
    }

    /// Stream `/eval/{id}/builds` into a writer opened by `mode`, once: the
    /// body is parsed while it downloads, on the blocking pool, so network
    /// and database work overlap and memory stays at one build. A body that
    /// breaks off or does not parse rolls the transaction back. `Ok(Err(why))`
    /// for failures another way of fetching can make up for (transient
    /// errors: a 504 from the gateway, a timeout, a cut or malformed body).
    async fn stream_eval(
        &self,
        jobset: &JobsetRef,
        eval_id: i64,
        total: usize,
        mode: WriteMode,
    ) -> Result<Result<WriteOutcome, WholeEvalFailed>, IngestError> {
        let body = match self.client.eval_builds_stream(eval_id).await {
            Ok(body) => body,
            Err(e) if e.is_transient() => {
                return Ok(Err(WholeEvalFailed {
                    timed_out: e.is_timeout(),
                    reason: crate::error_chain(&e),
                }));
            }
            Err(e) => return Err(e.into()),
        };
        // Cancelling ends the body early: the parse fails and the
        // transaction rolls back, exactly as for a truncated download.
        let body = body.take_until(self.control.cancel.clone().cancelled_owned());
        let reader = tokio_util::io::StreamReader::new(Box::pin(body));
        // Two threads, two cores: one parses the body as it arrives and
        // checks each build (job name, store path) into the row to write,
        // the other only writes the transaction. The writer commits only on
        // the parser's explicit end of the array; a parser that fails or
        // dies makes it roll back.
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Parsed>(16);
        let checked_for = jobset.clone();
        let parser = tokio::task::spawn_blocking(move || {
            let reader = tokio_util::io::SyncIoBridge::new(reader);
            let mut batch = Vec::with_capacity(PARSE_BATCH);
            let result = for_each_build(reader, |build| {
                batch.push(check(&checked_for, build));
                if batch.len() == PARSE_BATCH {
                    sender
                        .send(Parsed::Builds(std::mem::replace(
                            &mut batch,
                            Vec::with_capacity(PARSE_BATCH),
                        )))
                        .map_err(|_| WriterGone)?;
                }
                Ok::<(), WriterGone>(())
            });
            let last = match result {
                Ok(_) => {
                    let _ = sender.send(Parsed::Builds(batch));
                    Parsed::End
                }
                Err(StreamError::Json {
                    builds_read,
                    source,
                }) => Parsed::Broken(builds_read, source),
                Err(StreamError::Callback(WriterGone)) => return,
            };
            let _ = sender.send(last);
        });
        let jobset = jobset.clone();
        let control = self.control.clone();
        let result = self
            .with_store(move |store| {
                let mut writer = mode.begin(store, &jobset)?;
                writer.reserve(total)?;
                let mut checker = BuildChecker::new(&jobset, eval_id);
                let mut parsed = 0usize;
                for message in receiver {
                    match message {
                        Parsed::Builds(builds) => {
                            let before = parsed / BUILDS_PER_HEARTBEAT;
                            parsed += builds.len();
                            for build in builds {
                                checker.write_checked(&mut writer, build)?;
                            }
                            if parsed / BUILDS_PER_HEARTBEAT > before {
                                control.beat();
                            }
                        }
                        Parsed::End => return Ok(Ok(writer.commit()?)),
                        // Dropping the writer rolls the eval back.
                        Parsed::Broken(builds_read, source) => {
                            return Ok(Err((builds_read, source)));
                        }
                    }
                }
                Ok(Err((
                    parsed,
                    serde_json::Error::io(std::io::Error::other(
                        "the parser stopped without finishing the array",
                    )),
                )))
            })
            .await;
        // The parser ends once the writer is done with it (or gone).
        let _ = parser.await;
        match result? {
            Ok(outcome) => Ok(Ok(outcome)),
            Err(_) if self.control.cancel.is_cancelled() => {
                tracing::info!(
                    eval = eval_id,
                    "download cut on request; nothing of the eval written"
                );
                Err(IngestError::Cancelled)
            }
            Err((builds_read, source)) => {
                metrics::counter!("hydra_sentinel_hydra_errors_total", "kind" => "body")
                    .increment(1);
                Ok(Err(WholeEvalFailed {
                    timed_out: false,
                    reason: format!(
                        "the builds array broke off or is malformed after {builds_read} builds (nothing written): {source}"
                    ),
                }))
            }
        }
    }
}
