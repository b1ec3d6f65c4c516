//! The weekly digest: the Markdown body of the issue maintainers read.
//!
//! Owns: its layout (summary numbers, holds, new breakages grouped by commit
//! range, roots ranked by blast radius, early warnings about pre-merge
//! branches ("Before it lands"), a mermaid chart of failing jobs per
//! day, one section per maintainer with their packages inline), fitting
//! GitHub's 65,536-character body limit by summarising whole sections —
//! never by cutting a table — and escaping every name that came from Hydra.
//!
//! Must never: @-mention anyone (maintainers are linked, not mentioned: the
//! notices are the pings), let a job name inject Markdown, do I/O, or read
//! the clock.
//!
//! Maintainers come from [`crate::policy::Facts::maintainers`] (resolved from
//! a nixpkgs checkout by [`crate::nixpkgs`]); packages without known
//! maintainers are grouped under "Unknown maintainers".

mod before_it_lands;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{Datelike, NaiveDate, TimeZone, Utc};

use crate::format::time;
use crate::policy::engine::{Assessment, AttrAssessment, Rule};
use crate::policy::{ActionKind, ActionRecord, Facts, Plan, Policy};

/// GitHub's limit for an issue body.
pub const GITHUB_BODY_LIMIT: usize = 65_536;

const DAY: i64 = 86_400;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("{0:?} is not an ISO week such as 2025-W46")]
    BadWeek(String),
}

/// An ISO week: Monday 00:00 UTC to the next Monday.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Week {
    pub year: i32,
    pub week: u32,
}

impl Week {
    pub fn parse(text: &str) -> Result<Week, DigestError> {
        let bad = || DigestError::BadWeek(text.to_owned());
        let (y, w) = text.split_once("-W").ok_or_else(bad)?;
        let week = Week {
            year: y.parse().map_err(|_| bad())?,
            week: w.parse().map_err(|_| bad())?,
        };
        week.start_date().ok_or_else(bad)?;
        Ok(week)
    }

    /// The week containing `unix`.
    pub fn containing(unix: i64) -> Week {
        let d = Utc
            .timestamp_opt(unix, 0)
            .single()
            .unwrap_or_default()
            .date_naive()
            .iso_week();
        Week {
            year: d.year(),
            week: d.week(),
        }
    }

    fn start_date(self) -> Option<NaiveDate> {
        NaiveDate::from_isoywd_opt(self.year, self.week, chrono::Weekday::Mon)
    }

    /// Monday 00:00 UTC.
    pub fn start(self) -> i64 {
        self.start_date()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(0, |t| t.and_utc().timestamp())
    }

    pub fn end(self) -> i64 {
        self.start() + 7 * DAY
    }
}

impl std::fmt::Display for Week {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-W{:02}", self.year, self.week)
    }
}

/// Text as inline code that can neither mention anyone, link, nor break a
/// table: control characters dropped, `|` escaped, and a backtick fence
/// longer than any run inside.
pub fn code(text: &str) -> String {
    let clean: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect::<String>()
        .replace('|', "\\|");
    let mut longest = 0;
    let mut run = 0;
    for c in clean.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    let fence = "`".repeat(longest + 1);
    let pad = if clean.starts_with('`') || clean.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{clean}{pad}{fence}")
}

/// A maintainer as a link to their profile: no `@`, so no notification.
pub fn person(login: &str) -> String {
    let valid = !login.is_empty()
        && login.len() <= 39
        && !login.starts_with('-')
        && login.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        format!("[{login}](https://github.com/{login})")
    } else {
        code(login)
    }
}

fn day(unix: i64) -> String {
    time(unix)[..10].to_owned()
}

fn short(rev: Option<&str>) -> String {
    rev.map_or("?".to_owned(), |r| {
        r.chars().filter(char::is_ascii_hexdigit).take(12).collect()
    })
}

/// Everything the digest is made of.
pub struct DigestInput<'a> {
    pub policy: &'a Policy,
    pub facts: &'a Facts,
    pub assessment: &'a Assessment,
    pub plan: &'a Plan,
    pub week: Week,
}

/// One package line in a maintainer's section.
struct PackageLine {
    attr: String,
    systems: Vec<String>,
    since: i64,
    status: String,
    hydra: Option<String>,
}

fn package_lines<'a>(input: &DigestInput<'a>) -> Vec<(&'a AttrAssessment, PackageLine)> {
    let now = input.assessment.now;
    let mut out = Vec::new();
    for a in input.assessment.attrs.values() {
        let failing: Vec<_> = a
            .jobs
            .iter()
            .filter(|j| {
                matches!(
                    j.rule,
                    Rule::Ladder(_) | Rule::NotYetReal { .. } | Rule::Skipped { .. }
                )
            })
            .collect();
        if failing.is_empty() {
            continue;
        }
        let since = failing
            .iter()
            .filter_map(|j| j.since_ts())
            .min()
            .unwrap_or(now);
        let status = if let Some(o) = &a.opted_out {
            format!("opted out ({})", o.kind.as_str())
        } else if let Some(u) = a.snoozed_until {
            format!("snoozed until {}", day(u))
        } else if failing
            .iter()
            .all(|j| matches!(j.rule, Rule::Skipped { .. }))
        {
            "left alone by policy".to_owned()
        } else if !a.due.is_empty() || !a.schedule.is_empty() {
            // What is due now, then the dates the tracking issue promises.
            let due = a.due.first().map(|d| format!("{} due now", d.kind));
            let upcoming = a
                .schedule
                .iter()
                .filter(|s| s.at_unix > now)
                .take(2)
                .map(|s| {
                    let what = match (s.kind, s.step.as_deref()) {
                        (ActionKind::Notify, _) => "notice",
                        (ActionKind::Remind, Some("retire-warning")) => "attic warning",
                        (ActionKind::Remind, _) => "reminder",
                        (ActionKind::MarkBroken, _) => "mark-broken PR",
                        (ActionKind::Escalate, _) => "escalation",
                        (ActionKind::Retire, _) => "attic PR",
                        (kind, _) => kind.as_str(),
                    };
                    format!("{what} {}", &s.at[..10])
                });
            due.into_iter()
                .chain(upcoming)
                .collect::<Vec<_>>()
                .join(", then ")
        } else if let Some(n) = &a.next {
            format!("{} on {}", n.kind, &n.at[..10])
        } else if failing
            .iter()
            .any(|j| matches!(&j.rule, Rule::Ladder(s) if s.mark.is_some()))
        {
            "mark proposed".to_owned()
        } else if a.protected {
            "protected: escalated".to_owned()
        } else {
            "waiting for a failure on a rebuilt derivation".to_owned()
        };
        out.push((
            a,
            PackageLine {
                attr: a.attr.clone(),
                systems: failing.iter().map(|j| j.system.clone()).collect(),
                since,
                status,
                hydra: failing
                    .iter()
                    .find_map(|j| j.evidence.as_ref().map(|e| e.job_url.clone())),
            },
        ));
    }
    out
}

/// Render the digest, summarised as far as needed to fit GitHub's limit.
pub fn render(input: &DigestInput<'_>) -> String {
    for cap in [usize::MAX, 50, 20, 5, 0] {
        let text = render_with(input, cap);
        if text.len() < GITHUB_BODY_LIMIT - 512 {
            return text;
        }
    }
    render_with(input, 0)
}

fn more(out: &mut String, shown: usize, total: usize, what: &str) {
    if total > shown {
        let _ = writeln!(
            out,
            "\n…and {} more {what} (`hydra-sentinel plan --json` lists all).",
            total - shown
        );
    }
}

fn render_with(input: &DigestInput<'_>, cap: usize) -> String {
    let a = input.assessment;
    let (start, end) = (input.week.start(), input.week.end());
    let lines = package_lines(input);
    let mut out = String::new();
    heading(&mut out, input);
    summary(&mut out, input, lines.len(), start, end);
    holds(&mut out, a);
    new_breakages(&mut out, a, cap, start, end);
    roots(&mut out, a, cap);
    // Early warnings about pre-merge branches, when there are any.
    if let Some(section) = before_it_lands::section(a, cap) {
        out.push_str(&section);
    }
    to_be_done_by_hand(&mut out, a, cap);
    failing_jobs_per_day(&mut out, input, start);
    packages_by_maintainer(&mut out, &lines, a.now, cap);
    footer(&mut out, input);
    out
}

/// The title and what the digest is based on.
fn heading(out: &mut String, input: &DigestInput<'_>) {
    let a = input.assessment;
    let week = input.week;
    let (start, end) = (week.start(), week.end());
    let _ = writeln!(
        out,
        "# hydra-sentinel weekly digest {week} ({} to {})\n",
        day(start),
        day(end - 1)
    );
    let _ = writeln!(
        out,
        "As of {}. Policy: {}. Maintainers are linked, never mentioned; notices are sent separately.\n",
        time(a.now),
        code(&input.policy.source)
    );
}

/// The jobsets' totals, and what is planned.
fn summary(out: &mut String, input: &DigestInput<'_>, packages: usize, start: i64, end: i64) {
    let a = input.assessment;
    let new_jobs: usize = a
        .transitions
        .iter()
        .filter(|t| in_week(&t.bad.time, start, end))
        .map(|t| t.jobs.len())
        .sum();
    let _ = writeln!(out, "## Summary\n");
    let _ = writeln!(
        out,
        "| jobset | newest eval | jobs | failing | dependency failed | flaky |"
    );
    let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: | ---: |");
    for t in &a.totals {
        let name = t.jobset.as_ref().map(|j| j.to_string()).unwrap_or_default();
        let eval = t
            .newest_eval
            .as_ref()
            .map(|e| format!("[{}]({}) {}", e.id, e.url, &e.time[..10]))
            .unwrap_or_else(|| "none".into());
        let _ = writeln!(
            out,
            "| {} | {eval} | {} | {} | {} | {} |",
            code(&name),
            t.jobs,
            t.failing,
            t.dependency_failed,
            t.flaky
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "- packages failing on their own: **{}**", packages);
    let _ = writeln!(out, "- jobs newly failing this week: **{new_jobs}**");
    let counts: Vec<String> = ActionKind::ALL
        .iter()
        .filter(|k| **k != ActionKind::Hold)
        .map(|k| format!("{} {}", input.plan.count(*k), k.as_str()))
        .collect();
    let _ = writeln!(
        out,
        "- planned now: {}; {} deferred by limits{}",
        counts.join(", "),
        input.plan.deferred.len(),
        if input.plan.held { " or the hold" } else { "" }
    );
    let _ = writeln!(out);
}

/// Mass breakages in force: nothing is marked while one lasts.
fn holds(out: &mut String, a: &Assessment) {
    if !a.holds.is_empty() {
        let _ = writeln!(out, "## Holds\n");
        let _ = writeln!(out, "Nothing is marked while a mass breakage lasts.\n");
        let _ = writeln!(
            out,
            "| jobset | window | newly failing | share | changes | examples |"
        );
        let _ = writeln!(out, "| --- | --- | ---: | ---: | --- | --- |");
        for h in &a.holds {
            let w = &h.window;
            let _ = writeln!(
                out,
                "| {} | [{}]({}) to [{}]({}) | {} | {:.1}% | {} | {} |",
                code(&h.jobset.to_string()),
                w.first.id,
                w.first.url,
                w.last.id,
                w.last.url,
                w.newly_failing,
                w.share * 100.0,
                w.compare
                    .as_ref()
                    .map(|c| format!("[compare]({c})"))
                    .unwrap_or_default(),
                w.examples
                    .iter()
                    .map(|e| code(e))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        let _ = writeln!(out);
    }
}

/// New breakages this week, by commit range.
fn new_breakages(out: &mut String, a: &Assessment, cap: usize, start: i64, end: i64) {
    let transitions: Vec<_> = a
        .transitions
        .iter()
        .filter(|t| in_week(&t.bad.time, start, end))
        .collect();
    let _ = writeln!(out, "## New breakages by commit range\n");
    if transitions.is_empty() {
        let _ = writeln!(out, "None this week.\n");
    } else if cap > 0 {
        let _ = writeln!(out, "| last good → first bad | changes | jobs |");
        let _ = writeln!(out, "| --- | --- | --- |");
        for t in transitions.iter().take(cap) {
            let jobs: Vec<String> = t
                .jobs
                .iter()
                .take(cap.min(10))
                .map(|(attr, system)| format!("{} ({})", code(attr), code(system)))
                .collect();
            let extra = t.jobs.len().saturating_sub(jobs.len());
            let _ = writeln!(
                out,
                "| {} [{}]({}) {} → [{}]({}) {} | {} | {}{} |",
                code(&t.jobset.to_string()),
                t.good.id,
                t.good.url,
                short(t.good.revision.as_deref()),
                t.bad.id,
                t.bad.url,
                short(t.bad.revision.as_deref()),
                t.compare
                    .as_ref()
                    .map(|c| format!("[compare]({c})"))
                    .unwrap_or_else(|| "no revisions".into()),
                jobs.join(", "),
                if extra > 0 {
                    format!(" and {extra} more")
                } else {
                    String::new()
                }
            );
        }
        more(
            out,
            transitions.len().min(cap),
            transitions.len(),
            "commit ranges",
        );
        let _ = writeln!(out);
    } else {
        let _ = writeln!(
            out,
            "{} commit ranges with new failures (summarised to fit).\n",
            transitions.len()
        );
    }
}

/// Packages whose failure others depend on, the most depended on first.
fn roots(out: &mut String, a: &Assessment, cap: usize) {
    let _ = writeln!(out, "## Roots by blast radius\n");
    if a.roots.is_empty() {
        let _ = writeln!(out, "No dependency failure could be charged to a root.\n");
    } else if cap > 0 {
        let _ = writeln!(
            out,
            "| root | systems | packages failing because of it | examples | how we know |"
        );
        let _ = writeln!(out, "| --- | --- | ---: | --- | --- |");
        for r in a.roots.iter().take(cap.min(20)) {
            let known = if r.named_by_hydra == r.victim_jobs {
                "Hydra's build pages".to_owned()
            } else if r.named_by_hydra == 0 {
                "failures began in the same eval".to_owned()
            } else {
                format!(
                    "Hydra's build pages ({} of {} jobs), else the same eval",
                    r.named_by_hydra, r.victim_jobs
                )
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {known} |",
                code(&r.attr),
                r.systems
                    .iter()
                    .map(|s| code(s))
                    .collect::<Vec<_>>()
                    .join(" "),
                r.victims.len(),
                r.victims
                    .iter()
                    .take(5)
                    .map(|v| code(v))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        more(out, a.roots.len().min(cap.min(20)), a.roots.len(), "roots");
        let _ = writeln!(out);
    } else {
        let _ = writeln!(out, "{} roots (summarised to fit).\n", a.roots.len());
    }
}

/// Edits the editor refused: only a human can make them. The section
/// appears only when there is one, so a quiet week stays short.
fn to_be_done_by_hand(out: &mut String, a: &Assessment, cap: usize) {
    let refused: Vec<(&str, &ActionRecord)> = a
        .attrs
        .values()
        .filter_map(|attr| attr.refused.first().map(|r| (attr.attr.as_str(), r)))
        .collect();
    if !refused.is_empty() {
        let _ = writeln!(out, "## To be done by hand\n");
        let _ = writeln!(
            out,
            "hydra-sentinel cannot make these edits itself; each package's tracking issue says why.\n"
        );
        let _ = writeln!(out, "| package | step | platforms | why |");
        let _ = writeln!(out, "| --- | --- | --- | --- |");
        for (attr, r) in refused.iter().take(cap.clamp(1, 50)) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                code(attr),
                r.kind,
                if r.all_platforms || r.systems.is_empty() {
                    "all".to_owned()
                } else {
                    r.systems
                        .iter()
                        .map(|s| code(s))
                        .collect::<Vec<_>>()
                        .join(" ")
                },
                code(r.refused.as_deref().unwrap_or_default())
            );
        }
        more(
            out,
            refused.len().min(cap.clamp(1, 50)),
            refused.len(),
            "packages",
        );
        let _ = writeln!(out);
    }
}

/// A chart of the own failures in the newest eval of each day so far.
fn failing_jobs_per_day(out: &mut String, input: &DigestInput<'_>, start: i64) {
    let a = input.assessment;
    let _ = writeln!(out, "## Failing jobs per day\n");
    let mut labels = Vec::new();
    let mut values = Vec::new();
    for d in 0..7 {
        let day_end = start + (d + 1) * DAY - 1;
        if day_end - DAY + 1 > a.now {
            break;
        }
        let total: u32 = a
            .totals
            .iter()
            .filter(|t| t.jobset.as_ref().is_some_and(|j| input.policy.acts_on(j)))
            .filter_map(|t| {
                let i = t.failing_per_eval.partition_point(|(ts, _)| *ts <= day_end);
                i.checked_sub(1).map(|i| t.failing_per_eval[i].1)
            })
            .sum();
        labels.push(format!("\"{}\"", &day(day_end)[5..]));
        values.push(total.to_string());
    }
    if values.is_empty() {
        let _ = writeln!(out, "No data for this week yet.\n");
    } else {
        let _ = writeln!(out, "```mermaid");
        let _ = writeln!(out, "xychart-beta");
        let _ = writeln!(
            out,
            "    title \"Own failures in the newest eval of each day\""
        );
        let _ = writeln!(out, "    x-axis [{}]", labels.join(", "));
        let _ = writeln!(out, "    y-axis \"jobs\"");
        let _ = writeln!(out, "    bar [{}]", values.join(", "));
        let _ = writeln!(out, "```\n");
    }
}

/// The packages failing on their own, per maintainer.
fn packages_by_maintainer(
    out: &mut String,
    lines: &[(&AttrAssessment, PackageLine)],
    now: i64,
    cap: usize,
) {
    let mut by_maintainer: BTreeMap<Option<String>, Vec<&PackageLine>> = BTreeMap::new();
    for (attr, line) in lines {
        if attr.maintainers.is_empty() {
            by_maintainer.entry(None).or_default().push(line);
        }
        for m in &attr.maintainers {
            by_maintainer.entry(Some(m.clone())).or_default().push(line);
        }
    }
    let _ = writeln!(out, "## Packages by maintainer\n");
    if by_maintainer.is_empty() {
        let _ = writeln!(out, "No package fails on its own. 🎉\n");
    }
    // Known maintainers first (most packages first), unknown last.
    let mut sections: Vec<(Option<String>, Vec<&PackageLine>)> =
        by_maintainer.into_iter().collect();
    sections.sort_by(|(ma, la), (mb, lb)| {
        ma.is_none()
            .cmp(&mb.is_none())
            .then(lb.len().cmp(&la.len()))
            .then(ma.cmp(mb))
    });
    let shown_sections = if cap == usize::MAX {
        sections.len()
    } else {
        cap.min(sections.len())
    };
    for (who, mut pkgs) in sections.iter().take(shown_sections).cloned() {
        pkgs.sort_by(|a, b| a.since.cmp(&b.since).then(a.attr.cmp(&b.attr)));
        let _ = writeln!(
            out,
            "### {} ({} package{})\n",
            who.as_deref()
                .map_or("Unknown maintainers".to_owned(), person),
            pkgs.len(),
            if pkgs.len() == 1 { "" } else { "s" }
        );
        let _ = writeln!(
            out,
            "| package | platforms | failing for | next step | Hydra |"
        );
        let _ = writeln!(out, "| --- | --- | ---: | --- | --- |");
        for p in pkgs.iter().take(cap) {
            let _ = writeln!(
                out,
                "| {} | {} | {} days | {} | {} |",
                code(&p.attr),
                p.systems
                    .iter()
                    .map(|s| code(s))
                    .collect::<Vec<_>>()
                    .join(" "),
                (now - p.since) / DAY,
                p.status,
                p.hydra
                    .as_ref()
                    .map(|u| format!("[job]({u})"))
                    .unwrap_or_default()
            );
        }
        more(out, pkgs.len().min(cap), pkgs.len(), "packages");
        let _ = writeln!(out);
    }
    if shown_sections < sections.len() {
        let rest: usize = sections[shown_sections..]
            .iter()
            .map(|(_, p)| p.len())
            .sum();
        let _ = writeln!(
            out,
            "…and {} more maintainers with {rest} package lines (summarised to fit GitHub's limit).\n",
            sections.len() - shown_sections
        );
    }
}

/// How to stop the bot for a package.
fn footer(out: &mut String, input: &DigestInput<'_>) {
    let _ = writeln!(
        out,
        "---\nTo stop hydra-sentinel for a package: fix the build, put {} in its file, label our issue or PR {}, or close our PR.",
        code(&input.policy.opt_out.marker),
        code(&input.policy.opt_out.label)
    );
}

fn in_week(rfc3339: &str, start: i64, end: i64) -> bool {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| (start..end).contains(&t.timestamp()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_become_inert_code() {
        assert_eq!(code("@everyone"), "`@everyone`");
        assert_eq!(code("x](http://evil.example)"), "`x](http://evil.example)`");
        assert_eq!(code("a|b"), "`a\\|b`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x"), "`` `x ``");
        assert_eq!(code("line\nbreak"), "`linebreak`");
    }

    #[test]
    fn maintainers_are_links_not_mentions() {
        assert_eq!(person("alice"), "[alice](https://github.com/alice)");
        assert_eq!(person("@evil"), "`@evil`");
        assert_eq!(person("a b"), "`a b`");
    }

    #[test]
    fn iso_weeks_start_on_monday_utc() {
        let w = Week::parse("2025-W46").unwrap();
        assert_eq!(time(w.start()), "2025-11-10T00:00:00Z");
        assert_eq!(Week::containing(w.start() + 3 * DAY), w);
        assert!(Week::parse("2025-46").is_err());
        assert!(Week::parse("2025-W54").is_err());
        assert_eq!(w.to_string(), "2025-W46");
    }
}
