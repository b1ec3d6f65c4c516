//! The digest's "Before it lands" section: early warnings about pre-merge
//! branches ([`crate::policy::early_warning`]), per branch and per root, so
//! the people driving a staging-next cycle see what it breaks and whom to
//! ask. Names are linked, never mentioned, like the rest of the digest.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{code, person};
use crate::policy::Warning;
use crate::policy::engine::Assessment;

/// A root's own warning (if it has one) and its victims' warnings.
type Group<'w> = (Option<&'w Warning>, Vec<&'w Warning>);

/// The section, or `None` when no branch has a warning or a hold.
pub(super) fn section(a: &Assessment, cap: usize) -> Option<String> {
    let live: Vec<&Warning> = a
        .warnings
        .iter()
        .filter(|w| w.notice.is_some() || w.due.is_some())
        .collect();
    if live.is_empty() && a.branch_holds.is_empty() {
        return None;
    }
    let mut out = String::from("## Before it lands\n\n");
    let _ = writeln!(
        out,
        "Packages that fail on a pre-merge branch but build on trunk: their maintainers were warned (never marked, no date runs). Grouped by the failing root; the victims fail because of it.\n"
    );
    let mut by_branch: BTreeMap<String, Vec<&Warning>> = BTreeMap::new();
    for w in &live {
        by_branch.entry(w.branch.to_string()).or_default().push(w);
    }
    for h in &a.branch_holds {
        by_branch.entry(h.jobset.to_string()).or_default();
    }
    for (branch, warnings) in by_branch {
        let _ = writeln!(out, "### {}\n", code(&branch));
        if let Some(h) = a
            .branch_holds
            .iter()
            .find(|h| h.jobset.to_string() == branch)
        {
            let _ = writeln!(
                out,
                "Held: a mass breakage (evals {} to {}, {} jobs newly failing); no new warning until it clears.\n",
                h.window.first.id, h.window.last.id, h.window.newly_failing
            );
        }
        if warnings.is_empty() {
            continue;
        }
        if let Some(pull) = warnings.iter().find_map(|w| w.pull.as_ref()) {
            let _ = writeln!(out, "Its pull request: {}.\n", pull.in_words());
        }
        // Root → (its own warning, victims).
        let mut groups: BTreeMap<&str, Group<'_>> = BTreeMap::new();
        for w in &warnings {
            match &w.root {
                Some(root) => groups.entry(root.as_str()).or_default().1.push(w),
                None => groups.entry(w.attr.as_str()).or_default().0 = Some(w),
            }
        }
        let mut groups: Vec<(&str, Group<'_>)> = groups.into_iter().collect();
        groups.sort_by(|x, y| y.1.1.len().cmp(&x.1.1.len()).then(x.0.cmp(y.0)));
        let _ = writeln!(
            out,
            "| root | platforms | failing since | blast radius | victims | ask | warned |"
        );
        let _ = writeln!(out, "| --- | --- | --- | ---: | --- | --- | --- |");
        let shown = groups.len().min(cap.max(1));
        for (root, (own, victims)) in groups.iter().take(shown) {
            let platforms = own
                .map(|w| w.systems.join(" "))
                .unwrap_or_else(|| "?".into());
            let since = own
                .and_then(|w| w.jobs.iter().min_by(|x, y| x.since.time.cmp(&y.since.time)))
                .map(|e| {
                    format!(
                        "[eval {}]({}) {}",
                        e.since.id,
                        e.since.url,
                        &e.since.time[..10]
                    )
                })
                .unwrap_or_else(|| "-".into());
            let ask = own
                .map(|w| {
                    w.maintainers
                        .iter()
                        .map(|m| person(m))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "unknown".into());
            let warned = own
                .and_then(|w| w.notice.as_ref())
                .map(|n| match n.issue {
                    Some(i) => format!("#{i}"),
                    None => "yes".into(),
                })
                .unwrap_or_else(|| "due".into());
            let _ = writeln!(
                out,
                "| {} | {} | {since} | {} | {} | {ask} | {warned} |",
                code(root),
                code(&platforms),
                victims.len(),
                if victims.is_empty() {
                    "-".to_owned()
                } else {
                    victims
                        .iter()
                        .take(5)
                        .map(|v| code(&v.attr))
                        .collect::<Vec<_>>()
                        .join(" ")
                }
            );
        }
        if groups.len() > shown {
            let _ = writeln!(
                out,
                "\n…and {} more roots (`hydra-sentinel plan --json` lists all).",
                groups.len() - shown
            );
        }
        let _ = writeln!(out);
    }
    Some(out)
}
