//! GitHub's refusals, settled once instead of sent again every cycle.
//!
//! Owns: what an action becomes when GitHub refused it for good (see
//! `forge::Failure`). A refusal of the token stops the cycle (every other
//! write would meet it too) and the action backs off like any failure
//! (`policy` waits longer after each); a refusal of this one request (a
//! locked conversation, a validation error) settles the action as "to be
//! done by hand" with GitHub's reason, which the digest lists, so it is
//! never sent again for the same failure, nor its branch fetched, edited
//! and pushed again. A notice is the exception: without it nothing may be
//! marked, so it stays a failure and backs off.
//!
//! Must never: settle a transient failure or a rate limit.

use crate::forge::{Failure, ForgeError, Refusal};
use crate::policy::{ActionKind, RecordState};
use crate::store::{ActionResult, Store};

use super::{ActError, ActReport, failed};

/// Settle action `id` if `error` is a refusal: `None` when it is not (the
/// caller records it as before), else what the caller returns.
pub(super) fn settle(
    store: &Store,
    id: i64,
    error: &ForgeError,
    now: i64,
    what: &str,
    report: &mut ActReport,
) -> Result<Option<Result<(), ActError>>, ActError> {
    let Failure::Refused(refusal) = error.failure() else {
        return Ok(None);
    };
    let kind = store
        .ledger()?
        .actions
        .iter()
        .find(|r| r.id == id)
        .map(|r| r.kind);
    metrics::counter!("hydra_sentinel_github_refusals_total", "refusal" => match refusal {
        Refusal::Token => "token",
        Refusal::Locked => "locked",
        Refusal::Validation => "validation",
    })
    .increment(1);
    match refusal {
        Refusal::Token => {
            let line = format!("{what}: GitHub refuses this token: {error}");
            store.record_result(id, &failed(now, &line))?;
            report.failed(line);
            Ok(Some(Err(ActError::Refused(format!("{what}: {error}")))))
        }
        Refusal::Locked | Refusal::Validation if kind != Some(ActionKind::Notify) => {
            let reason = if refusal == Refusal::Locked {
                format!("its conversation is locked, so GitHub refused the comment ({error})")
            } else {
                format!("GitHub refused it as invalid ({error})")
            };
            store.record_result(
                id,
                &ActionResult {
                    state: RecordState::Done,
                    at: now,
                    pr: None,
                    issue: None,
                    error: None,
                    refused: Some(reason.clone()),
                },
            )?;
            report.did(format!(
                "{what}: skipped, {reason}; not sent again for this failure (the digest lists it under \"To be done by hand\")"
            ));
            Ok(Some(Ok(())))
        }
        Refusal::Locked | Refusal::Validation => Ok(None),
    }
}
