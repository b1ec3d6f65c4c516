//! The service configuration: read once, validated once, typed thereafter.
//!
//! Owns: the TOML schema of `hydra-sentinel.toml` (unknown keys refused), its
//! defaults, and turning it into typed values with errors that name the file,
//! line and column.
//!
//! Must never: read secrets into memory that will be logged, or let a raw
//! string reach the rest of the program where a typed value belongs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use url::Url;

use crate::forge::ContentBudget;
use crate::history::job_name::is_nix_identifier;
use crate::hydra::HydraSettings;
use crate::hydra::pacer::{HYDRA_NIXOS_ORG_BURST, HYDRA_NIXOS_ORG_RATE, Pacing};

/// The nixpkgs repository on GitHub when no `[github] repo` is configured.
pub const NIXPKGS_REPOSITORY: &str = "NixOS/nixpkgs";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub hydra: HydraSettings,
    pub jobsets: Vec<JobsetRef>,
    pub database: PathBuf,
    pub retention: RetentionSettings,
    pub ingest: IngestSettings,
    /// `hydra-sentinel run`: the loop's schedule and health rule.
    pub daemon: DaemonSettings,
    /// The loopback HTTP endpoint with `/metrics` and `/healthz`.
    pub metrics: MetricsSettings,
    /// The policy file; `None`: the built-in `policies/nixpkgs.toml`.
    pub policy_file: Option<PathBuf>,
    /// The nixpkgs clone the bot owns (for maintainers and edits).
    pub nixpkgs_checkout: Option<PathBuf>,
    /// Where and as whom to act on GitHub; `None` until configured.
    pub github: Option<GitHubConfig>,
    pub act: ActConfig,
    /// The HTML report written after each successful cycle.
    pub report: ReportSettings,
}

/// The `[report]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportSettings {
    /// Where the daemon (and `once`) write the static site after each
    /// successful cycle; `None`: no site.
    pub html_dir: Option<PathBuf>,
}

/// The `[github]` section.
#[derive(Debug, Clone)]
pub struct GitHubConfig {
    pub api_url: Url,
    /// `owner/name` of the repository acted on.
    pub repo: String,
    pub base_branch: String,
    /// `owner/name` of the bot's fork, where branches are pushed.
    pub fork: String,
    pub push_url: String,
    /// The token's file (a systemd credential); read when needed, never
    /// logged. A relative path names a credential of whichever unit runs
    /// (see [`GitHubConfig::token_path`]).
    pub token_file: PathBuf,
    /// How GitHub can reach whoever runs the bot, for the User-Agent (an
    /// URL or an e-mail address); `None`: the fork owner's GitHub page.
    pub contact: Option<String>,
    /// Writes a minute and an hour (`writes_per_minute`, `writes_per_hour`),
    /// below GitHub's 80 and 500.
    pub content_budget: ContentBudget,
}

impl GitHubConfig {
    /// Where the token is: `token_file` as written when absolute; relative,
    /// it names a systemd credential in `credentials_directory` (the unit's
    /// `$CREDENTIALS_DIRECTORY`), so one configuration serves the service
    /// and the timer's oneshot unit, whose credentials live in different
    /// folders. Without that variable a relative path is taken as it is.
    pub fn token_path(&self, credentials_directory: Option<&std::ffi::OsStr>) -> PathBuf {
        match credentials_directory {
            Some(dir) if self.token_file.is_relative() => Path::new(dir).join(&self.token_file),
            _ => self.token_file.clone(),
        }
    }
}

/// The `[act]` section.
#[derive(Debug, Clone)]
pub struct ActConfig {
    /// Dry-run until a committer turns this on.
    pub enabled: bool,
    /// Logins whose commands count besides a package's maintainers.
    pub committers: Vec<String>,
    pub label: String,
    pub mention: String,
    /// Attic folder, relative to the checkout.
    pub attic: PathBuf,
    pub author_name: String,
    pub author_email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobsetRef {
    pub project: String,
    pub jobset: String,
}

impl std::fmt::Display for JobsetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.project, self.jobset)
    }
}

#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// At most this many new evals per jobset and pass: bounds a first
    /// backfill and a catch-up after downtime (the rest follow next pass).
    pub max_evals_per_pass: usize,
    /// Never fetch more builds than this one by one for an eval; above it,
    /// the whole `/eval/{id}/builds` is streamed.
    pub per_build_fetch_limit: usize,
    /// How many builds of a streamed `/eval/{id}/builds` cost as much as one
    /// `/build/{id}` request (bytes on the wire, server time): the exchange
    /// rate of [`crate::ingest::FetchStrategy::choose`].
    pub builds_per_request: usize,
    /// Failed builds in the newest eval are asked about again after this long
    /// (restarts change a build's status after the fact).
    pub recheck_after: Duration,
    /// At most this many builds of the newest eval are asked about again
    /// per pass (unfinished ones, and a round of failed ones).
    pub recheck_budget: usize,
    /// `/eval/{id}/builds` is asked for only for evals of at most this many
    /// builds (and at most once per eval): Hydra builds the whole array
    /// before the first byte, and nginx gives up after 900 s. See
    /// [`crate::ingest::WHOLE_EVAL_MAX_BUILDS`] for the reasoning.
    pub whole_eval_max_builds: usize,
    /// Hydra requests one pass may send, all jobsets and phases together.
    /// What is not learned within it is learned on the next passes, where
    /// the previous one stopped: a trunk-sized first eval takes many passes
    /// (see the README's budget table), and the daemon still plans and acts
    /// between them.
    pub requests_per_pass: usize,
    /// Hydra build pages read per jobset and pass to tell a package's own
    /// failure from one propagated from a dependency (see
    /// [`CAUSE_PAGES_PER_PASS`]).
    pub cause_pages_per_pass: usize,
    /// How far back a first install looks for when failures under way
    /// began: an older beginning is told as "at least this long".
    pub origin_horizon: Duration,
}

/// The default of `ingest.cause_pages_per_pass`.
///
/// Why this many. A failure that may be a dependency's (7, 8, 10, 11, ...)
/// is not acted on until its page is read, so the pages that matter are
/// those of new failures: a trunk eval brings a few dozen to a few hundred
/// new failed builds, and 300 reads them in one pass. At the default pace
/// (one request a second) 300 pages take five minutes of the daemon's
/// 15-minute cycle, leaving room for the evals themselves; a first start
/// with thousands of dependency failures (2, read only to name their root)
/// catches up over some hours instead of flooding Hydra, whose build page
/// costs it more than the JSON (it renders steps, inputs and the previous
/// builds). These are estimates from the shape of a trunk eval, not
/// measurements against hydra.nixos.org.
pub const CAUSE_PAGES_PER_PASS: usize = 300;

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            max_evals_per_pass: 10,
            per_build_fetch_limit: 1000,
            builds_per_request: 250,
            recheck_after: Duration::from_secs(6 * 3600),
            recheck_budget: 200,
            whole_eval_max_builds: crate::ingest::WHOLE_EVAL_MAX_BUILDS,
            requests_per_pass: crate::ingest::REQUESTS_PER_PASS,
            cause_pages_per_pass: CAUSE_PAGES_PER_PASS,
            origin_horizon: Duration::from_secs(26 * 7 * 86_400),
        }
    }
}

/// The schedule of `hydra-sentinel run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSettings {
    /// From the start of one cycle to the start of the next.
    pub interval: Duration,
    /// `/healthz` answers 503 once no cycle has succeeded for this many
    /// intervals (counted from the last success, or from the start).
    pub unhealthy_after_cycles: u32,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            interval: Duration::from_secs(900),
            unhealthy_after_cycles: 3,
        }
    }
}

/// What the database keeps (`[database] keep_history_days`; see
/// [`crate::store::Store::prune`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Closed spans whose last eval is older than this are pruned (those
    /// of failing jobs and of packages the ledger names are kept).
    pub keep_history: Duration,
}

/// The shortest history kept: `backtest` replays it, and a shorter one
/// would leave too little to calibrate a policy on.
pub const MIN_KEEP_HISTORY_DAYS: u64 = 30;

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            // Two years: enough for `backtest` to replay a policy over
            // every season of nixpkgs (releases, mass rebuilds).
            keep_history: Duration::from_secs(730 * 86_400),
        }
    }
}

/// Where `/metrics` and `/healthz` are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// None: no endpoint at all.
    pub listen: Option<std::net::SocketAddr>,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9477))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, or not the shape of a configuration (an unknown key, a
    /// value of the wrong type). `message` is toml's own, without the
    /// excerpt it draws, which would repeat the place.
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

/// The example shipped in `systemd/`, which doubles as the documentation of
/// every key.
pub const EXAMPLE: &str = include_str!("../systemd/hydra-sentinel.toml");

impl Config {
    /// Load and validate a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// The configuration used when none is given: hydra.nixos.org's
    /// nixpkgs:trunk, a database in the working directory (or systemd's
    /// `$STATE_DIRECTORY`).
    pub fn embedded_default() -> Config {
        let mut config = Config::parse("", Path::new("<embedded defaults>"))
            .expect("the empty configuration is valid");
        let dir = std::env::var_os("STATE_DIRECTORY")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        config.database = dir.join("hydra-sentinel.sqlite");
        config
    }

    /// `owner/name` of the nixpkgs repository on GitHub: `[github] repo`,
    /// or [`NIXPKGS_REPOSITORY`] when there is no `[github]` section.
    pub fn repository(&self) -> &str {
        self.github
            .as_ref()
            .map_or(NIXPKGS_REPOSITORY, |g| g.repo.as_str())
    }

    /// Parse configuration text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, column, message) = toml_error_place(text, &e);
            ConfigError::Syntax {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        })?;
        let invalid = |span: std::ops::Range<usize>, message: String| {
            let (line, column) = line_column(text, span.start);
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        };

        let hydra = raw.hydra;
        let url_span = hydra.url.span();
        let url = Url::parse(hydra.url.get_ref())
            .map_err(|e| invalid(url_span.clone(), format!("hydra.url is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(invalid(
                url_span,
                "hydra.url must be an http or https URL".into(),
            ));
        }
        let in_flight = *hydra.max_in_flight.get_ref();
        if !(1..=2).contains(&in_flight) {
            return Err(invalid(
                hydra.max_in_flight.span(),
                format!(
                    "hydra.max_in_flight must be 1 or 2 (Hydra is a shared service), not {in_flight}"
                ),
            ));
        }
        // hydra.nixos.org's nginx: `limit_req_zone … rate=2r/s` and
        // `limit_req … burst=7` (NixOS/infra `build/hydra-proxy.nix`).
        let rate = *hydra.requests_per_second.get_ref();
        if !(rate > 0.0 && rate <= HYDRA_NIXOS_ORG_RATE) {
            return Err(invalid(
                hydra.requests_per_second.span(),
                format!(
                    "hydra.requests_per_second must be above 0 and at most {HYDRA_NIXOS_ORG_RATE} (hydra.nixos.org's nginx limit), not {rate}"
                ),
            ));
        }
        let burst = *hydra.burst.get_ref();
        if !(1..=HYDRA_NIXOS_ORG_BURST).contains(&burst) {
            return Err(invalid(
                hydra.burst.span(),
                format!(
                    "hydra.burst must be between 1 and {HYDRA_NIXOS_ORG_BURST} (hydra.nixos.org's nginx burst), not {burst}"
                ),
            ));
        }
        let mut settings = HydraSettings::new(url);
        settings.connect_timeout = Duration::from_secs(hydra.connect_timeout_secs);
        settings.read_timeout = Duration::from_secs(hydra.read_timeout_secs);
        settings.retries = hydra.retries;
        settings.retry_initial_delay = Duration::from_millis(hydra.retry_initial_delay_ms);
        settings.retry_max_delay =
            Duration::from_millis(hydra.retry_max_delay_ms.max(hydra.retry_initial_delay_ms));
        settings.max_in_flight = in_flight as usize;
        // The pace protects hydra.nixos.org (a shared service behind nginx's
        // limit); a Hydra on this machine (the look-alike of the tests and
        // the demo, a local instance) is not paced.
        settings.pacing = if is_loopback(&settings.url) {
            Pacing::unlimited()
        } else {
            Pacing {
                requests_per_second: rate,
                burst,
            }
        };
        settings.contact = hydra.contact;

        let raw_jobsets = raw.jobsets.unwrap_or_else(|| {
            vec![RawJobset {
                project: Spanned::new(0..0, "nixpkgs".into()),
                jobset: Spanned::new(0..0, "trunk".into()),
            }]
        });
        let mut jobsets: Vec<JobsetRef> = Vec::new();
        for js in raw_jobsets {
            for field in [&js.project, &js.jobset] {
                if !is_hydra_name(field.get_ref()) {
                    return Err(invalid(
                        field.span(),
                        format!(
                            "{:?} is not a valid Hydra project or jobset name",
                            field.get_ref()
                        ),
                    ));
                }
            }
            let jobset = JobsetRef {
                project: js.project.get_ref().clone(),
                jobset: js.jobset.get_ref().clone(),
            };
            if jobsets.contains(&jobset) {
                return Err(invalid(
                    js.project.span(),
                    format!("jobset {jobset} is listed twice"),
                ));
            }
            jobsets.push(jobset);
        }
        if jobsets.is_empty() {
            return Err(invalid(
                0..0,
                "no jobsets configured: add a [[jobsets]] table".into(),
            ));
        }

        let ingest = raw.ingest;
        if *ingest.max_evals_per_pass.get_ref() == 0 {
            return Err(invalid(
                ingest.max_evals_per_pass.span(),
                "ingest.max_evals_per_pass must be at least 1".into(),
            ));
        }
        if *ingest.requests_per_pass.get_ref() < crate::ingest::MIN_REQUESTS_PER_PASS {
            return Err(invalid(
                ingest.requests_per_pass.span(),
                format!(
                    "ingest.requests_per_pass must be at least {} (an eval needs its page and its build list)",
                    crate::ingest::MIN_REQUESTS_PER_PASS
                ),
            ));
        }
        let cause_pages_per_pass = *ingest.cause_pages_per_pass.get_ref();
        if cause_pages_per_pass == 0 {
            // Without pages, a timeout or cached failure would never be
            // known as the package's own nor a dependency's: never acted on.
            return Err(invalid(
                ingest.cause_pages_per_pass.span(),
                "ingest.cause_pages_per_pass must be at least 1: failures Hydra may have copied from a dependency (timeouts, cached failures) are acted on only once a build page says whose they are".into(),
            ));
        }
        let daemon = raw.daemon;
        if *daemon.interval_secs.get_ref() == 0 {
            return Err(invalid(
                daemon.interval_secs.span(),
                "daemon.interval_secs must be at least 1".into(),
            ));
        }
        if *daemon.unhealthy_after_cycles.get_ref() == 0 {
            return Err(invalid(
                daemon.unhealthy_after_cycles.span(),
                "daemon.unhealthy_after_cycles must be at least 1".into(),
            ));
        }
        let listen = if raw.metrics.enabled {
            let text = raw.metrics.listen.get_ref();
            Some(text.parse::<std::net::SocketAddr>().map_err(|e| {
                invalid(
                    raw.metrics.listen.span(),
                    format!("metrics.listen must be an address and port like \"127.0.0.1:9477\", not {text:?}: {e}"),
                )
            })?)
        } else {
            None
        };
        let keep_days = *raw.database.keep_history_days.get_ref();
        if !(MIN_KEEP_HISTORY_DAYS..=36_500).contains(&keep_days) {
            return Err(invalid(
                raw.database.keep_history_days.span(),
                format!(
                    "database.keep_history_days must be between {MIN_KEEP_HISTORY_DAYS} and 36500, not {keep_days}: backtest replays the history kept"
                ),
            ));
        }
        let github = match raw.github {
            None => None,
            Some(g) => {
                let api_url = Url::parse(g.api_url.get_ref()).map_err(|e| {
                    invalid(
                        g.api_url.span(),
                        format!("github.api_url is not a URL: {e}"),
                    )
                })?;
                for field in [&g.repo, &g.fork] {
                    let ok = field
                        .get_ref()
                        .split('/')
                        .filter(|p| is_hydra_name(p))
                        .count()
                        == 2
                        && field.get_ref().matches('/').count() == 1;
                    if !ok {
                        return Err(invalid(
                            field.span(),
                            format!("{:?} is not owner/name", field.get_ref()),
                        ));
                    }
                }
                // GitHub's own ceilings: a budget at or above them would be
                // met by its secondary rate limit instead.
                for (field, name, github_limit) in [
                    (&g.writes_per_minute, "writes_per_minute", 80),
                    (&g.writes_per_hour, "writes_per_hour", 500),
                ] {
                    if !(1..github_limit).contains(field.get_ref()) {
                        return Err(invalid(
                            field.span(),
                            format!(
                                "github.{name} must be at least 1 and below GitHub's own limit of {github_limit}"
                            ),
                        ));
                    }
                }
                Some(GitHubConfig {
                    api_url,
                    repo: g.repo.into_inner(),
                    base_branch: g.base_branch,
                    fork: g.fork.into_inner(),
                    push_url: g.push_url,
                    token_file: g.token_file,
                    contact: g.contact,
                    content_budget: ContentBudget {
                        per_minute: *g.writes_per_minute.get_ref(),
                        per_hour: *g.writes_per_hour.get_ref(),
                    },
                })
            }
        };
        let nixpkgs_checkout = raw.nixpkgs.map(|n| n.checkout);
        if *raw.act.enabled.get_ref() && (github.is_none() || nixpkgs_checkout.is_none()) {
            return Err(invalid(
                raw.act.enabled.span(),
                "act.enabled needs a [github] section and [nixpkgs] checkout".into(),
            ));
        }
        let html_dir = match raw.report.html_dir {
            None => None,
            Some(dir) => {
                let ends_in_a_name = matches!(
                    dir.get_ref().components().next_back(),
                    Some(std::path::Component::Normal(_))
                );
                if !ends_in_a_name {
                    return Err(invalid(
                        dir.span(),
                        format!(
                            "report.html_dir must end in a folder name (the site replaces that folder), not {:?}",
                            dir.get_ref()
                        ),
                    ));
                }
                Some(dir.into_inner())
            }
        };
        Ok(Config {
            report: ReportSettings { html_dir },
            daemon: DaemonSettings {
                interval: Duration::from_secs(*daemon.interval_secs.get_ref()),
                unhealthy_after_cycles: *daemon.unhealthy_after_cycles.get_ref(),
            },
            metrics: MetricsSettings { listen },
            hydra: settings,
            jobsets,
            database: raw.database.path,
            retention: RetentionSettings {
                keep_history: Duration::from_secs(keep_days * 86_400),
            },
            ingest: IngestSettings {
                max_evals_per_pass: *ingest.max_evals_per_pass.get_ref(),
                per_build_fetch_limit: ingest.per_build_fetch_limit,
                builds_per_request: ingest.builds_per_request.max(1),
                recheck_after: Duration::from_secs(ingest.recheck_after_secs),
                recheck_budget: ingest.recheck_budget,
                whole_eval_max_builds: ingest.whole_eval_max_builds,
                requests_per_pass: *ingest.requests_per_pass.get_ref(),
                cause_pages_per_pass,
                origin_horizon: Duration::from_secs(ingest.origin_horizon_days * 86_400),
            },
            policy_file: raw.policy.file,
            nixpkgs_checkout,
            github,
            act: ActConfig {
                enabled: *raw.act.enabled.get_ref(),
                committers: raw.act.committers,
                label: raw.act.label,
                mention: raw.act.mention,
                attic: raw.act.attic,
                author_name: raw.act.author_name,
                author_email: raw.act.author_email,
            },
        })
    }
}

/// Whether `url` points at this machine.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Hydra's own rule for project and jobset identifiers.
fn is_hydra_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && s.len() <= 100
        // A jobset named like an attribute path stays one path segment.
        && (is_nix_identifier(s) || !s.contains(".."))
}

/// Where a toml error points (1-based line and column; the start of the file
/// when toml names no place) and its message without the source excerpt.
pub fn toml_error_place(text: &str, error: &toml::de::Error) -> (usize, usize, String) {
    let (line, column) = line_column(text, error.span().map_or(0, |span| span.start));
    (line, column, error.message().trim_end().to_owned())
}

/// 1-based line and column of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    hydra: RawHydra,
    jobsets: Option<Vec<RawJobset>>,
    #[serde(default)]
    database: RawDatabase,
    #[serde(default)]
    ingest: RawIngest,
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    policy: RawPolicyRef,
    nixpkgs: Option<RawNixpkgs>,
    github: Option<RawGitHub>,
    #[serde(default)]
    act: RawAct,
    #[serde(default)]
    report: RawReport,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReport {
    html_dir: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNixpkgs {
    checkout: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGitHub {
    #[serde(default = "default_api_url")]
    api_url: Spanned<String>,
    repo: Spanned<String>,
    #[serde(default = "default_base_branch")]
    base_branch: String,
    fork: Spanned<String>,
    push_url: String,
    token_file: PathBuf,
    #[serde(default)]
    contact: Option<String>,
    #[serde(default = "default_writes_per_minute")]
    writes_per_minute: Spanned<u32>,
    #[serde(default = "default_writes_per_hour")]
    writes_per_hour: Spanned<u32>,
}

fn default_writes_per_minute() -> Spanned<u32> {
    Spanned::new(0..0, ContentBudget::default().per_minute)
}

fn default_writes_per_hour() -> Spanned<u32> {
    Spanned::new(0..0, ContentBudget::default().per_hour)
}

fn default_api_url() -> Spanned<String> {
    Spanned::new(0..0, "https://api.github.com".into())
}

fn default_base_branch() -> String {
    "master".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAct {
    enabled: Spanned<bool>,
    committers: Vec<String>,
    label: String,
    mention: String,
    attic: PathBuf,
    author_name: String,
    author_email: String,
}

impl Default for RawAct {
    fn default() -> Self {
        RawAct {
            enabled: Spanned::new(0..0, false),
            committers: Vec::new(),
            label: "hydra-sentinel".into(),
            mention: "@hydra-sentinel".into(),
            attic: PathBuf::from("pkgs/attic"),
            author_name: "hydra-sentinel".into(),
            author_email: "hydra-sentinel@users.noreply.github.com".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicyRef {
    file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDaemon {
    interval_secs: Spanned<u64>,
    unhealthy_after_cycles: Spanned<u32>,
}

impl Default for RawDaemon {
    fn default() -> Self {
        let d = DaemonSettings::default();
        RawDaemon {
            interval_secs: Spanned::new(0..0, d.interval.as_secs()),
            unhealthy_after_cycles: Spanned::new(0..0, d.unhealthy_after_cycles),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMetrics {
    enabled: bool,
    listen: Spanned<String>,
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics {
            enabled: true,
            listen: Spanned::new(0..0, "127.0.0.1:9477".into()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHydra {
    url: Spanned<String>,
    connect_timeout_secs: u64,
    read_timeout_secs: u64,
    retries: usize,
    retry_initial_delay_ms: u64,
    retry_max_delay_ms: u64,
    max_in_flight: Spanned<u32>,
    requests_per_second: Spanned<f64>,
    burst: Spanned<u32>,
    contact: Option<String>,
}

impl Default for RawHydra {
    fn default() -> Self {
        RawHydra {
            url: Spanned::new(0..0, "https://hydra.nixos.org".into()),
            connect_timeout_secs: 30,
            read_timeout_secs: 900,
            retries: 5,
            retry_initial_delay_ms: 1000,
            retry_max_delay_ms: 60_000,
            max_in_flight: Spanned::new(0..0, 2),
            requests_per_second: Spanned::new(0..0, Pacing::default().requests_per_second),
            burst: Spanned::new(0..0, Pacing::default().burst),
            contact: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJobset {
    project: Spanned<String>,
    jobset: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDatabase {
    path: PathBuf,
    keep_history_days: Spanned<u64>,
}

impl Default for RawDatabase {
    fn default() -> Self {
        RawDatabase {
            path: PathBuf::from("/var/lib/hydra-sentinel/state.sqlite"),
            keep_history_days: Spanned::new(
                0..0,
                RetentionSettings::default().keep_history.as_secs() / 86_400,
            ),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawIngest {
    max_evals_per_pass: Spanned<usize>,
    per_build_fetch_limit: usize,
    builds_per_request: usize,
    recheck_after_secs: u64,
    recheck_budget: usize,
    whole_eval_max_builds: usize,
    requests_per_pass: Spanned<usize>,
    cause_pages_per_pass: Spanned<usize>,
    origin_horizon_days: u64,
}

impl Default for RawIngest {
    fn default() -> Self {
        let d = IngestSettings::default();
        RawIngest {
            max_evals_per_pass: Spanned::new(0..0, d.max_evals_per_pass),
            per_build_fetch_limit: d.per_build_fetch_limit,
            builds_per_request: d.builds_per_request,
            recheck_after_secs: d.recheck_after.as_secs(),
            recheck_budget: d.recheck_budget,
            whole_eval_max_builds: d.whole_eval_max_builds,
            requests_per_pass: Spanned::new(0..0, d.requests_per_pass),
            cause_pages_per_pass: Spanned::new(0..0, d.cause_pages_per_pass),
            origin_horizon_days: d.origin_horizon.as_secs() / 86_400,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_relative_token_file_is_a_credential_of_whichever_unit_runs() {
        let config = Config::parse(
            "[github]\nrepo = \"NixOS/nixpkgs\"\nfork = \"bot/nixpkgs\"\npush_url = \"https://github.com/bot/nixpkgs.git\"\ntoken_file = \"github-token\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let github = config.github.unwrap();
        let once = std::ffi::OsStr::new("/run/credentials/hydra-sentinel-once.service");
        assert_eq!(
            github.token_path(Some(once)),
            Path::new("/run/credentials/hydra-sentinel-once.service/github-token")
        );
        assert_eq!(github.token_path(None), Path::new("github-token"));
        let mut absolute = github.clone();
        absolute.token_file = "/etc/token".into();
        assert_eq!(absolute.token_path(Some(once)), Path::new("/etc/token"));
    }

    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let config = parse(EXAMPLE).unwrap();
        assert_eq!(config.hydra.url.as_str(), "https://hydra.nixos.org/");
        assert_eq!(config.jobsets[0].to_string(), "nixpkgs:trunk");
        assert_eq!(
            config.database,
            Path::new("/var/lib/hydra-sentinel/state.sqlite")
        );
    }

    #[test]
    fn an_empty_file_means_nixpkgs_trunk_on_hydra_nixos_org() {
        let config = parse("").unwrap();
        assert_eq!(
            config.jobsets,
            vec![JobsetRef {
                project: "nixpkgs".into(),
                jobset: "trunk".into()
            }]
        );
        assert_eq!(config.hydra.max_in_flight, 2);
        assert_eq!(config.repository(), "NixOS/nixpkgs");
    }

    #[test]
    fn the_repository_of_compare_links_is_the_configured_github_repo() {
        let config = parse(
            "[github]\nrepo = \"someone/nixpkgs-fork\"\nfork = \"bot/nixpkgs\"\n\
             push_url = \"https://github.com/bot/nixpkgs.git\"\ntoken_file = \"/run/credentials/token\"\n",
        )
        .unwrap();
        assert_eq!(config.repository(), "someone/nixpkgs-fork");
    }

    #[test]
    fn the_content_budget_defaults_below_github_s_and_may_not_reach_it() {
        let github = "[github]\nrepo = \"NixOS/nixpkgs\"\nfork = \"bot/nixpkgs\"\n\
             push_url = \"https://github.com/bot/nixpkgs.git\"\ntoken_file = \"t\"\n";
        let config = parse(github).unwrap();
        assert_eq!(
            config.github.unwrap().content_budget,
            ContentBudget {
                per_minute: 20,
                per_hour: 150
            }
        );
        let tuned = parse(&format!(
            "{github}writes_per_minute = 5\nwrites_per_hour = 40\n"
        ))
        .unwrap();
        assert_eq!(tuned.github.unwrap().content_budget.per_hour, 40);
        let err = parse(&format!("{github}writes_per_hour = 500\n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.toml:6:19: github.writes_per_hour must be at least 1 and below GitHub's own limit of 500"
        );
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_line_and_column() {
        let err = parse("[hydra]\nurl = \"https://hydra.nixos.org\"\nurll = \"x\"\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("test.toml:3:1: unknown field `urll`"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1, "one line, no excerpt: {text}");
    }

    #[test]
    fn a_bad_value_names_its_place() {
        let err = parse("[hydra]\nmax_in_flight = 3\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.toml:2:17: hydra.max_in_flight must be 1 or 2 (Hydra is a shared service), not 3"
        );
        let err = parse("[[jobsets]]\nproject = \"nixpkgs\"\njobset = \"../x\"\n").unwrap_err();
        assert!(err.to_string().starts_with("test.toml:3:10:"), "{err}");
        let err = parse("[hydra]\nurl = \"ftp://x\"\n").unwrap_err();
        assert!(err.to_string().starts_with("test.toml:2:7:"), "{err}");
    }

    #[test]
    fn daemon_and_metrics_keys_are_typed_and_checked() {
        let config =
            parse("[daemon]\ninterval_secs = 60\n[metrics]\nlisten = \"127.0.0.1:0\"\n").unwrap();
        assert_eq!(config.daemon.interval, Duration::from_secs(60));
        assert_eq!(config.daemon.unhealthy_after_cycles, 3);
        assert_eq!(config.metrics.listen, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(
            parse("[metrics]\nenabled = false\n")
                .unwrap()
                .metrics
                .listen,
            None
        );
        let err = parse("[daemon]\ninterval_secs = 0\n").unwrap_err();
        assert!(err.to_string().starts_with("test.toml:2:17:"), "{err}");
        let err = parse("[metrics]\nlisten = \"localhost\"\n").unwrap_err();
        assert!(err.to_string().starts_with("test.toml:2:10:"), "{err}");
    }

    #[test]
    fn the_report_directory_is_optional_and_must_name_a_folder() {
        assert_eq!(parse("").unwrap().report.html_dir, None);
        let config = parse("[report]\nhtml_dir = \"/var/www/sentinel\"\n").unwrap();
        assert_eq!(
            config.report.html_dir.as_deref(),
            Some(Path::new("/var/www/sentinel"))
        );
        for bad in ["/", "..", "site/.."] {
            let err = parse(&format!("[report]\nhtml_dir = {bad:?}\n")).unwrap_err();
            assert!(
                err.to_string().starts_with("test.toml:2:12:"),
                "{bad}: {err}"
            );
        }
        let err = parse("[report]\nhtml-dir = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("html-dir"), "{err}");
    }

    #[test]
    fn the_pace_defaults_to_one_request_a_second_and_never_exceeds_hydras_limit() {
        let config = parse("").unwrap();
        assert_eq!(config.hydra.pacing, Pacing::default());
        assert_eq!(config.hydra.pacing.requests_per_second, 1.0);
        let config = parse("[hydra]\nrequests_per_second = 2\nburst = 7\n").unwrap();
        assert_eq!(
            config.hydra.pacing,
            Pacing {
                requests_per_second: 2.0,
                burst: 7
            }
        );
        let config = parse("[hydra]\nrequests_per_second = 0.25\n").unwrap();
        assert_eq!(config.hydra.pacing.requests_per_second, 0.25);
        for (text, place) in [
            ("[hydra]\nrequests_per_second = 2.5\n", "test.toml:2:23:"),
            ("[hydra]\nrequests_per_second = 0\n", "test.toml:2:23:"),
            ("[hydra]\nrequests_per_second = -1.0\n", "test.toml:2:23:"),
            ("[hydra]\nrequests_per_second = nan\n", "test.toml:2:23:"),
            ("[hydra]\nburst = 8\n", "test.toml:2:9:"),
            ("[hydra]\nburst = 0\n", "test.toml:2:9:"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.starts_with(place), "{text:?}: {err}");
        }
        let err = parse("[hydra]\nrequests_per_second = \"fast\"\n").unwrap_err();
        assert!(err.to_string().starts_with("test.toml:2:23:"), "{err}");
    }

    #[test]
    fn a_hydra_on_this_machine_is_not_paced() {
        for url in [
            "http://127.0.0.1:4000",
            "http://[::1]:4000",
            "http://localhost:4000",
        ] {
            let config = parse(&format!(
                "[hydra]\nurl = {url:?}\nrequests_per_second = 1\n"
            ))
            .unwrap();
            assert_eq!(config.hydra.pacing, Pacing::unlimited(), "{url}");
        }
        let config = parse("[hydra]\nurl = \"https://hydra.example.org\"\n").unwrap();
        assert_eq!(config.hydra.pacing, Pacing::default());
    }

    #[test]
    fn a_jobset_listed_twice_is_refused() {
        let text = "[[jobsets]]\nproject = \"nixpkgs\"\njobset = \"trunk\"\n[[jobsets]]\nproject = \"nixpkgs\"\njobset = \"trunk\"\n";
        assert!(
            parse(text)
                .unwrap_err()
                .to_string()
                .contains("listed twice")
        );
    }
}
