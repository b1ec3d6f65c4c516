//! Opt-outs humans express outside comments: the policy's marker comment in
//! a package's file (`[opt_out] marker`) and the policy's label on one of
//! the bot's issues or pull requests (`[opt_out] label`).
//!
//! Owns: turning what was seen into ledger opt-outs (kinds `marker` and
//! `label`), and revoking them once the marker or label is seen gone. The
//! engine does the rest: an attribute with an opt-out in force gets no
//! notice, reminder, mark or retirement (`AttrAssessment::opted_out`), and
//! `explain` and the digest say so.
//!
//! Must never: conclude anything from what it could not see (an attribute
//! that cannot be located keeps its marker opt-out as it is), look for the
//! bot's own work by label, or write anything to GitHub.

use std::collections::{BTreeMap, BTreeSet};

use crate::forge::Issue;
use crate::policy::{Ledger, OptOutKind};
use crate::store::{NewOptOut, Store, StoreError};

use super::{ActReport, PackageFile, tracked_attr};

/// Record a marker opt-out for each surveyed file that carries the marker,
/// and revoke those whose file no longer does.
pub fn follow_markers(
    store: &Store,
    marker: &str,
    files: &BTreeMap<String, PackageFile>,
    now: i64,
    report: &mut ActReport,
) -> Result<(), StoreError> {
    let ledger = store.ledger()?;
    for (attr, file) in files {
        let in_force = ledger
            .opt_outs
            .iter()
            .find(|o| o.attr == *attr && o.kind == OptOutKind::Marker && o.revoked_at.is_none());
        match (file.marked, in_force) {
            (true, None) => {
                store.record_opt_out(&NewOptOut {
                    attr: attr.clone(),
                    kind: OptOutKind::Marker,
                    recorded_at: now,
                    until: None,
                    by: None,
                    note: format!("`{marker}` in {}", file.path),
                })?;
                report.did(format!(
                    "{attr}: {} carries the opt-out marker; it is left alone",
                    file.path
                ));
            }
            (false, Some(o)) => {
                store.revoke_opt_out(o.id, now)?;
                report.did(format!(
                    "{attr}: the opt-out marker is gone from {}; the policy applies again",
                    file.path
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The attributes an item of the bot's is about: a tracking issue's, by its
/// hidden marker; a pull request's, by the ledger.
fn attrs_of(item: &Issue, ledger: &Ledger) -> Vec<String> {
    if item.is_pull_request {
        let mut attrs: Vec<String> = ledger
            .actions
            .iter()
            .filter(|r| r.kind.opens_pr() && r.pr == Some(item.number))
            .filter_map(|r| r.attr.clone())
            .collect();
        attrs.sort();
        attrs.dedup();
        attrs
    } else {
        tracked_attr(item).into_iter().collect()
    }
}

/// Record a label opt-out for each attribute one of whose items (the bot's
/// own issues and pull requests, any state, as just listed) carries the
/// label, and revoke those whose items no longer do.
pub fn follow_labels(
    store: &Store,
    label: &str,
    items: &[Issue],
    ledger: &Ledger,
    now: i64,
    report: &mut ActReport,
) -> Result<(), StoreError> {
    // GitHub's label names are unique regardless of case.
    let mut labelled: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for item in items
        .iter()
        .filter(|i| i.labels.iter().any(|l| l.eq_ignore_ascii_case(label)))
    {
        for attr in attrs_of(item, ledger) {
            labelled.entry(attr).or_default().insert(item.number);
        }
    }
    let in_force = |attr: &str| {
        ledger
            .opt_outs
            .iter()
            .find(|o| o.attr == attr && o.kind == OptOutKind::Label && o.revoked_at.is_none())
    };
    for (attr, numbers) in &labelled {
        if in_force(attr).is_some() {
            continue;
        }
        let on = numbers
            .iter()
            .map(|n| format!("#{n}"))
            .collect::<Vec<_>>()
            .join(", ");
        store.record_opt_out(&NewOptOut {
            attr: attr.clone(),
            kind: OptOutKind::Label,
            recorded_at: now,
            until: None,
            by: None,
            note: format!("label \"{label}\" on {on}"),
        })?;
        report.did(format!(
            "{attr}: the label \"{label}\" is on {on}; it is left alone"
        ));
    }
    for o in ledger
        .opt_outs
        .iter()
        .filter(|o| o.kind == OptOutKind::Label && o.revoked_at.is_none())
        .filter(|o| !labelled.contains_key(&o.attr))
    {
        store.revoke_opt_out(o.id, now)?;
        report.did(format!(
            "{}: the label \"{label}\" was removed; the policy applies again",
            o.attr
        ));
    }
    Ok(())
}
