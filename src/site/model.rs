//! From the engine's conclusions to plain values the templates print: no
//! markup here, and nothing the templates could mistake for markup (they
//! escape every string; hrefs are our own file names or Hydra and GitHub
//! links built from validated parts).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::names::page_file;
use crate::format::{HydraLinks, time};
use crate::policy::engine::{AttrAssessment, JobAssessment, Rule, cutoff};
use crate::policy::explain::rule_words;
use crate::policy::facts::{JobFacts, JobsetFacts};
use crate::policy::plan::{Action, Deferred};
use crate::policy::{Assessment, Facts, Plan, Policy};

/// History strips show at most this many evals (the newest).
pub const MAX_CELLS: usize = 90;

const DAY: i64 = 86_400;

fn day(unix: i64) -> String {
    time(unix)[..10].to_owned()
}

/// The page of an attribute, relative to the top of the site.
pub fn package_href(attr: &str) -> String {
    format!("packages/{}", page_file(attr))
}

/// The page of a maintainer, relative to the top of the site.
pub fn maintainer_href(login: &str) -> String {
    format!("maintainers/{}", page_file(login))
}

/// Packages without known maintainers.
pub const UNKNOWN_MAINTAINERS: &str = "maintainers/unknown.html";

#[derive(Debug, Clone, Serialize)]
pub struct Link {
    pub text: String,
    pub href: String,
}

/// What happens next to a package, and when.
#[derive(Debug, Clone, Serialize)]
pub struct Next {
    pub what: String,
    /// YYYY-MM-DD, when there is a date.
    pub date: Option<String>,
    /// Due now (in this plan), not later.
    pub due: bool,
}

/// One failing package in a table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub attr: String,
    pub href: String,
    /// Systems with an own failure, sorted.
    pub systems: Vec<String>,
    pub platforms: usize,
    pub since: String,
    #[serde(skip)]
    pub since_ts: i64,
    pub age_days: i64,
    /// Distinct packages failing because this one does.
    pub blast_radius: usize,
    pub maintainers: Vec<Link>,
    pub next: Next,
    /// The newest failing build's log, per failing system.
    pub logs: Vec<Link>,
}

/// One eval in a history strip.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// `ok`, `failing`, `dependency_failed`, `noise`, `pending` or `absent`.
    pub class: &'static str,
    pub href: String,
    pub title: String,
}

/// One job (jobset × system) of a package.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub jobset: String,
    pub system: String,
    /// The class of its newest build.
    pub class: &'static str,
    pub gone: bool,
    /// The rule that applies, in the words of `explain`.
    pub rule: String,
    /// The streak in words, when it is not a success.
    pub streak: Option<String>,
    pub last_good: Option<Link>,
    pub compare: Option<String>,
    pub first_failure: Option<String>,
    pub job_url: String,
    pub latest_build: Link,
    pub log: String,
    pub cells: Vec<Cell>,
    /// Older evals left out of the strip.
    pub hidden: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActionView {
    pub kind: String,
    pub systems: String,
    pub reason: String,
    /// For an action held back: why.
    pub why: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PackagePage {
    pub attr: String,
    pub maintainers: Vec<Link>,
    pub notes: Vec<String>,
    pub next: Next,
    pub actions: Vec<ActionView>,
    pub jobs: Vec<JobView>,
    /// Packages failing because this one does.
    pub victims: Vec<Link>,
    /// Packages this one's dependency failures are charged to.
    pub roots: Vec<Link>,
    /// Possible roots when none is evident.
    pub candidates: Vec<Link>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RootRow {
    pub root: Link,
    pub systems: Vec<String>,
    pub victim_jobs: u32,
    pub victims: Vec<Link>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MaintainerRow {
    pub login: String,
    pub href: String,
    pub packages: usize,
    pub profile: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MaintainerPage {
    pub login: String,
    pub profile: Option<String>,
    pub rows: Vec<Row>,
}

/// Everything the site shows.
#[derive(Debug, Clone, Serialize)]
pub struct Model {
    /// What the results are from: each jobset's newest eval stored at the
    /// moment described, with its time. Not the render clock: a page
    /// changes only when what it shows does, so it is written only then
    /// (see `write.rs`).
    pub results: String,
    /// The day the next steps were planned for (YYYY-MM-DD, UTC): a page
    /// a day old says so even when no eval came.
    pub planned: String,
    pub policy: String,
    pub hydra: String,
    /// A mass breakage holds every per-package action.
    pub hold: Option<String>,
    pub rows: Vec<Row>,
    pub packages: BTreeMap<String, PackagePage>,
    pub roots: Vec<RootRow>,
    pub maintainers: Vec<MaintainerRow>,
    pub maintainer_pages: Vec<MaintainerPage>,
    pub unknown: Vec<Row>,
}

/// A GitHub profile link, only for a plausible login.
fn profile(login: &str) -> Option<String> {
    let valid = !login.is_empty()
        && login.len() <= 39
        && !login.starts_with('-')
        && login.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    valid.then(|| format!("https://github.com/{login}"))
}

/// Jobs with an own failure the ladder looks at (as the digest counts them).
fn failing_jobs(a: &AttrAssessment) -> Vec<&JobAssessment> {
    a.jobs
        .iter()
        .filter(|j| {
            matches!(
                j.rule,
                Rule::Ladder(_) | Rule::NotYetReal { .. } | Rule::Skipped { .. }
            )
        })
        .collect()
}

fn step_words(kind: &str, step: Option<&str>) -> String {
    match step {
        Some(s) => format!("{} ({s})", kind.replace('_', " ")),
        None => kind.replace('_', " "),
    }
}

/// The plan's actions and held-back actions by attribute, in plan order:
/// looked up per package, not searched (a first enable plans a notice for
/// each of 12,000 packages).
struct Planned<'p> {
    actions: HashMap<&'p str, Vec<&'p Action>>,
    deferred: HashMap<&'p str, Vec<&'p Deferred>>,
}

impl<'p> Planned<'p> {
    fn of(plan: &'p Plan) -> Planned<'p> {
        let mut actions: HashMap<&str, Vec<&Action>> = HashMap::new();
        for x in &plan.actions {
            if let Some(attr) = &x.attr {
                actions.entry(attr).or_default().push(x);
            }
        }
        let mut deferred: HashMap<&str, Vec<&Deferred>> = HashMap::new();
        for d in &plan.deferred {
            if let Some(attr) = &d.action.attr {
                deferred.entry(attr).or_default().push(d);
            }
        }
        Planned { actions, deferred }
    }

    fn actions(&self, attr: &str) -> &[&'p Action] {
        self.actions.get(attr).map_or(&[], Vec::as_slice)
    }

    fn deferred(&self, attr: &str) -> &[&'p Deferred] {
        self.deferred.get(attr).map_or(&[], Vec::as_slice)
    }
}

pub struct Builder<'a> {
    pub policy: &'a Policy,
    pub facts: &'a Facts,
    pub assessment: &'a Assessment,
    pub plan: &'a Plan,
}

impl Builder<'_> {
    fn next(&self, a: &AttrAssessment, failing: &[&JobAssessment], planned: &Planned) -> Next {
        let now = self.assessment.now;
        let today = Some(day(now));
        let due: Vec<String> = planned
            .actions(&a.attr)
            .iter()
            .map(|x| step_words(x.kind.as_str(), x.step.as_deref()))
            .collect();
        let deferred: Vec<String> = planned
            .deferred(&a.attr)
            .iter()
            .map(|d| {
                format!(
                    "{}, held back: {}",
                    step_words(d.action.kind.as_str(), d.action.step.as_deref()),
                    d.why
                )
            })
            .collect();
        let (what, date, due) = if let Some(o) = &a.opted_out {
            (
                format!("nothing: opted out ({})", o.kind.as_str()),
                None,
                false,
            )
        } else if let Some(u) = a.snoozed_until {
            ("snoozed until then".to_owned(), Some(day(u)), false)
        } else if !due.is_empty() {
            (due.join("; "), today, true)
        } else if !deferred.is_empty() {
            (deferred.join("; "), today, true)
        } else if !failing.is_empty()
            && failing
                .iter()
                .all(|j| matches!(j.rule, Rule::Skipped { .. }))
        {
            ("nothing: left alone by the policy".to_owned(), None, false)
        } else if let Some(n) = &a.next {
            (
                step_words(n.kind.as_str(), n.step.as_deref()),
                Some(n.at[..10].to_owned()),
                false,
            )
        } else if failing
            .iter()
            .any(|j| matches!(&j.rule, Rule::Ladder(s) if s.mark.is_some()))
        {
            (
                "nothing until the proposed mark is decided".to_owned(),
                None,
                false,
            )
        } else if a.protected && !failing.is_empty() {
            ("nothing: protected, escalated".to_owned(), None, false)
        } else if !failing.is_empty() {
            (
                "waiting for a failure on a rebuilt derivation".to_owned(),
                None,
                false,
            )
        } else {
            ("nothing is scheduled".to_owned(), None, false)
        };
        Next { what, date, due }
    }

    fn maintainer_links(&self, a: &AttrAssessment) -> Vec<Link> {
        a.maintainers
            .iter()
            .map(|m| Link {
                text: m.clone(),
                href: maintainer_href(m),
            })
            .collect()
    }

    fn row(&self, a: &AttrAssessment, failing: &[&JobAssessment], planned: &Planned) -> Row {
        let links = HydraLinks::new(&self.facts.hydra_url);
        let now = self.assessment.now;
        let since_ts = failing
            .iter()
            .filter_map(|j| j.since_ts())
            .min()
            .unwrap_or(now);
        let systems: BTreeSet<String> = failing.iter().map(|j| j.system.clone()).collect();
        let mut logs: BTreeMap<&str, i64> = BTreeMap::new();
        for j in failing {
            logs.entry(j.system.as_str()).or_insert(j.latest_build);
        }
        Row {
            attr: a.attr.clone(),
            href: package_href(&a.attr),
            platforms: systems.len(),
            systems: systems.into_iter().collect(),
            since: day(since_ts),
            since_ts,
            // Calendar days, as the date beside it reads: the count changes
            // at midnight, not at a different moment of the day for each
            // package (which would rewrite the index every cycle).
            age_days: (now.div_euclid(DAY) - since_ts.div_euclid(DAY)).max(0),
            blast_radius: a.victims.len(),
            maintainers: self.maintainer_links(a),
            next: self.next(a, failing, planned),
            logs: logs
                .into_iter()
                .map(|(system, build)| Link {
                    text: system.to_owned(),
                    href: links.log(build),
                })
                .collect(),
        }
    }

    fn cells(&self, js: &JobsetFacts, job: &JobFacts, cut: u32) -> (Vec<Cell>, usize) {
        let links = HydraLinks::new(&self.facts.hydra_url);
        let last = cut as usize;
        let first = (last + 1).saturating_sub(MAX_CELLS);
        let mut runs = job.runs.iter().peekable();
        let mut cells = Vec::with_capacity(last + 1 - first);
        for (i, eval) in js.evals.iter().enumerate().take(last + 1).skip(first) {
            let i = i as u32;
            while runs.peek().is_some_and(|r| r.last < i) {
                runs.next();
            }
            let run = runs.peek().filter(|r| r.first <= i && i <= r.last);
            let when = time(eval.timestamp);
            cells.push(match run {
                Some(r) => {
                    let class = r.class().as_str();
                    let status = r
                        .status
                        .filter(|s| *s != 0)
                        .map(|s| format!(", status {s}"))
                        .unwrap_or_default();
                    Cell {
                        class,
                        href: links.build(r.build),
                        title: format!(
                            "eval {} at {}: {}{status}, build {}",
                            eval.id,
                            &when[..16].replace('T', " "),
                            class.replace('_', " "),
                            r.build
                        ),
                    }
                }
                None => Cell {
                    class: "absent",
                    href: links.eval(eval.id),
                    title: format!(
                        "eval {} at {}: not in this eval",
                        eval.id,
                        &when[..16].replace('T', " ")
                    ),
                },
            });
        }
        (cells, first)
    }

    fn job_view(
        &self,
        js: &JobsetFacts,
        job: &JobFacts,
        cut: u32,
        assessed: Option<&JobAssessment>,
    ) -> Option<JobView> {
        let links = HydraLinks::new(&self.facts.hydra_url);
        let n = job.runs.partition_point(|r| r.first <= cut);
        let newest = job.runs[..n].last()?;
        let (cells, hidden) = self.cells(js, job, cut);
        let evidence = assessed
            .and_then(|j| j.evidence.as_ref())
            .filter(|e| e.class != "ok");
        Some(JobView {
            jobset: js.jobset.to_string(),
            system: job.system.clone(),
            class: newest.class().as_str(),
            gone: newest.last < cut,
            rule: rule_words(self.policy, assessed.map(|j| &j.rule)),
            streak: evidence.map(|e| {
                format!(
                    "{} since {} (eval {}), {} eval{}, {}",
                    e.class.replace('_', " "),
                    &e.since.time[..10],
                    e.since.id,
                    e.evals,
                    if e.evals == 1 { "" } else { "s" },
                    e.derivations_in_words()
                )
            }),
            last_good: evidence.and_then(|e| {
                e.last_good.as_ref().map(|g| Link {
                    text: format!("eval {} on {}", g.eval.id, &g.eval.time[..10]),
                    href: g.build.clone(),
                })
            }),
            compare: evidence.and_then(|e| e.compare.clone()),
            first_failure: evidence.map(|e| e.first_build.clone()),
            job_url: links.job(&js.jobset.project, &js.jobset.jobset, &job.hydra_job()),
            latest_build: Link {
                text: format!("build {}", newest.build),
                href: links.build(newest.build),
            },
            log: links.log(newest.build),
            cells,
            hidden,
        })
    }

    fn package(
        &self,
        a: &AttrAssessment,
        jobs: &[(&JobsetFacts, &JobFacts)],
        paged: &BTreeSet<&str>,
        planned: &Planned,
    ) -> PackagePage {
        let link = |attr: &str| Link {
            text: attr.to_owned(),
            href: if paged.contains(attr) {
                package_href(attr)
            } else {
                String::new()
            },
        };
        let mut views = Vec::new();
        for (js, job) in jobs {
            let Some(cut) = cutoff(js, self.assessment.now) else {
                continue;
            };
            let assessed = a
                .jobs
                .iter()
                .find(|j| j.jobset == js.jobset && j.system == job.system);
            views.extend(self.job_view(js, job, cut, assessed));
        }
        let mut roots = BTreeSet::new();
        let mut candidates = BTreeSet::new();
        for j in &a.jobs {
            if let Rule::Victim {
                root,
                candidates: c,
                ..
            } = &j.rule
            {
                match root {
                    Some(r) => {
                        roots.insert(r.as_str());
                    }
                    None => candidates.extend(c.iter().map(String::as_str)),
                }
            }
        }
        let mut notes = Vec::new();
        if a.protected {
            notes.push(format!(
                "Protected: never marked broken; a long failure is escalated to {}.",
                self.policy.protected.escalate_to.join(", ")
            ));
        }
        if let Some(o) = &a.opted_out {
            notes.push(format!(
                "Opted out by {} ({}) on {}: nothing will be done.",
                o.kind.as_str(),
                o.note,
                day(o.recorded_at)
            ));
        }
        if let Some(u) = a.snoozed_until {
            notes.push(format!(
                "Snoozed until {}: the clock is paused until then.",
                day(u)
            ));
        }
        if let Some(m) = &a.marked {
            notes.push(format!(
                "Marked broken on {} ({}){}.",
                m.closed_at.map(day).unwrap_or_default(),
                crate::policy::plan::platforms_in_words(m.all_platforms, &m.systems),
                m.pr.map(|p| format!(", PR #{p}")).unwrap_or_default()
            ));
        }
        let systems = |x: &Action| {
            if x.all_platforms {
                "all platforms".to_owned()
            } else {
                x.systems.join(", ")
            }
        };
        let mut actions: Vec<ActionView> = planned
            .actions(&a.attr)
            .iter()
            .map(|x| ActionView {
                kind: step_words(x.kind.as_str(), x.step.as_deref()),
                systems: systems(x),
                reason: x.reason.clone(),
                why: None,
            })
            .collect();
        actions.extend(planned.deferred(&a.attr).iter().map(|d| ActionView {
            kind: step_words(d.action.kind.as_str(), d.action.step.as_deref()),
            systems: systems(&d.action),
            reason: d.action.reason.clone(),
            why: Some(d.why.clone()),
        }));
        PackagePage {
            attr: a.attr.clone(),
            maintainers: self.maintainer_links(a),
            notes,
            next: self.next(a, &failing_jobs(a), planned),
            actions,
            jobs: views,
            victims: a.victims.iter().map(|v| link(v)).collect(),
            roots: roots.into_iter().map(link).collect(),
            candidates: candidates.into_iter().map(link).collect(),
        }
    }

    /// Each jobset's newest eval at or before the moment described, in
    /// words, in the configured order: with trunk and a staging branch, a
    /// reader sees how fresh each is (the newest of all alone would hide a
    /// jobset Hydra stopped evaluating).
    fn results(&self) -> String {
        let newest: Vec<String> = self
            .facts
            .jobsets
            .iter()
            .filter_map(|js| {
                let eval = &js.evals[cutoff(js, self.assessment.now)? as usize];
                Some(format!(
                    "eval {} of {} ({})",
                    eval.id,
                    js.jobset,
                    time(eval.timestamp)
                ))
            })
            .collect();
        if newest.is_empty() {
            "no eval yet".to_owned()
        } else {
            newest.join("; ")
        }
    }

    pub fn build(&self) -> Model {
        let a = self.assessment;
        let mut by_attr: HashMap<&str, Vec<(&JobsetFacts, &JobFacts)>> = HashMap::new();
        for js in &self.facts.jobsets {
            for job in &js.jobs {
                if a.attrs.contains_key(&job.attr) {
                    by_attr.entry(&job.attr).or_default().push((js, job));
                }
            }
        }
        // A page for each package the index or the roots page lists, or
        // the plan or the ledger concerns; not for every victim (a big
        // breakage has thousands, each listed with its root instead).
        let planned: BTreeSet<&str> = self
            .plan
            .actions
            .iter()
            .chain(self.plan.deferred.iter().map(|d| &d.action))
            .filter_map(|x| x.attr.as_deref())
            .collect();
        let paged: BTreeSet<&str> = a
            .attrs
            .values()
            .filter(|x| {
                !failing_jobs(x).is_empty()
                    || x.marked.is_some()
                    || x.opted_out.is_some()
                    || x.snoozed_until.is_some()
                    || !x.victims.is_empty()
                    || planned.contains(x.attr.as_str())
            })
            .map(|x| x.attr.as_str())
            .chain(a.roots.iter().map(|r| r.attr.as_str()))
            .collect();
        let planned = Planned::of(self.plan);
        let mut rows = Vec::new();
        let mut packages = BTreeMap::new();
        for (attr, assessed) in &a.attrs {
            let failing = failing_jobs(assessed);
            if !failing.is_empty() {
                rows.push(self.row(assessed, &failing, &planned));
            }
            if paged.contains(attr.as_str()) {
                let jobs = by_attr.get(attr.as_str()).map_or(&[][..], Vec::as_slice);
                packages.insert(attr.clone(), self.package(assessed, jobs, &paged, &planned));
            }
        }
        rows.sort_by(|x, y| (x.since_ts, &x.attr).cmp(&(y.since_ts, &y.attr)));

        let link = |attr: &str| Link {
            text: attr.to_owned(),
            href: if paged.contains(attr) {
                package_href(attr)
            } else {
                String::new()
            },
        };
        let mut roots: Vec<RootRow> = a
            .roots
            .iter()
            .map(|r| RootRow {
                root: link(&r.attr),
                systems: r.systems.clone(),
                victim_jobs: r.victim_jobs,
                victims: r.victims.iter().map(|v| link(v)).collect(),
            })
            .collect();
        roots.sort_by(|x, y| {
            (y.victim_jobs, y.victims.len(), &x.root.text).cmp(&(
                x.victim_jobs,
                x.victims.len(),
                &y.root.text,
            ))
        });

        let mut by_login: BTreeMap<&str, Vec<Row>> = BTreeMap::new();
        let mut unknown = Vec::new();
        for row in &rows {
            let maintainers = a.attrs.get(&row.attr).map(|x| &x.maintainers);
            match maintainers {
                Some(m) if !m.is_empty() => {
                    for login in m {
                        by_login.entry(login).or_default().push(row.clone());
                    }
                }
                _ => unknown.push(row.clone()),
            }
        }
        let maintainers = by_login
            .iter()
            .map(|(login, rows)| MaintainerRow {
                login: (*login).to_owned(),
                href: maintainer_href(login),
                packages: rows.len(),
                profile: profile(login),
            })
            .collect();
        let maintainer_pages = by_login
            .into_iter()
            .map(|(login, rows)| MaintainerPage {
                login: login.to_owned(),
                profile: profile(login),
                rows,
            })
            .collect();
        Model {
            results: self.results(),
            planned: day(a.now),
            policy: self.policy.source.clone(),
            hydra: self.facts.hydra_url.to_string(),
            hold: a.holds.first().map(|h| {
                format!(
                    "Mass breakage in {} (evals {} to {}): nothing is marked until it clears.",
                    h.jobset, h.window.first.id, h.window.last.id
                )
            }),
            rows,
            packages,
            roots,
            maintainers,
            maintainer_pages,
            unknown,
        }
    }
}
