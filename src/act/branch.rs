//! The names of the bot's pull request branches.
//!
//! Owns: turning a batch (its key, and the packages and platforms it
//! proposes) into a branch name that is the same every time, so a crash or
//! a lost database finds the same branch again, and different proposals
//! never share one.
//!
//! Must never: depend on anything but the batch itself (no clock, no
//! process-seeded hash, no ledger id), or produce a name git refuses.

use crate::policy::{Action, ActionKind};

/// The branch of a pull request: deterministic, so a crash or a lost
/// database finds the same branch again. The policy's batch key names it
/// (`mark-broken/maintainer/alice/1`); without one, the kind and attribute.
pub fn branch_for(
    kind: ActionKind,
    batch: Option<&str>,
    members: &[(&str, bool, &[String])],
) -> String {
    let what = match kind {
        ActionKind::Retire => "retire",
        _ => "mark-broken",
    };
    let first = members.first().map_or("unnamed", |m| m.0);
    let key = match batch {
        Some(batch) => batch.to_owned(),
        None => format!("{what}/{first}"),
    };
    let clean: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_./".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    // git refuses `..` and parts that start or end with a dot.
    let mut clean = clean;
    while clean.contains("..") {
        clean = clean.replace("..", ".");
    }
    let parts: Vec<&str> = clean
        .split('/')
        .map(|p| p.trim_matches('.'))
        .filter(|p| !p.is_empty())
        .collect();
    // What the pull request proposes, hashed: the same packages and
    // platforms give the same branch (a retry finds it), different ones
    // never reuse a branch whose pull request proposes something else.
    let mut content: Vec<String> = members
        .iter()
        .map(|(attr, all, systems)| {
            format!(
                "{attr}:{}",
                if *all {
                    "all".to_owned()
                } else {
                    systems.join(",")
                }
            )
        })
        .collect();
    content.sort();
    format!(
        "hydra-sentinel/{}-{:08x}",
        parts.join("/"),
        fnv1a(content.join(";").as_bytes()) as u32
    )
}

/// The branch of a batch, planned (actions) or recorded (ledger records
/// keep what the name is made of): attribute, all platforms, systems.
pub(super) fn branch_of<'a>(
    kind: ActionKind,
    batch: Option<&str>,
    members: impl Iterator<Item = (&'a Option<String>, bool, &'a Vec<String>)>,
) -> String {
    let members: Vec<(&str, bool, &[String])> = members
        .map(|(attr, all, systems)| (attr.as_deref().unwrap_or_default(), all, systems.as_slice()))
        .collect();
    branch_for(kind, batch, &members)
}

/// The branch of a planned batch.
pub(super) fn branch_of_batch(actions: &[&Action]) -> String {
    branch_of(
        actions[0].kind,
        actions[0].batch.as_deref(),
        actions
            .iter()
            .map(|a| (&a.attr, a.all_platforms, &a.systems)),
    )
}

/// FNV-1a: a small stable hash (the standard library's is seeded per process).
pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_branch_is_named_by_its_batch_and_what_it_proposes() {
        let darwin = vec!["aarch64-darwin".to_owned()];
        let linux = vec!["x86_64-linux".to_owned()];
        let batch = Some("mark-broken/maintainer/alice/1");
        let a = branch_for(ActionKind::MarkBroken, batch, &[("hello", false, &darwin)]);
        assert!(
            a.starts_with("hydra-sentinel/mark-broken/maintainer/alice/1-"),
            "{a}"
        );
        assert_eq!(
            a,
            branch_for(ActionKind::MarkBroken, batch, &[("hello", false, &darwin)])
        );
        assert_ne!(
            a,
            branch_for(ActionKind::MarkBroken, batch, &[("hello", false, &linux)])
        );
        assert_ne!(
            a,
            branch_for(ActionKind::MarkBroken, batch, &[("frob", false, &darwin)])
        );
        let both = branch_for(
            ActionKind::MarkBroken,
            batch,
            &[("hello", false, &darwin), ("frob", true, &linux)],
        );
        let swapped = branch_for(
            ActionKind::MarkBroken,
            batch,
            &[("frob", true, &linux), ("hello", false, &darwin)],
        );
        assert_eq!(both, swapped, "the order of a batch does not matter");
        let odd = branch_for(ActionKind::Retire, None, &[("a b..c", true, &[])]);
        assert!(odd.starts_with("hydra-sentinel/retire/a-b.c-"), "{odd}");
        assert!(!odd.contains(' ') && !odd.contains(".."), "{odd}");
    }
}
