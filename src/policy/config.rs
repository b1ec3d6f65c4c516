//! The policy file: raw TOML (unknown keys refused) validated once into
//! typed values — periods, compiled globs, status sets — with errors that
//! name the file, line and column.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use toml::Spanned;

use crate::config::{JobsetRef, line_column, toml_error_place};
use crate::history::job_name::is_plausible_system;
pub use crate::history::{FailureStatus, StreakRules};

/// The production policy for hydra.nixos.org, built into the binary.
pub const NIXPKGS_POLICY: &str = include_str!("../../policies/nixpkgs.toml");

/// A length of time, in whole seconds. Written in policy files as an integer
/// and a unit: `90m`, `12h`, `3d`, `8w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period(i64);

impl Period {
    pub const ZERO: Period = Period(0);

    pub fn from_secs(secs: i64) -> Period {
        Period(secs)
    }

    pub fn days(days: i64) -> Period {
        Period(days * 86_400)
    }

    pub fn secs(self) -> i64 {
        self.0
    }

    /// Parse `<integer><unit>` with unit `s`, `m`, `h`, `d` or `w`.
    pub fn parse(text: &str) -> Result<Period, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("{text:?} has no unit: write e.g. \"3d\" or \"12h\""))?;
        let (number, unit) = text.split_at(split);
        let n: i64 = number
            .parse()
            .map_err(|_| format!("{text:?} does not start with a whole number"))?;
        let scale = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => {
                return Err(format!(
                    "{text:?}: unknown unit {unit:?} (use s, m, h, d or w)"
                ));
            }
        };
        n.checked_mul(scale)
            .filter(|s| *s <= 100 * 365 * 86_400)
            .map(Period)
            .ok_or_else(|| format!("{text:?} is longer than a century"))
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        for (unit, scale) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
            if s != 0 && s % scale == 0 {
                return write!(f, "{}{unit}", s / scale);
            }
        }
        write!(f, "{s}s")
    }
}

/// How actions are grouped into pull requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// One PR per attribute.
    Attr,
    /// One PR per first maintainer (by login order); attributes without
    /// known maintainers fall back to their package set.
    Maintainer,
    /// One PR per package set (`python3Packages`, `haskellPackages`, or the
    /// attribute itself at the top level).
    PackageSet,
}

/// The ladder of one attribute on one system: when each step comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ladder {
    /// Never act on it (listed in the digest only).
    pub skip: bool,
    /// Streak age at which maintainers are first told.
    pub notify_after: Period,
    /// Reminders, each this long before the mark deadline.
    pub remind_before_mark: Vec<Period>,
    /// Streak age at which a mark-broken PR may be opened.
    pub mark_broken_after: Period,
    /// Time between the first notice and a mark, at least.
    pub min_notice: Period,
    /// Distinct failing derivations needed before marking: a failure that
    /// Hydra reproduced on a rebuilt derivation, not one cached result.
    pub mark_min_derivations: u32,
    /// How long a package stays marked broken before it is retired to the
    /// attic; `None`: never.
    pub retire_after_broken: Option<Period>,
    /// Warning before retiring.
    pub retire_notice: Period,
}

/// Part of a ladder replaced for matching attributes or systems.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LadderPatch {
    pub skip: Option<bool>,
    pub notify_after: Option<Period>,
    pub remind_before_mark: Option<Vec<Period>>,
    pub mark_broken_after: Option<Period>,
    pub min_notice: Option<Period>,
    pub mark_min_derivations: Option<u32>,
    pub retire_after_broken: Option<Option<Period>>,
    pub retire_notice: Option<Period>,
}

impl LadderPatch {
    fn apply(&self, ladder: &mut Ladder) {
        if let Some(v) = self.skip {
            ladder.skip = v;
        }
        if let Some(v) = self.notify_after {
            ladder.notify_after = v;
        }
        if let Some(v) = &self.remind_before_mark {
            ladder.remind_before_mark = v.clone();
        }
        if let Some(v) = self.mark_broken_after {
            ladder.mark_broken_after = v;
        }
        if let Some(v) = self.min_notice {
            ladder.min_notice = v;
        }
        if let Some(v) = self.mark_min_derivations {
            ladder.mark_min_derivations = v;
        }
        if let Some(v) = self.retire_after_broken {
            ladder.retire_after_broken = v;
        }
        if let Some(v) = self.retire_notice {
            ladder.retire_notice = v;
        }
    }
}

/// A compiled list of attribute globs (`haskellPackages.*`, `linux_*`).
#[derive(Debug, Clone)]
pub struct AttrGlobs {
    patterns: Vec<String>,
    set: GlobSet,
}

impl AttrGlobs {
    pub fn is_match(&self, attr: &str) -> bool {
        self.set.is_match(attr)
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    fn empty() -> AttrGlobs {
        AttrGlobs {
            patterns: Vec::new(),
            set: GlobSet::empty(),
        }
    }
}

/// A ladder change for some attributes and/or systems.
#[derive(Debug, Clone)]
pub struct Override {
    /// Position in the file, 1-based, for explanations.
    pub index: usize,
    /// Why, in words (shown by `explain`).
    pub reason: String,
    /// Matching attributes; `None`: all.
    pub attrs: Option<AttrGlobs>,
    /// Matching systems; `None`: all.
    pub systems: Option<BTreeSet<String>>,
    pub patch: LadderPatch,
}

impl Override {
    pub fn matches(&self, attr: &str, system: &str) -> bool {
        self.attrs.as_ref().is_none_or(|g| g.is_match(attr))
            && self.systems.as_ref().is_none_or(|s| s.contains(system))
    }

    /// A short name: `override 2 (haskellPackages.*)`.
    pub fn describe(&self) -> String {
        let mut what = Vec::new();
        if let Some(a) = &self.attrs {
            what.push(a.patterns().join(", "));
        }
        if let Some(s) = &self.systems {
            what.push(s.iter().cloned().collect::<Vec<_>>().join(", "));
        }
        format!("override {} ({})", self.index, what.join("; "))
    }
}

#[derive(Debug, Clone)]
pub struct Protected {
    pub attrs: AttrGlobs,
    /// GitHub users or teams an escalation names (without `@`).
    pub escalate_to: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct OptOutRules {
    /// The comment that, in a package file, stops marking and retiring.
    pub marker: String,
    /// The label that, on our PR or issue, does the same.
    pub label: String,
    /// A snooze never lasts longer than this from when it was asked for.
    pub max_snooze: Period,
}

#[derive(Debug, Clone)]
pub struct Limits {
    /// Pull requests opened per rolling 24 hours.
    pub prs_per_day: u32,
    /// Pull requests of ours open at once.
    pub open_prs: u32,
    /// Notices and reminders naming one maintainer per rolling 7 days.
    pub pings_per_maintainer_per_week: u32,
    /// Notices, reminders and escalations posted per rolling 24 hours in
    /// all: the ceiling that also holds for packages without maintainers,
    /// and the ramp-up of a first enable with a backlog of overdue notices.
    pub posts_per_day: u32,
}

#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    /// Consecutive evaluations that make one window.
    pub window_evals: u32,
    /// Both must be reached among the jobs that turned from ok to failing
    /// (own or dependency) in one window and are still failing: a count
    /// and a share of the jobset's jobs.
    pub min_jobs: u32,
    pub min_share: f64,
}

#[derive(Debug, Clone)]
pub struct Batching {
    pub group_by: GroupBy,
    pub max_attrs_per_pr: u32,
}

#[derive(Debug, Clone)]
pub struct BacktestRules {
    /// A mark is a false positive when the job builds again within this long.
    pub false_positive_within: Period,
    /// How long a replayed mark-broken PR takes to be merged.
    pub assumed_merge_delay: Period,
}

/// Early warnings: failures on pre-merge branches (staging-next,
/// python-updates) told to maintainers before the branch lands on trunk.
#[derive(Debug, Clone)]
pub struct EarlyWarning {
    /// The jobset the branches merge into; one of `scope.act_on`.
    pub trunk: JobsetRef,
    /// Pre-merge jobsets, in file order.
    pub branches: Vec<JobsetRef>,
    /// A job's own failure on a branch is worth a warning once seen in this
    /// many evals of the branch...
    pub min_evals: u32,
    /// ...or on this many distinct derivations.
    pub min_derivations: u32,
    pub overrides: Vec<WarningOverride>,
}

/// Leave some branches and/or attributes out of early warnings.
#[derive(Debug, Clone)]
pub struct WarningOverride {
    /// Position among `[[early_warning.override]]`, 1-based.
    pub index: usize,
    pub reason: String,
    /// Matching branches; `None`: all.
    pub branches: Option<Vec<JobsetRef>>,
    /// Matching attributes; `None`: all.
    pub attrs: Option<AttrGlobs>,
}

impl WarningOverride {
    pub fn matches(&self, branch: &JobsetRef, attr: &str) -> bool {
        self.branches.as_ref().is_none_or(|b| b.contains(branch))
            && self.attrs.as_ref().is_none_or(|g| g.is_match(attr))
    }
}

impl EarlyWarning {
    /// Whether `jobset` is a pre-merge branch.
    pub fn is_branch(&self, jobset: &JobsetRef) -> bool {
        self.branches.contains(jobset)
    }

    /// Whether a branch is switched off as a whole (an override naming it
    /// and no attributes).
    pub fn branch_off(&self, branch: &JobsetRef) -> Option<&WarningOverride> {
        self.overrides
            .iter()
            .find(|o| o.attrs.is_none() && o.matches(branch, ""))
    }

    /// The first override that leaves `attr` on `branch` out, if any.
    pub fn skipped(&self, branch: &JobsetRef, attr: &str) -> Option<&WarningOverride> {
        self.overrides.iter().find(|o| o.matches(branch, attr))
    }
}

/// The validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Where it came from, for messages.
    pub source: String,
    /// Jobsets whose failures lead to actions; other jobsets are only shown
    /// in the digest. When two of them have the same attribute on the same
    /// system, the first listed wins.
    pub act_on: Vec<JobsetRef>,
    pub streak: StreakRules,
    pub ladder: Ladder,
    pub overrides: Vec<Override>,
    pub protected: Protected,
    pub opt_out: OptOutRules,
    pub limits: Limits,
    pub breaker: CircuitBreaker,
    pub batch: Batching,
    pub backtest: BacktestRules,
    pub early_warning: EarlyWarning,
}

/// The ladder that applies, and the overrides that shaped it.
#[derive(Debug, Clone)]
pub struct EffectiveLadder {
    pub ladder: Ladder,
    /// 1-based indexes of the overrides that matched, in order.
    pub overrides: Vec<usize>,
}

impl Policy {
    /// The ladder of `attr` on `system`: the defaults, then every matching
    /// override in file order (later ones win field by field).
    pub fn ladder_for(&self, attr: &str, system: &str) -> EffectiveLadder {
        let mut ladder = self.ladder.clone();
        let mut overrides = Vec::new();
        for o in &self.overrides {
            if o.matches(attr, system) {
                o.patch.apply(&mut ladder);
                overrides.push(o.index);
            }
        }
        EffectiveLadder { ladder, overrides }
    }

    pub fn is_protected(&self, attr: &str) -> bool {
        self.protected.attrs.is_match(attr)
    }

    pub fn acts_on(&self, jobset: &JobsetRef) -> bool {
        self.act_on.contains(jobset)
    }

    /// The built-in production policy.
    pub fn nixpkgs() -> Policy {
        Policy::parse(
            NIXPKGS_POLICY,
            Path::new("<built-in policies/nixpkgs.toml>"),
        )
        .expect("the built-in policy is valid (tested)")
    }

    /// Parse and validate policy text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            let (line, column, message) = toml_error_place(text, &e);
            PolicyError::Syntax {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        })?;
        Validator { text, path }.policy(raw)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Not TOML, or not the shape of a policy (an unknown key, a value of
    /// the wrong type); `message` is toml's own, without its excerpt.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

struct Validator<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Validator<'_> {
    fn err(&self, span: Range<usize>, message: String) -> PolicyError {
        let (line, column) = line_column(self.text, span.start);
        PolicyError::Invalid {
            path: self.path.to_owned(),
            line,
            column,
            message,
        }
    }

    fn period(&self, key: &str, raw: &Spanned<String>) -> Result<Period, PolicyError> {
        Period::parse(raw.get_ref()).map_err(|m| self.err(raw.span(), format!("{key}: {m}")))
    }

    fn periods(&self, key: &str, raw: &[Spanned<String>]) -> Result<Vec<Period>, PolicyError> {
        let mut out = raw
            .iter()
            .map(|r| self.period(key, r))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| b.cmp(a));
        out.dedup();
        Ok(out)
    }

    fn retire(&self, raw: &Spanned<String>) -> Result<Option<Period>, PolicyError> {
        if raw.get_ref() == "never" {
            return Ok(None);
        }
        self.period("retire_after_broken", raw).map(Some)
    }

    fn globs(&self, key: &str, raw: &[Spanned<String>]) -> Result<AttrGlobs, PolicyError> {
        if raw.is_empty() {
            return Ok(AttrGlobs::empty());
        }
        let mut builder = GlobSetBuilder::new();
        let mut patterns = Vec::new();
        for pattern in raw {
            let p = pattern.get_ref();
            let valid_chars = p.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '\'' | '.' | '*' | '?')
            });
            if p.is_empty() || !valid_chars {
                return Err(self.err(
                    pattern.span(),
                    format!(
                        "{key}: {p:?} is not an attribute glob (attribute path characters, `*` and `?` only)"
                    ),
                ));
            }
            let glob =
                Glob::new(p).map_err(|e| self.err(pattern.span(), format!("{key}: {p:?}: {e}")))?;
            builder.add(glob);
            patterns.push(p.clone());
        }
        let set = builder
            .build()
            .map_err(|e| self.err(raw[0].span(), format!("{key}: {e}")))?;
        Ok(AttrGlobs { patterns, set })
    }

    fn positive(&self, key: &str, raw: &Spanned<u32>) -> Result<u32, PolicyError> {
        match *raw.get_ref() {
            0 => Err(self.err(raw.span(), format!("{key} must be at least 1"))),
            n => Ok(n),
        }
    }

    fn patch(&self, raw: &RawLadderPatch) -> Result<LadderPatch, PolicyError> {
        Ok(LadderPatch {
            skip: raw.skip,
            notify_after: raw
                .notify_after
                .as_ref()
                .map(|r| self.period("notify_after", r))
                .transpose()?,
            remind_before_mark: raw
                .remind_before_mark
                .as_ref()
                .map(|r| self.periods("remind_before_mark", r))
                .transpose()?,
            mark_broken_after: raw
                .mark_broken_after
                .as_ref()
                .map(|r| self.period("mark_broken_after", r))
                .transpose()?,
            min_notice: raw
                .min_notice
                .as_ref()
                .map(|r| self.period("min_notice", r))
                .transpose()?,
            mark_min_derivations: raw
                .mark_min_derivations
                .as_ref()
                .map(|r| self.positive("mark_min_derivations", r))
                .transpose()?,
            retire_after_broken: raw
                .retire_after_broken
                .as_ref()
                .map(|r| self.retire(r))
                .transpose()?,
            retire_notice: raw
                .retire_notice
                .as_ref()
                .map(|r| self.period("retire_notice", r))
                .transpose()?,
        })
    }

    /// A ladder must be able to keep its promises: every reminder and the
    /// notice fit between notification and the mark.
    fn check_ladder(
        &self,
        ladder: &Ladder,
        span: Range<usize>,
        what: &str,
    ) -> Result<(), PolicyError> {
        if ladder.skip {
            return Ok(());
        }
        if ladder.mark_broken_after < ladder.notify_after {
            return Err(self.err(
                span,
                format!(
                    "{what}: mark_broken_after ({}) comes before notify_after ({}): nothing may be marked before its maintainers are told",
                    ladder.mark_broken_after, ladder.notify_after
                ),
            ));
        }
        if let Some(longest) = ladder.remind_before_mark.first()
            && *longest >= ladder.min_notice
        {
            return Err(self.err(
                span,
                format!(
                    "{what}: a reminder {longest} before the mark does not fit in min_notice ({}): it would come before the first notice",
                    ladder.min_notice
                ),
            ));
        }
        if let Some(retire) = ladder.retire_after_broken
            && ladder.retire_notice >= retire
        {
            return Err(self.err(
                span,
                format!(
                    "{what}: retire_notice ({}) must be shorter than retire_after_broken ({retire})",
                    ladder.retire_notice
                ),
            ));
        }
        Ok(())
    }

    fn jobset(&self, key: &str, js: &Spanned<String>) -> Result<JobsetRef, PolicyError> {
        js.get_ref()
            .split_once(':')
            .filter(|(p, j)| !p.is_empty() && !j.is_empty() && !j.contains(':'))
            .map(|(p, j)| JobsetRef {
                project: p.to_owned(),
                jobset: j.to_owned(),
            })
            .ok_or_else(|| {
                self.err(
                    js.span(),
                    format!(
                        "{key}: {:?} is not PROJECT:JOBSET (e.g. \"nixpkgs:trunk\")",
                        js.get_ref()
                    ),
                )
            })
    }

    fn early_warning(
        &self,
        raw: &RawEarlyWarning,
        act_on: &[JobsetRef],
    ) -> Result<EarlyWarning, PolicyError> {
        // Without a word in the file: the first acted-on jobset, and the
        // default branches that are not acted on themselves.
        let Some(raw_trunk) = &raw.trunk else {
            let Some(trunk) = act_on.first().cloned() else {
                return Ok(EarlyWarning {
                    trunk: JobsetRef {
                        project: "nixpkgs".into(),
                        jobset: "trunk".into(),
                    },
                    branches: Vec::new(),
                    min_evals: 2,
                    min_derivations: 2,
                    overrides: Vec::new(),
                });
            };
            let branches = raw.branches.clone().or_else(|| {
                Some(
                    DEFAULT_BRANCHES
                        .iter()
                        .filter(|b| !act_on.iter().any(|a| a.to_string() == **b))
                        .map(|b| s(b))
                        .collect(),
                )
            });
            let explicit = RawEarlyWarning {
                trunk: Some(s(&trunk.to_string())),
                branches,
                ..raw.clone()
            };
            return self.early_warning(&explicit, act_on);
        };
        let trunk = self.jobset("early_warning.trunk", raw_trunk)?;
        if !act_on.contains(&trunk) {
            return Err(self.err(
                raw_trunk.span(),
                format!(
                    "early_warning.trunk: {trunk} is not in scope.act_on: a warning is handed over to the trunk's ladder when the branch lands, so the trunk must be acted on"
                ),
            ));
        }
        let mut branches = Vec::new();
        let default_branches: Vec<Spanned<String>>;
        let raw_branches = match &raw.branches {
            Some(b) => b,
            None => {
                default_branches = DEFAULT_BRANCHES.iter().map(|b| s(b)).collect();
                &default_branches
            }
        };
        for b in raw_branches {
            let parsed = self.jobset("early_warning.branches", b)?;
            if parsed == trunk || act_on.contains(&parsed) {
                return Err(self.err(
                    b.span(),
                    format!(
                        "early_warning.branches: {parsed} is acted on (scope.act_on); a pre-merge branch is only warned about"
                    ),
                ));
            }
            if branches.contains(&parsed) {
                return Err(self.err(
                    b.span(),
                    format!("early_warning.branches lists {parsed} twice"),
                ));
            }
            branches.push(parsed);
        }
        let mut overrides = Vec::new();
        for (i, o) in raw.overrides.iter().enumerate() {
            let index = i + 1;
            let span = o.span();
            let o = o.get_ref();
            let attrs = match &o.attrs {
                Some(a) => Some(self.globs(&format!("early_warning.override {index} attrs"), a)?),
                None => None,
            };
            let branches = match &o.branches {
                Some(list) => Some(
                    list.iter()
                        .map(|b| {
                            self.jobset(&format!("early_warning.override {index} branches"), b)
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                None => None,
            };
            if attrs.is_none() && branches.is_none() {
                return Err(self.err(
                    span,
                    format!(
                        "early_warning.override {index} has neither branches nor attrs: it would switch every warning off; empty early_warning.branches instead"
                    ),
                ));
            }
            if !o.skip {
                return Err(self.err(
                    span,
                    format!("early_warning.override {index} changes nothing: set skip = true"),
                ));
            }
            overrides.push(WarningOverride {
                index,
                reason: o.reason.clone().unwrap_or_default(),
                branches,
                attrs,
            });
        }
        Ok(EarlyWarning {
            trunk,
            branches,
            min_evals: self.positive("early_warning.min_evals", &raw.min_evals)?,
            min_derivations: self
                .positive("early_warning.min_derivations", &raw.min_derivations)?,
            overrides,
        })
    }

    /// The whole policy, section by section in the file's order: the first
    /// error found is the one reported.
    fn policy(&self, raw: RawPolicy) -> Result<Policy, PolicyError> {
        let act_on = self.act_on(&raw.scope)?;
        let streak = self.streak(&raw.streak)?;
        let ladder = self.ladder(&raw.ladder)?;
        let overrides = self.overrides(&raw.overrides, &ladder)?;
        let protected = self.protected(&raw.protected)?;
        let opt_out = self.opt_out(&raw.opt_out)?;
        let limits = self.limits(&raw.limits)?;
        let breaker = self.breaker(&raw.circuit_breaker)?;
        let batch = self.batch(&raw.batch)?;
        let backtest = self.backtest(&raw.backtest)?;
        let early_warning = self.early_warning(&raw.early_warning, &act_on)?;
        Ok(Policy {
            source: self.path.display().to_string(),
            early_warning,
            act_on,
            streak,
            ladder,
            overrides,
            protected,
            opt_out,
            limits,
            breaker,
            batch,
            backtest,
        })
    }

    /// `[scope] act_on`: jobsets, each once.
    fn act_on(&self, raw: &RawScope) -> Result<Vec<JobsetRef>, PolicyError> {
        let mut act_on = Vec::new();
        for js in &raw.act_on {
            let parsed = self.jobset("scope.act_on", js)?;
            if act_on.contains(&parsed) {
                return Err(self.err(js.span(), format!("scope.act_on lists {parsed} twice")));
            }
            act_on.push(parsed);
        }
        Ok(act_on)
    }

    /// `[streak]`: which statuses count, and when failures are a streak.
    fn streak(&self, raw: &RawStreak) -> Result<StreakRules, PolicyError> {
        let mut counted = BTreeSet::new();
        for name in &raw.count {
            let status = FailureStatus::NAMES
                .iter()
                .find(|(n, _)| *n == name.get_ref())
                .map(|(_, s)| *s)
                .ok_or_else(|| {
                    let names: Vec<_> = FailureStatus::NAMES.iter().map(|(n, _)| *n).collect();
                    self.err(
                        name.span(),
                        format!(
                            "streak.count: unknown status {:?}; known: {}",
                            name.get_ref(),
                            names.join(", ")
                        ),
                    )
                })?;
            counted.insert(status);
        }
        if counted.is_empty() {
            return Err(self.err(
                0..0,
                "streak.count is empty: no failure would ever count".into(),
            ));
        }
        Ok(StreakRules {
            counted,
            min_evals: self.positive("streak.min_evals", &raw.min_evals)?,
            min_derivations: self.positive("streak.min_derivations", &raw.min_derivations)?,
            flaky_window_evals: self
                .positive("streak.flaky_window_evals", &raw.flaky_window_evals)?,
            flaky_min_flips: self.positive("streak.flaky_min_flips", &raw.flaky_min_flips)?,
        })
    }

    /// `[ladder]`: the built-in ladder with the file's steps, checked.
    fn ladder(&self, raw: &RawLadderPatch) -> Result<Ladder, PolicyError> {
        let base = self.patch(raw)?;
        let ladder_span = raw.span();
        let mut ladder = Ladder {
            skip: false,
            notify_after: Period::days(3),
            remind_before_mark: vec![Period::days(7)],
            mark_broken_after: Period::days(56),
            min_notice: Period::days(28),
            mark_min_derivations: 2,
            retire_after_broken: Some(Period::days(180)),
            retire_notice: Period::days(30),
        };
        base.apply(&mut ladder);
        self.check_ladder(&ladder, ladder_span, "ladder")?;
        Ok(ladder)
    }

    /// `[[override]]`s, numbered from 1, each checked on top of `ladder`.
    fn overrides(
        &self,
        raw: &[Spanned<RawOverride>],
        ladder: &Ladder,
    ) -> Result<Vec<Override>, PolicyError> {
        raw.iter()
            .enumerate()
            .map(|(i, spanned)| self.override_of(i + 1, spanned, ladder))
            .collect()
    }

    /// One `[[override]]`: whom it matches, and a ladder change that changes
    /// something and stays a valid ladder.
    fn override_of(
        &self,
        index: usize,
        spanned: &Spanned<RawOverride>,
        ladder: &Ladder,
    ) -> Result<Override, PolicyError> {
        let span = spanned.span();
        let o = spanned.get_ref();
        let attrs = match &o.attrs {
            Some(a) if a.is_empty() => {
                return Err(self.err(
                    span.clone(),
                    format!(
                        "override {index}: attrs is empty; leave it out to match every attribute"
                    ),
                ));
            }
            Some(a) => Some(self.globs(&format!("override {index} attrs"), a)?),
            None => None,
        };
        let systems = match &o.systems {
            Some(list) => {
                let mut set = BTreeSet::new();
                for s in list {
                    if !is_plausible_system(s.get_ref()) {
                        return Err(self.err(
                            s.span(),
                            format!(
                                "override {index}: {:?} is not a system such as \"x86_64-linux\"",
                                s.get_ref()
                            ),
                        ));
                    }
                    set.insert(s.get_ref().clone());
                }
                Some(set)
            }
            None => None,
        };
        if attrs.is_none() && systems.is_none() {
            return Err(self.err(
                span.clone(),
                format!("override {index} has neither attrs nor systems: it would change the default ladder; edit [ladder] instead"),
            ));
        }
        let patch = self.patch(&o.fields())?;
        if patch == LadderPatch::default() {
            return Err(self.err(
                span.clone(),
                format!("override {index} changes nothing: set skip or a ladder step"),
            ));
        }
        let mut check = ladder.clone();
        patch.apply(&mut check);
        self.check_ladder(&check, span.clone(), &format!("override {index}"))?;
        Ok(Override {
            index,
            reason: o.reason.clone().unwrap_or_default(),
            attrs,
            systems,
            patch,
        })
    }

    /// `[protected]`: attributes never marked, and whom to escalate to.
    fn protected(&self, raw: &RawProtected) -> Result<Protected, PolicyError> {
        let mut escalate_to = Vec::new();
        for who in &raw.escalate_to {
            let w = who.get_ref();
            let ok = !w.is_empty()
                && !w.starts_with('@')
                && w.split('/').count() <= 2
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '/' | '_'));
            if !ok {
                return Err(self.err(
                    who.span(),
                    format!(
                        "protected.escalate_to: {w:?} is not a GitHub user or org/team (without @)"
                    ),
                ));
            }
            escalate_to.push(w.clone());
        }
        Ok(Protected {
            attrs: self.globs("protected.attrs", &raw.attrs)?,
            escalate_to,
        })
    }

    /// `[opt_out]`: the marker comment, the label and the longest snooze.
    fn opt_out(&self, raw: &RawOptOut) -> Result<OptOutRules, PolicyError> {
        let marker = raw.marker.get_ref().trim().to_owned();
        if !marker.starts_with('#') || marker.contains('\n') || marker.len() < 3 {
            return Err(self.err(
                raw.marker.span(),
                "opt_out.marker must be a one-line Nix comment starting with #".into(),
            ));
        }
        let label = raw.label.get_ref().trim().to_owned();
        if label.is_empty() || label.len() > 50 {
            return Err(self.err(
                raw.label.span(),
                "opt_out.label must be 1 to 50 characters (GitHub's limit)".into(),
            ));
        }
        Ok(OptOutRules {
            marker,
            label,
            max_snooze: self.period("opt_out.max_snooze", &raw.max_snooze)?,
        })
    }

    /// `[limits]`.
    fn limits(&self, raw: &RawLimits) -> Result<Limits, PolicyError> {
        Ok(Limits {
            prs_per_day: *raw.prs_per_day.get_ref(),
            open_prs: *raw.open_prs.get_ref(),
            pings_per_maintainer_per_week: *raw.pings_per_maintainer_per_week.get_ref(),
            posts_per_day: self.positive("limits.posts_per_day", &raw.posts_per_day)?,
        })
    }

    /// `[circuit_breaker]`: when a mass breakage holds everything.
    fn breaker(&self, raw: &RawBreaker) -> Result<CircuitBreaker, PolicyError> {
        let share = *raw.min_share.get_ref();
        if !(share > 0.0 && share <= 1.0) {
            return Err(self.err(
                raw.min_share.span(),
                format!("circuit_breaker.min_share must be in (0, 1], not {share}"),
            ));
        }
        Ok(CircuitBreaker {
            window_evals: self.positive("circuit_breaker.window_evals", &raw.window_evals)?,
            min_jobs: self.positive("circuit_breaker.min_jobs", &raw.min_jobs)?,
            min_share: share,
        })
    }

    /// `[batch]`: how pull requests are grouped and how big they get.
    fn batch(&self, raw: &RawBatch) -> Result<Batching, PolicyError> {
        let group_by = match raw.group_by.get_ref().as_str() {
            "attr" => GroupBy::Attr,
            "maintainer" => GroupBy::Maintainer,
            "package_set" => GroupBy::PackageSet,
            other => {
                return Err(self.err(
                    raw.group_by.span(),
                    format!(
                        "batch.group_by: {other:?} is not one of attr, maintainer, package_set"
                    ),
                ));
            }
        };
        Ok(Batching {
            group_by,
            max_attrs_per_pr: self.positive("batch.max_attrs_per_pr", &raw.max_attrs_per_pr)?,
        })
    }

    /// `[backtest]`.
    fn backtest(&self, raw: &RawBacktest) -> Result<BacktestRules, PolicyError> {
        Ok(BacktestRules {
            false_positive_within: self
                .period("backtest.false_positive_within", &raw.false_positive_within)?,
            assumed_merge_delay: self
                .period("backtest.assumed_merge_delay", &raw.assumed_merge_delay)?,
        })
    }
}

// ---- raw TOML -------------------------------------------------------------

fn s(text: &str) -> Spanned<String> {
    Spanned::new(0..0, text.to_owned())
}

fn n<T>(v: T) -> Spanned<T> {
    Spanned::new(0..0, v)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    scope: RawScope,
    #[serde(default)]
    streak: RawStreak,
    #[serde(default)]
    ladder: RawLadderPatch,
    #[serde(default, rename = "override")]
    overrides: Vec<Spanned<RawOverride>>,
    #[serde(default)]
    protected: RawProtected,
    #[serde(default)]
    opt_out: RawOptOut,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    circuit_breaker: RawBreaker,
    #[serde(default)]
    batch: RawBatch,
    #[serde(default)]
    backtest: RawBacktest,
    #[serde(default)]
    early_warning: RawEarlyWarning,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawScope {
    act_on: Vec<Spanned<String>>,
}

impl Default for RawScope {
    fn default() -> Self {
        RawScope {
            act_on: vec![s("nixpkgs:trunk")],
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStreak {
    count: Vec<Spanned<String>>,
    min_evals: Spanned<u32>,
    min_derivations: Spanned<u32>,
    flaky_window_evals: Spanned<u32>,
    flaky_min_flips: Spanned<u32>,
}

impl Default for RawStreak {
    fn default() -> Self {
        RawStreak {
            count: FailureStatus::NAMES
                .iter()
                .map(|(name, _)| s(name))
                .collect(),
            min_evals: n(3),
            min_derivations: n(1),
            flaky_window_evals: n(12),
            flaky_min_flips: n(3),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLadderPatch {
    skip: Option<bool>,
    notify_after: Option<Spanned<String>>,
    remind_before_mark: Option<Vec<Spanned<String>>>,
    mark_broken_after: Option<Spanned<String>>,
    min_notice: Option<Spanned<String>>,
    mark_min_derivations: Option<Spanned<u32>>,
    retire_after_broken: Option<Spanned<String>>,
    retire_notice: Option<Spanned<String>>,
}

impl RawLadderPatch {
    fn span(&self) -> Range<usize> {
        [
            self.notify_after.as_ref(),
            self.mark_broken_after.as_ref(),
            self.min_notice.as_ref(),
            self.retire_after_broken.as_ref(),
            self.retire_notice.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|s| s.span())
        .min_by_key(|s| s.start)
        .unwrap_or(0..0)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    attrs: Option<Vec<Spanned<String>>>,
    systems: Option<Vec<Spanned<String>>>,
    reason: Option<String>,
    skip: Option<bool>,
    notify_after: Option<Spanned<String>>,
    remind_before_mark: Option<Vec<Spanned<String>>>,
    mark_broken_after: Option<Spanned<String>>,
    min_notice: Option<Spanned<String>>,
    mark_min_derivations: Option<Spanned<u32>>,
    retire_after_broken: Option<Spanned<String>>,
    retire_notice: Option<Spanned<String>>,
}

impl RawOverride {
    fn fields(&self) -> RawLadderPatch {
        RawLadderPatch {
            skip: self.skip,
            notify_after: self.notify_after.clone(),
            remind_before_mark: self.remind_before_mark.clone(),
            mark_broken_after: self.mark_broken_after.clone(),
            min_notice: self.min_notice.clone(),
            mark_min_derivations: self.mark_min_derivations.clone(),
            retire_after_broken: self.retire_after_broken.clone(),
            retire_notice: self.retire_notice.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawProtected {
    attrs: Vec<Spanned<String>>,
    escalate_to: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawOptOut {
    marker: Spanned<String>,
    label: Spanned<String>,
    max_snooze: Spanned<String>,
}

impl Default for RawOptOut {
    fn default() -> Self {
        RawOptOut {
            marker: s("# hydra-sentinel: do not mark broken"),
            label: s("hydra-sentinel: hands off"),
            max_snooze: s("90d"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    prs_per_day: Spanned<u32>,
    open_prs: Spanned<u32>,
    pings_per_maintainer_per_week: Spanned<u32>,
    posts_per_day: Spanned<u32>,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            prs_per_day: n(2),
            open_prs: n(10),
            pings_per_maintainer_per_week: n(3),
            posts_per_day: n(50),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawBreaker {
    window_evals: Spanned<u32>,
    min_jobs: Spanned<u32>,
    min_share: Spanned<f64>,
}

impl Default for RawBreaker {
    fn default() -> Self {
        RawBreaker {
            window_evals: n(2),
            min_jobs: n(200),
            min_share: n(0.01),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawBatch {
    group_by: Spanned<String>,
    max_attrs_per_pr: Spanned<u32>,
}

impl Default for RawBatch {
    fn default() -> Self {
        RawBatch {
            group_by: s("maintainer"),
            max_attrs_per_pr: n(10),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawBacktest {
    false_positive_within: Spanned<String>,
    assumed_merge_delay: Spanned<String>,
}

impl Default for RawBacktest {
    fn default() -> Self {
        RawBacktest {
            false_positive_within: s("14d"),
            assumed_merge_delay: s("3d"),
        }
    }
}

/// The pre-merge jobsets warned about when a policy does not say.
const DEFAULT_BRANCHES: [&str; 2] = ["nixpkgs:staging-next", "nixpkgs:python-updates"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawEarlyWarning {
    trunk: Option<Spanned<String>>,
    branches: Option<Vec<Spanned<String>>>,
    min_evals: Spanned<u32>,
    min_derivations: Spanned<u32>,
    #[serde(rename = "override")]
    overrides: Vec<Spanned<RawWarningOverride>>,
}

impl Default for RawEarlyWarning {
    fn default() -> Self {
        RawEarlyWarning {
            trunk: None,
            branches: None,
            min_evals: n(2),
            min_derivations: n(2),
            overrides: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWarningOverride {
    branches: Option<Vec<Spanned<String>>>,
    attrs: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    skip: bool,
    reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(text, Path::new("p.toml"))
    }

    #[test]
    fn the_built_in_policy_is_valid_and_skips_haskell_packages() {
        let p = Policy::nixpkgs();
        assert!(
            p.ladder_for("haskellPackages.lens", "x86_64-linux")
                .ladder
                .skip
        );
        assert!(!p.ladder_for("hello", "x86_64-linux").ladder.skip);
        assert!(p.is_protected("stdenv"));
    }

    #[test]
    fn an_empty_policy_has_the_documented_defaults() {
        let p = parse("").unwrap();
        assert_eq!(p.ladder.notify_after, Period::days(3));
        assert_eq!(p.ladder.mark_broken_after, Period::days(56));
        assert_eq!(p.act_on[0].to_string(), "nixpkgs:trunk");
        assert_eq!(p.streak.counted.len(), 7);
    }

    #[test]
    fn periods_read_and_print_in_their_largest_whole_unit() {
        assert_eq!(Period::parse("3d"), Ok(Period::days(3)));
        assert_eq!(Period::parse("2w").unwrap().to_string(), "2w");
        assert_eq!(Period::parse("36h").unwrap().to_string(), "36h");
        assert!(Period::parse("3").unwrap_err().contains("no unit"));
        assert!(Period::parse("3y").unwrap_err().contains("unknown unit"));
        assert!(Period::parse("-3d").is_err());
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_line_and_column() {
        let err = parse("[ladder]\nnotify_after = \"3d\"\nnotfy_after = \"4d\"\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("p.toml:3:1: unknown field `notfy_after`"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1, "one line, no excerpt: {text}");
    }

    #[test]
    fn bad_values_name_their_place() {
        let cases = [
            (
                "[ladder]\nnotify_after = \"3 days\"\n",
                "p.toml:2:16: notify_after",
            ),
            (
                "[[override]]\nattrs = [\"haskell Packages.*\"]\nskip = true\n",
                "p.toml:2:10:",
            ),
            (
                "[[override]]\nsystems = [\"x86_64 linux\"]\nskip = true\n",
                "p.toml:2:12:",
            ),
            (
                "[streak]\ncount = [\"failed\", \"flaky\"]\n",
                "p.toml:2:20: streak.count: unknown status",
            ),
            ("[circuit_breaker]\nmin_share = 1.5\n", "p.toml:2:13:"),
            ("[batch]\ngroup_by = \"team\"\n", "p.toml:2:12:"),
            ("[scope]\nact_on = [\"trunk\"]\n", "p.toml:2:11:"),
            (
                "[protected]\nescalate_to = [\"@everyone\"]\n",
                "p.toml:2:16:",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.starts_with(expected), "for {text:?}: got {err:?}");
        }
    }

    #[test]
    fn a_ladder_that_would_mark_before_telling_anyone_is_refused() {
        let err = parse("[ladder]\nnotify_after = \"30d\"\nmark_broken_after = \"7d\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nothing may be marked before"), "{err}");
        let err = parse("[ladder]\nmin_notice = \"7d\"\nremind_before_mark = [\"14d\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not fit in min_notice"), "{err}");
    }

    #[test]
    fn overrides_apply_in_file_order_field_by_field() {
        let p = parse(
            "[[override]]\nattrs = [\"linuxPackages*\"]\nmark_broken_after = \"120d\"\n\
             [[override]]\nsystems = [\"x86_64-darwin\"]\nnotify_after = \"7d\"\n",
        )
        .unwrap();
        let l = p.ladder_for("linuxPackages_latest.zfs", "x86_64-darwin");
        assert_eq!(l.ladder.mark_broken_after, Period::days(120));
        assert_eq!(l.ladder.notify_after, Period::days(7));
        assert_eq!(l.overrides, vec![1, 2]);
        assert_eq!(
            p.ladder_for("hello", "x86_64-linux").overrides,
            Vec::<usize>::new()
        );
    }

    #[test]
    fn an_override_that_matches_everything_or_changes_nothing_is_refused() {
        assert!(
            parse("[[override]]\nskip = true\n")
                .unwrap_err()
                .to_string()
                .contains("neither attrs nor systems")
        );
        assert!(
            parse("[[override]]\nattrs = [\"a\"]\nreason = \"x\"\n")
                .unwrap_err()
                .to_string()
                .contains("changes nothing")
        );
    }

    #[test]
    fn early_warnings_default_to_staging_next_and_python_updates_into_the_first_acted_on_jobset() {
        let p = parse("").unwrap();
        let w = &p.early_warning;
        assert_eq!(w.trunk.to_string(), "nixpkgs:trunk");
        let branches: Vec<String> = w.branches.iter().map(ToString::to_string).collect();
        assert_eq!(branches, ["nixpkgs:staging-next", "nixpkgs:python-updates"]);
        assert_eq!((w.min_evals, w.min_derivations), (2, 2));
        // A policy acting on staging-next itself warns about it no more.
        let p = parse("[scope]\nact_on = [\"nixpkgs:staging-next\"]\n").unwrap();
        let branches: Vec<String> = p
            .early_warning
            .branches
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(branches, ["nixpkgs:python-updates"]);
    }

    #[test]
    fn the_built_in_policy_leaves_haskell_updates_to_the_haskell_team() {
        let p = Policy::nixpkgs();
        let w = &p.early_warning;
        let haskell = JobsetRef {
            project: "nixpkgs".into(),
            jobset: "haskell-updates".into(),
        };
        let staging = JobsetRef {
            project: "nixpkgs".into(),
            jobset: "staging-next".into(),
        };
        assert!(w.is_branch(&haskell) && w.is_branch(&staging));
        let off = w.branch_off(&haskell).expect("haskell-updates is off");
        assert!(off.reason.contains("Haskell team"), "{}", off.reason);
        assert!(w.branch_off(&staging).is_none());
        assert!(w.skipped(&staging, "hello").is_none());
    }

    #[test]
    fn bad_early_warning_settings_name_their_place() {
        let cases = [
            (
                "[early_warning]\ntrunk = \"nixpkgs:staging\"\n",
                "p.toml:2:9: early_warning.trunk: nixpkgs:staging is not in scope.act_on",
            ),
            (
                "[early_warning]\nbranches = [\"nixpkgs:trunk\"]\n",
                "p.toml:2:13: early_warning.branches: nixpkgs:trunk is acted on",
            ),
            (
                "[early_warning]\nbranches = [\"staging-next\"]\n",
                "p.toml:2:13: early_warning.branches: \"staging-next\" is not PROJECT:JOBSET",
            ),
            (
                "[early_warning]\nmin_evals = 0\n",
                "p.toml:2:13: early_warning.min_evals must be at least 1",
            ),
            (
                "[[early_warning.override]]\nreason = \"x\"\nskip = true\n",
                "p.toml:1:1: early_warning.override 1 has neither branches nor attrs",
            ),
            (
                "[[early_warning.override]]\nattrs = [\"hello\"]\n",
                "p.toml:1:1: early_warning.override 1 changes nothing",
            ),
            (
                "[early_warning]\nwarn_after = \"1d\"\n",
                "p.toml:2:1: unknown field",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.starts_with(expected), "for {text:?}: got {err:?}");
        }
    }
}
