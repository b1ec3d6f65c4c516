//! A GitHub look-alike on loopback: a stateful REST server for the handful
//! of endpoints hydra-sentinel uses, in GitHub's JSON shapes, with the
//! faults that matter for acting exactly once (5xx, a create that succeeds
//! but answers 500, primary and secondary rate limits in each of GitHub's
//! shapes), the token's role on the repository and what it means for
//! labels, and items by deleted accounts (`"user": null`).
//!
//! Labels, as GitHub's REST reference ("Create an issue": "Only users with
//! push access can set labels for new issues. Labels are silently dropped
//! otherwise.") and reports of its behaviour have it: a create by a token
//! without push access drops existing labels silently but is refused whole
//! (403 "You do not have permission to create labels on this repository.")
//! when a label does not exist yet; adding labels afterwards needs triage,
//! and creating a missing one that way needs push.
//!
//! Strict mode ([`FakeGitHub::strict`]) also enforces GitHub's limits in
//! time: content creation (80 writes a minute, 500 an hour) and the primary
//! quota (5,000 requests an hour), on the look-alike's clock, which a test
//! may share with the client's simulated waits ([`FakeGitHub::use_clock`])
//! so that a year runs in seconds; its counters ([`FakeGitHub::most_writes_within`])
//! hold a client to its own, lower, budget.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::net::TcpStream;

use super::http::{Request, Served, read_request, respond};

/// A fault for the next request matching a method and a path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitHubFault {
    /// Answer this status without doing anything.
    Status(u16),
    /// Do the work, then answer 500: the client cannot know it happened.
    SucceedThen500,
    /// A secondary rate limit: 403 with `Retry-After`, nothing done.
    SecondaryRateLimit { retry_after_secs: u64 },
    /// Wait this long, then do the work and answer normally (a slow GitHub,
    /// or time for a test to kill the client mid-request).
    Delay(std::time::Duration),
    /// A primary rate limit: 403, `x-ratelimit-remaining: 0`, and
    /// `x-ratelimit-reset` this many seconds from now when given.
    PrimaryRateLimit { reset_in_secs: Option<u64> },
    /// A secondary rate limit that names no wait: 403 and a message.
    SecondaryRateLimitWithoutHeaders,
    /// 429 Too Many Requests, with `Retry-After` when given.
    TooManyRequests { retry_after_secs: Option<u64> },
}

/// A request as the server saw it. The Authorization header is reduced to
/// whether it carried the expected token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubRequest {
    pub method: String,
    pub target: String,
    pub body: String,
    pub authorized: bool,
    /// When it arrived (to measure the client's waits between attempts).
    pub at: std::time::Instant,
    pub user_agent: Option<String>,
    /// `X-GitHub-Api-Version`.
    pub api_version: Option<String>,
    /// The status answered.
    pub status: u16,
}

impl GitHubRequest {
    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

/// Who closes what a test's human closes.
pub const HUMAN_CLOSER: &str = "nixpkgs-maintainer";

/// Authors by this name are served as `"user": null` (a deleted account).
const DELETED: &str = "";

#[derive(Debug, Clone)]
struct Item {
    number: u64,
    title: String,
    body: String,
    state: String,
    labels: Vec<String>,
    /// [`DELETED`] for a deleted account.
    author: String,
    pull: Option<PullPart>,
    /// The look-alike's clock when it last changed (see [`State::tick`]).
    updated_at: i64,
    /// Who closed it, and why (`completed`, `not_planned`): GitHub shows
    /// both when one issue is read, not in listings.
    closed_by: Option<String>,
    state_reason: Option<String>,
}

#[derive(Debug, Clone)]
struct PullPart {
    head: String,
    base: String,
    merged: bool,
}

#[derive(Debug, Clone)]
struct StoredComment {
    id: u64,
    author: String,
    body: String,
    created_at: i64,
}

#[derive(Debug, Default)]
struct State {
    login: String,
    token: String,
    repo: String,
    next_number: u64,
    next_comment: u64,
    items: BTreeMap<u64, Item>,
    comments: BTreeMap<u64, Vec<StoredComment>>,
    /// Pull request reviews (`pulls/{n}/reviews`) and review comments
    /// (`pulls/{n}/comments`): ids of their own, as on GitHub.
    reviews: BTreeMap<u64, Vec<StoredComment>>,
    review_comments: BTreeMap<u64, Vec<StoredComment>>,
    faults: Vec<(String, String, GitHubFault)>,
    requests: Vec<GitHubRequest>,
    /// The token's role: `pull`, `triage`, `push`, `maintain` or `admin`.
    role: String,
    /// Labels that exist in the repository.
    repo_labels: Vec<String>,
    /// Seconds since [`EPOCH`]: one tick per change, so that every change
    /// has a time of its own and `since` is exact.
    clock: i64,
    /// Requests that counted against the primary rate limit (a 304 does
    /// not: GitHub's "Best practices for using the REST API").
    quota_used: u64,
    /// A fine-grained token of another owner: reads work, every write is
    /// refused.
    read_only_token: bool,
    /// The bot's fork belongs to an organisation: `maintainer_can_modify`
    /// is refused (422 `fork_collab`).
    organisation_fork: bool,
    /// Issues whose conversation is locked.
    locked: Vec<u64>,
    /// Forks of the repository by `owner/name`: whether the token may push.
    forks: BTreeMap<String, bool>,
    /// `x-oauth-scopes` of a classic token; `None` for other kinds.
    scopes: Option<String>,
    /// Accounts that exist besides the bot.
    accounts: Vec<String>,
    /// Unix milliseconds now: the real clock, or a test's (see
    /// [`FakeGitHub::use_clock`]).
    clock_millis: Clock,
    /// When each content-generating request (`POST`, `PATCH`, `PUT`,
    /// `DELETE`) GitHub processed arrived, Unix milliseconds, in order.
    writes: Vec<i64>,
    /// When each request that counted against the primary quota arrived.
    charged: Vec<i64>,
    /// GitHub's limits enforced on the clock: content creation (80 a
    /// minute, 500 an hour) and the primary quota (5,000 an hour).
    strict: bool,
}

/// A source of Unix milliseconds.
#[derive(Clone)]
struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Default for Clock {
    fn default() -> Clock {
        Clock(Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        }))
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// GitHub's content-creation limits ("no more than 80 content-generating
/// requests per minute and no more than 500 content-generating requests
/// per hour", "Rate limits for the REST API", "About secondary rate
/// limits"), as (allowed, window in ms).
const CONTENT_LIMITS: [(usize, i64); 2] = [(80, 60_000), (500, 3_600_000)];

/// How many of `times` (sorted) fall in the window of `window` ms ending
/// at `end` (inclusive).
fn within(times: &[i64], end: i64, window: i64) -> usize {
    let from = times.partition_point(|t| *t <= end - window);
    let to = times.partition_point(|t| *t <= end);
    to - from
}

fn rank(role: &str) -> u8 {
    match role {
        "admin" => 5,
        "maintain" => 4,
        "push" => 3,
        "triage" => 2,
        "pull" => 1,
        _ => 0,
    }
}

/// The look-alike's time zero: 2026-01-01T00:00:00Z.
const EPOCH: i64 = 1_767_225_600;

/// GitHub's primary limit for a token: 5,000 requests an hour.
const QUOTA: u64 = 5000;

fn time_json(clock: i64) -> String {
    chrono::DateTime::from_timestamp(EPOCH + clock, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A `since` query parameter on the look-alike's clock.
fn since_clock(since: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(since)
        .ok()
        .map(|t| t.timestamp() - EPOCH)
}

impl State {
    /// The time of a change.
    fn tick(&mut self) -> i64 {
        self.clock += 1;
        self.clock
    }

    /// A new open item by `author`, numbered next and changed now: an
    /// issue, or a pull request with `pull`. Its number.
    fn open_item(
        &mut self,
        author: &str,
        title: &str,
        body: &str,
        labels: Vec<String>,
        pull: Option<PullPart>,
    ) -> u64 {
        let number = self.next_number;
        self.next_number += 1;
        let updated_at = self.tick();
        self.items.insert(
            number,
            Item {
                number,
                title: title.to_owned(),
                body: body.to_owned(),
                state: "open".into(),
                labels,
                author: author.to_owned(),
                pull,
                updated_at,
                closed_by: None,
                state_reason: None,
            },
        );
        number
    }

    /// Item `number` changed now.
    fn touch(&mut self, number: u64) {
        let now = self.tick();
        if let Some(item) = self.items.get_mut(&number) {
            item.updated_at = now;
        }
    }

    fn at_least(&self, role: &str) -> bool {
        rank(&self.role) >= rank(role)
    }

    fn label_exists(&self, label: &str) -> bool {
        self.repo_labels
            .iter()
            .any(|l| l.eq_ignore_ascii_case(label))
    }
}

fn cannot_create_labels() -> Answer {
    (
        403,
        vec![],
        json!({"message": "You do not have permission to create labels on this repository.",
               "errors": [{"resource": "Repository", "field": "label", "code": "unauthorized"}]}),
    )
}

/// A running GitHub look-alike. Stops when dropped.
pub struct FakeGitHub {
    served: Served,
    state: Arc<Mutex<State>>,
}

impl FakeGitHub {
    /// Serve repository `repo` (`owner/name`) to a bot `login` holding `token`.
    pub fn start(repo: &str, login: &str, token: &str) -> std::io::Result<FakeGitHub> {
        let state = Arc::new(Mutex::new(State {
            login: login.to_owned(),
            token: token.to_owned(),
            repo: repo.to_owned(),
            next_number: 1,
            next_comment: 1,
            // What a bot working from a fork has on nixpkgs.
            role: "pull".into(),
            scopes: Some("public_repo".into()),
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        let served = Served::start("fake-github", move |stream| {
            let state = Arc::clone(&shared);
            async move {
                let _ = serve(stream, state).await;
            }
        })?;
        Ok(FakeGitHub { served, state })
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.served.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn inject(&self, method: &str, path_prefix: &str, fault: GitHubFault) {
        self.state()
            .faults
            .push((method.to_owned(), path_prefix.to_owned(), fault));
    }

    pub fn requests(&self) -> Vec<GitHubRequest> {
        self.state().requests.clone()
    }

    /// The requests to one endpoint (method and exact path, query aside), in
    /// the order they arrived: every attempt of a retried call is one.
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<GitHubRequest> {
        self.state()
            .requests
            .iter()
            .filter(|r| r.method == method && r.path() == path)
            .cloned()
            .collect()
    }

    /// The bot token's role on the repository (`pull` until set).
    pub fn set_role(&self, role: &str) {
        assert!(rank(role) > 0, "unknown role {role:?}");
        self.state().role = role.to_owned();
    }

    /// A label that exists in the repository.
    pub fn create_label(&self, name: &str) {
        self.state().repo_labels.push(name.to_owned());
    }

    /// Labels of an issue or pull request.
    pub fn labels_of(&self, number: u64) -> Vec<String> {
        self.state()
            .items
            .get(&number)
            .map(|i| i.labels.clone())
            .unwrap_or_default()
    }

    /// A human with triage rights labels an issue or pull request.
    pub fn human_labels(&self, number: u64, label: &str) {
        let mut state = self.state();
        if !state.label_exists(label) {
            state.repo_labels.push(label.to_owned());
        }
        if let Some(item) = state.items.get_mut(&number)
            && !item.labels.iter().any(|l| l == label)
        {
            item.labels.push(label.to_owned());
        }
        state.touch(number);
    }

    pub fn human_unlabels(&self, number: u64, label: &str) {
        let mut state = self.state();
        if let Some(item) = state.items.get_mut(&number) {
            item.labels.retain(|l| l != label);
        }
        state.touch(number);
    }

    /// A comment whose author's account was deleted since (`"user": null`).
    pub fn ghost_comments(&self, number: u64, body: &str) {
        self.human_comments(number, DELETED, body);
    }

    /// An open pull request by an account deleted since (`"user": null`),
    /// found by searches as any other.
    pub fn ghost_opens_pull(&self, title: &str) -> u64 {
        self.human_opens_pull(DELETED, title)
    }

    /// Issues and pull requests as (number, title, state, is_pull).
    pub fn items(&self) -> Vec<(u64, String, String, bool)> {
        self.state()
            .items
            .values()
            .map(|i| (i.number, i.title.clone(), i.state.clone(), i.pull.is_some()))
            .collect()
    }

    /// The head (`owner:branch`) of a pull request.
    pub fn head_of(&self, number: u64) -> Option<String> {
        self.state()
            .items
            .get(&number)
            .and_then(|i| i.pull.as_ref())
            .map(|p| p.head.clone())
    }

    /// Whether a pull request was merged.
    pub fn merged(&self, number: u64) -> bool {
        self.state()
            .items
            .get(&number)
            .and_then(|i| i.pull.as_ref())
            .is_some_and(|p| p.merged)
    }

    pub fn body_of(&self, number: u64) -> Option<String> {
        self.state().items.get(&number).map(|i| i.body.clone())
    }

    pub fn comments_on(&self, number: u64) -> Vec<(String, String)> {
        self.state()
            .comments
            .get(&number)
            .map(|cs| {
                cs.iter()
                    .map(|c| (c.author.clone(), c.body.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A human closes (or merges) a pull request or closes an issue.
    pub fn human_closes(&self, number: u64, merged: bool) {
        self.closes(number, merged, HUMAN_CLOSER, "not_planned");
    }

    /// The bot closed issue `number` itself (as it does on a recovery).
    pub fn closed_by_the_bot(&self, number: u64) {
        let login = self.state().login.clone();
        self.closes(number, false, &login, "completed");
    }

    fn closes(&self, number: u64, merged: bool, by: &str, reason: &str) {
        let mut state = self.state();
        if let Some(item) = state.items.get_mut(&number) {
            item.state = "closed".into();
            item.closed_by = Some(by.to_owned());
            item.state_reason = Some(reason.to_owned());
            if let Some(pull) = &mut item.pull {
                pull.merged = merged;
            }
        }
        state.touch(number);
    }

    pub fn human_comments(&self, number: u64, author: &str, body: &str) {
        let mut state = self.state();
        let id = state.next_comment;
        state.next_comment += 1;
        let created_at = state.tick();
        state
            .comments
            .entry(number)
            .or_default()
            .push(StoredComment {
                id,
                author: author.to_owned(),
                body: body.to_owned(),
                created_at,
            });
        state.touch(number);
    }

    /// A human submits a review with this text on pull request `number`.
    pub fn human_reviews(&self, number: u64, author: &str, body: &str) {
        let mut state = self.state();
        let at = state.tick();
        add_review_text(&mut state.reviews, number, author, body, at);
        state.touch(number);
    }

    /// A human comments on a line of pull request `number`'s diff.
    pub fn human_review_comments(&self, number: u64, author: &str, body: &str) {
        let mut state = self.state();
        let at = state.tick();
        add_review_text(&mut state.review_comments, number, author, body, at);
        state.touch(number);
    }

    /// The token becomes a fine-grained one that may read but not write
    /// here: every write answers 403.
    pub fn make_token_read_only(&self) {
        self.state().read_only_token = true;
    }

    /// Repository `full_name` is a fork of the repository; `push`: the
    /// token may push to it.
    pub fn add_fork(&self, full_name: &str, push: bool) {
        self.state().forks.insert(full_name.to_owned(), push);
    }

    /// The token's scopes as GitHub names them for a classic token
    /// (`x-oauth-scopes`); `None` for a fine-grained one (no such header).
    pub fn set_scopes(&self, scopes: Option<&str>) {
        self.state().scopes = scopes.map(str::to_owned);
    }

    /// An account `login` exists (the bot's always does).
    pub fn add_account(&self, login: &str) {
        self.state().accounts.push(login.to_owned());
    }

    /// The bot's fork is an organisation's.
    pub fn make_fork_an_organisations(&self) {
        self.state().organisation_fork = true;
    }

    /// A maintainer locks the conversation of issue `number`.
    pub fn lock(&self, number: u64) {
        self.state().locked.push(number);
        self.state().touch(number);
    }

    /// Read the time from `clock` (Unix milliseconds) instead of the real
    /// clock: a test's simulated time, which the client's waits move on.
    pub fn use_clock(&self, clock: impl Fn() -> i64 + Send + Sync + 'static) {
        self.state().clock_millis = Clock(Arc::new(clock));
    }

    /// Enforce GitHub's limits as github.com does, on the look-alike's
    /// clock: at most 80 content-generating requests a minute and 500 an
    /// hour (a 403 secondary rate limit with `Retry-After: 60` beyond), and
    /// 5,000 requests an hour against the quota (a 403 with
    /// `x-ratelimit-remaining: 0` until the oldest leaves the hour).
    pub fn strict(&self) {
        self.state().strict = true;
    }

    /// The most content-generating requests GitHub processed within any
    /// span of `window`, and when (Unix ms) that span ended: to hold a
    /// client to a budget per minute or per hour.
    pub fn most_writes_within(&self, window: std::time::Duration) -> (usize, i64) {
        let state = self.state();
        let window = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        state
            .writes
            .iter()
            .map(|end| (within(&state.writes, *end, window), *end))
            .max_by_key(|(count, end)| (*count, -end))
            .unwrap_or((0, 0))
    }

    /// Content-generating requests GitHub processed, in all.
    pub fn writes(&self) -> usize {
        self.state().writes.len()
    }

    /// Requests that counted against the token's primary rate limit.
    pub fn quota_used(&self) -> u64 {
        self.state().quota_used
    }

    /// Requests by endpoint (`GET /repos/{repo}/issues/{n}/comments`; the
    /// repository and numbers left out) and answer (`304` apart), for
    /// budgets: `(endpoint, status) -> count`.
    pub fn requests_by_endpoint(&self) -> BTreeMap<(String, u16), usize> {
        let state = self.state();
        let mut counts = BTreeMap::new();
        for request in &state.requests {
            *counts
                .entry((endpoint_of(&state.repo, request), request.status))
                .or_insert(0) += 1;
        }
        counts
    }

    /// An open issue that exists already (opened by `author`, the bot
    /// included, before the test began).
    pub fn existing_issue(&self, author: &str, title: &str, body: &str) -> u64 {
        self.state()
            .open_item(author, title, body, Vec::new(), None)
    }

    /// A committer opens a pull request from the repository's own branch
    /// `branch` into `base` (as `staging-next` into `master`).
    pub fn human_opens_branch_pull(&self, branch: &str, base: &str, title: &str) -> u64 {
        let number = self.human_opens_pull(HUMAN_CLOSER, title);
        let mut state = self.state();
        let owner = state
            .repo
            .split_once('/')
            .map_or(state.repo.clone(), |(o, _)| o.to_owned());
        if let Some(pull) = state.items.get_mut(&number).and_then(|i| i.pull.as_mut()) {
            pull.head = format!("{owner}:{branch}");
            pull.base = base.to_owned();
        }
        state.touch(number);
        number
    }

    pub fn human_opens_pull(&self, author: &str, title: &str) -> u64 {
        self.state().open_item(
            author,
            title,
            "",
            Vec::new(),
            Some(PullPart {
                head: format!("{author}:patch"),
                base: "master".into(),
                merged: false,
            }),
        )
    }
}

async fn serve(stream: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let (request, mut stream) = read_request(stream).await?;
    let delay = {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        let position = state.faults.iter().position(|(m, p, f)| {
            *m == request.method
                && request.path().starts_with(p.as_str())
                && matches!(f, GitHubFault::Delay(_))
        });
        position.map(|i| state.faults.remove(i).2)
    };
    if let Some(GitHubFault::Delay(delay)) = delay {
        tokio::time::sleep(delay).await;
    }
    let (status, headers, body) = {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        handle(&mut state, &request)
    };
    let mut all_headers = vec![("Content-Type", "application/json; charset=utf-8".to_owned())];
    all_headers.extend(headers);
    // A 304 carries no body.
    let body = if status == 304 {
        String::new()
    } else {
        body.to_string()
    };
    respond(&mut stream, status, &all_headers, body.as_bytes()).await
}

type Answer = (u16, Vec<(&'static str, String)>, Value);

fn handle(state: &mut State, request: &Request) -> Answer {
    let auth = request
        .headers
        .get("authorization")
        .cloned()
        .unwrap_or_default();
    let authorized =
        auth == format!("Bearer {}", state.token) || auth == format!("token {}", state.token);
    state.requests.push(GitHubRequest {
        method: request.method.clone(),
        target: request.target.clone(),
        body: String::from_utf8_lossy(&request.body).into_owned(),
        authorized,
        at: std::time::Instant::now(),
        user_agent: request.headers.get("user-agent").cloned(),
        api_version: request.headers.get("x-github-api-version").cloned(),
        status: 0,
    });
    let now = (state.clock_millis.0)();
    let mut answer = match strict_limit(state, request, now) {
        Some(limited) => limited,
        None => answer(state, request, authorized),
    };
    if request.method != "GET" && (200..300).contains(&answer.0) {
        state.writes.push(now);
    }
    if request.method == "GET" && answer.0 == 200 {
        let etag = etag_of(&answer.2.to_string());
        let if_none_match = request.headers.get("if-none-match");
        if if_none_match.is_some_and(|sent| sent.split(',').any(|e| e.trim() == etag)) {
            answer = (304, vec![], Value::Null);
        }
        answer.1.push(("ETag", etag));
    }
    // A 304 to a request made with the token costs no quota (GitHub's "Best
    // practices for using the REST API", "Use conditional requests").
    if answer.0 != 304 {
        state.quota_used += 1;
        state.charged.push(now);
    }
    if !answer
        .1
        .iter()
        .any(|(name, _)| name.starts_with("x-ratelimit"))
    {
        // Strict: the quota of the last hour, as GitHub's resets hourly.
        let used = if state.strict {
            within(&state.charged, now, 3_600_000) as u64
        } else {
            state.quota_used
        };
        answer.1.extend([
            ("x-ratelimit-limit", QUOTA.to_string()),
            (
                "x-ratelimit-remaining",
                QUOTA.saturating_sub(used).to_string(),
            ),
            ("x-ratelimit-used", used.to_string()),
            ("x-ratelimit-resource", "core".to_owned()),
        ]);
    }
    if authorized && let Some(scopes) = &state.scopes {
        answer.1.push(("x-oauth-scopes", scopes.clone()));
    }
    if let Some(seen) = state.requests.last_mut() {
        seen.status = answer.0;
    }
    answer
}

/// In strict mode, GitHub's answer to a request beyond one of its limits
/// on the look-alike's clock; `None` when the request is within them.
fn strict_limit(state: &State, request: &Request, now: i64) -> Option<Answer> {
    if !state.strict {
        return None;
    }
    let hour = 3_600_000;
    if within(&state.charged, now, hour) >= QUOTA as usize {
        let oldest = state.charged[state.charged.len() - QUOTA as usize];
        return Some((
            403,
            vec![
                ("x-ratelimit-limit", QUOTA.to_string()),
                ("x-ratelimit-remaining", "0".to_owned()),
                ("x-ratelimit-used", QUOTA.to_string()),
                (
                    "x-ratelimit-reset",
                    ((oldest + hour) / 1000 + 1).to_string(),
                ),
                ("x-ratelimit-resource", "core".to_owned()),
            ],
            json!({"message": "API rate limit exceeded for user ID 1.",
                   "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}),
        ));
    }
    let writes = request.method != "GET";
    let over = CONTENT_LIMITS
        .iter()
        .any(|(allowed, window)| within(&state.writes, now, *window) >= *allowed);
    (writes && over).then(|| {
        (
            403,
            vec![("Retry-After", "60".to_owned())],
            json!({"message": "You have exceeded a secondary rate limit and have been temporarily blocked from content creation. Please retry your request again later.",
                   "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}),
        )
    })
}

/// GitHub's limit on an issue, pull request or comment body, in characters.
const BODY_LIMIT: usize = 65_536;

fn answer(state: &mut State, request: &Request, authorized: bool) -> Answer {
    if !authorized {
        return (401, vec![], json!({"message": "Bad credentials"}));
    }
    // As github.com: a body over the limit is a validation error (422), the
    // whole request refused.
    if matches!(request.method.as_str(), "POST" | "PATCH")
        && let Ok(sent) = serde_json::from_slice::<Value>(&request.body)
        && sent
            .get("body")
            .and_then(Value::as_str)
            .is_some_and(|b| b.chars().count() > BODY_LIMIT)
    {
        return (
            422,
            vec![],
            json!({
                "message": "Validation Failed",
                "errors": [{"resource": "Issue", "code": "custom", "field": "body",
                            "message": "body is too long (maximum is 65536 characters)"}],
                "documentation_url": "https://docs.github.com/rest/issues/issues#create-an-issue",
            }),
        );
    }
    let fault = state
        .faults
        .iter()
        .position(|(m, p, _)| *m == request.method && request.path().starts_with(p.as_str()))
        .map(|i| state.faults.remove(i).2);
    match fault {
        Some(GitHubFault::Status(status)) => {
            return (status, vec![], json!({"message": "injected"}));
        }
        Some(GitHubFault::SecondaryRateLimit { retry_after_secs }) => {
            return (
                403,
                vec![("Retry-After", retry_after_secs.to_string())],
                json!({"message": "You have exceeded a secondary rate limit."}),
            );
        }
        Some(GitHubFault::PrimaryRateLimit { reset_in_secs }) => {
            let mut headers = vec![
                ("x-ratelimit-limit", "5000".to_owned()),
                ("x-ratelimit-remaining", "0".to_owned()),
                ("x-ratelimit-used", "5000".to_owned()),
            ];
            if let Some(secs) = reset_in_secs {
                let reset = (state.clock_millis.0)() / 1000 + secs as i64;
                headers.push(("x-ratelimit-reset", reset.to_string()));
            }
            return (
                403,
                headers,
                json!({"message": "API rate limit exceeded for user ID 1."}),
            );
        }
        Some(GitHubFault::SecondaryRateLimitWithoutHeaders) => {
            return (
                403,
                vec![],
                json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}),
            );
        }
        Some(GitHubFault::TooManyRequests { retry_after_secs }) => {
            let headers = retry_after_secs
                .map(|s| vec![("Retry-After", s.to_string())])
                .unwrap_or_default();
            return (429, headers, json!({"message": "Too Many Requests"}));
        }
        Some(GitHubFault::SucceedThen500) => {
            let _ = route(state, request);
            return (
                500,
                vec![],
                json!({"message": "injected after the work was done"}),
            );
        }
        Some(GitHubFault::Delay(_)) | None => {}
    }
    route(state, request)
}

fn route(state: &mut State, request: &Request) -> Answer {
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    if state.read_only_token && request.method != "GET" {
        return (
            403,
            vec![],
            json!({"message": "Resource not accessible by personal access token",
                   "documentation_url": "https://docs.github.com/rest/issues/issues#create-an-issue",
                   "status": "403"}),
        );
    }
    let query = request.query();
    let repo_prefix = format!("/repos/{}/", state.repo);
    let path = request.path().to_owned();
    if request.method == "GET" && path == "/user" {
        return (200, vec![], json!({"login": state.login, "id": 1}));
    }
    if request.method == "GET" && path == format!("/repos/{}", state.repo) {
        return (
            200,
            vec![],
            json!({
                "full_name": state.repo,
                "permissions": {
                    "admin": state.at_least("admin"),
                    "maintain": state.at_least("maintain"),
                    "push": state.at_least("push"),
                    "triage": state.at_least("triage"),
                    "pull": state.at_least("pull"),
                },
            }),
        );
    }
    if request.method == "GET"
        && let Some(login) = path.strip_prefix("/users/")
    {
        let known = login.eq_ignore_ascii_case(&state.login)
            || state.accounts.iter().any(|a| a.eq_ignore_ascii_case(login));
        return if known {
            (200, vec![], json!({"login": login, "type": "User"}))
        } else {
            (404, vec![], json!({"message": "Not Found"}))
        };
    }
    if request.method == "GET"
        && let Some(full_name) = path.strip_prefix("/repos/")
        && let Some(push) = state.forks.get(full_name)
    {
        return (
            200,
            vec![],
            json!({
                "full_name": full_name,
                "fork": true,
                "default_branch": "master",
                "parent": {"full_name": state.repo},
                "permissions": {"admin": *push, "maintain": *push, "push": *push,
                                "triage": *push, "pull": true},
            }),
        );
    }
    if request.method == "GET" && path == "/search/issues" {
        let q = query.get("q").cloned().unwrap_or_default();
        let items: Vec<Value> = state
            .items
            .values()
            .filter(|i| search_matches(i, &q))
            .map(|i| item_json(state, i))
            .collect();
        return (
            200,
            vec![],
            json!({"total_count": items.len(), "incomplete_results": false, "items": items}),
        );
    }
    let Some(rest) = path.strip_prefix(&repo_prefix) else {
        return (404, vec![], json!({"message": "Not Found"}));
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let number = |s: &str| s.parse::<u64>().ok();
    match (request.method.as_str(), parts.as_slice()) {
        ("GET", ["issues"]) => {
            let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
            let per_page: usize = query
                .get("per_page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(30);
            let wanted_state = query.get("state").cloned().unwrap_or_else(|| "open".into());
            // "updated at or after" the given time, as github.com does.
            let since = query.get("since").and_then(|s| since_clock(s));
            let mut items: Vec<&Item> = state
                .items
                .values()
                .filter(|i| query.get("creator").is_none_or(|c| *c == i.author))
                .filter(|i| query.get("labels").is_none_or(|l| i.labels.contains(l)))
                .filter(|i| wanted_state == "all" || i.state == wanted_state)
                .filter(|i| since.is_none_or(|s| i.updated_at >= s))
                .collect();
            // GitHub's default: newest created first.
            match query.get("sort").map(String::as_str) {
                Some("updated") => items.sort_by_key(|i| (i.updated_at, i.number)),
                _ => items.sort_by_key(|i| i.number),
            }
            if query.get("direction").is_none_or(|d| d == "desc") {
                items.reverse();
            }
            let items: Vec<Value> = items
                .into_iter()
                .skip((page.max(1) - 1) * per_page)
                .take(per_page)
                .map(|i| item_json(state, i))
                .collect();
            (200, vec![], Value::Array(items))
        }
        ("POST", ["issues"]) => {
            let asked = labels(&body["labels"]);
            let labels = if state.at_least("push") {
                for label in &asked {
                    if !state.label_exists(label) {
                        state.repo_labels.push(label.clone());
                    }
                }
                asked
            } else if asked.iter().all(|l| state.label_exists(l)) {
                // "Labels are silently dropped otherwise."
                Vec::new()
            } else {
                return cannot_create_labels();
            };
            let login = state.login.clone();
            let number = state.open_item(
                &login,
                body["title"].as_str().unwrap_or_default(),
                body["body"].as_str().unwrap_or_default(),
                labels,
                None,
            );
            (201, vec![], item_json(state, &state.items[&number]))
        }
        ("GET", ["issues", n]) => match number(n).and_then(|n| state.items.get(&n)) {
            Some(item) => {
                let mut value = item_json(state, item);
                value["closed_by"] = item.closed_by.as_deref().map_or(Value::Null, user_json);
                value["state_reason"] = item.state_reason.clone().map_or(Value::Null, Value::from);
                (200, vec![], value)
            }
            None => (404, vec![], json!({"message": "Not Found"})),
        },
        ("PATCH", ["issues" | "pulls", n]) => {
            let now = state.tick();
            let login = state.login.clone();
            let Some(item) = number(n).and_then(|n| state.items.get_mut(&n)) else {
                return (404, vec![], json!({"message": "Not Found"}));
            };
            if let Some(text) = body["body"].as_str() {
                item.body = text.to_owned();
            }
            if let Some(new_state) = body["state"].as_str() {
                item.state = new_state.to_owned();
                let closed = new_state == "closed";
                item.closed_by = closed.then(|| login.clone());
                item.state_reason = if closed {
                    Some(
                        body["state_reason"]
                            .as_str()
                            .unwrap_or("completed")
                            .to_owned(),
                    )
                } else {
                    Some("reopened".to_owned())
                };
            }
            item.updated_at = now;
            let item = item.clone();
            let answer = if parts[0] == "pulls" {
                pull_json(state, &item)
            } else {
                item_json(state, &item)
            };
            (200, vec![], answer)
        }
        ("POST", ["issues", n, "comments"]) => {
            let Some(n) = number(n).filter(|n| state.items.contains_key(n)) else {
                return (404, vec![], json!({"message": "Not Found"}));
            };
            if state.locked.contains(&n) && !state.at_least("push") {
                return (
                    403,
                    vec![],
                    json!({"message": "Unable to create comment because issue is locked.",
                           "documentation_url": "https://docs.github.com/articles/locking-conversations/"}),
                );
            }
            let id = state.next_comment;
            state.next_comment += 1;
            let comment = StoredComment {
                id,
                author: state.login.clone(),
                body: body["body"].as_str().unwrap_or_default().to_owned(),
                created_at: state.tick(),
            };
            let answer = comment_json(&comment);
            state.comments.entry(n).or_default().push(comment);
            state.touch(n);
            (201, vec![], answer)
        }
        ("PATCH", ["issues", "comments", id]) => {
            let login = state.login.clone();
            let Some(comment) = number(id)
                .and_then(|id| state.comments.values_mut().flatten().find(|c| c.id == id))
            else {
                return (404, vec![], json!({"message": "Not Found"}));
            };
            // Only the author (or a maintainer, which the bot is not) may edit.
            if !comment.author.eq_ignore_ascii_case(&login) {
                return (
                    403,
                    vec![],
                    json!({"message": "Resource not accessible by integration"}),
                );
            }
            if let Some(text) = body["body"].as_str() {
                comment.body = text.to_owned();
            }
            let answer = comment_json(comment);
            (200, vec![], answer)
        }
        ("GET", ["pulls", n, kind @ ("reviews" | "comments")]) => {
            let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
            let per_page: usize = query
                .get("per_page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(30);
            let store = if *kind == "reviews" {
                &state.reviews
            } else {
                &state.review_comments
            };
            let listed: Vec<Value> = number(n)
                .and_then(|n| store.get(&n))
                .map(|cs| {
                    cs.iter()
                        .skip((page.max(1) - 1) * per_page)
                        .take(per_page)
                        .map(|c| {
                            let mut v = comment_json(c);
                            if *kind == "reviews" {
                                // A review has `submitted_at` and a state, not `created_at`.
                                v["submitted_at"] = v["created_at"].take();
                                v.as_object_mut().map(|o| o.remove("created_at"));
                                v["state"] = json!("COMMENTED");
                            }
                            v
                        })
                        .collect()
                })
                .unwrap_or_default();
            (200, vec![], Value::Array(listed))
        }
        ("GET", ["issues", n, "comments"]) => {
            let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
            let per_page: usize = query
                .get("per_page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(30);
            let since = query.get("since").and_then(|s| since_clock(s));
            let comments: Vec<Value> = number(n)
                .and_then(|n| state.comments.get(&n))
                .map(|cs| {
                    cs.iter()
                        .filter(|c| since.is_none_or(|s| c.created_at >= s))
                        .skip((page.max(1) - 1) * per_page)
                        .take(per_page)
                        .map(comment_json)
                        .collect()
                })
                .unwrap_or_default();
            (200, vec![], Value::Array(comments))
        }
        ("POST", ["issues", n, "labels"]) => {
            let asked = labels(&body["labels"]);
            if !state.at_least("triage") {
                return (
                    403,
                    vec![],
                    json!({"message": "Resource not accessible by personal access token"}),
                );
            }
            if !state.at_least("push") && !asked.iter().all(|l| state.label_exists(l)) {
                return cannot_create_labels();
            }
            for label in &asked {
                if !state.label_exists(label) {
                    state.repo_labels.push(label.clone());
                }
            }
            let now = state.tick();
            match number(n).and_then(|n| state.items.get_mut(&n)) {
                Some(item) => {
                    for label in asked {
                        if !item.labels.contains(&label) {
                            item.labels.push(label);
                        }
                    }
                    item.updated_at = now;
                    (
                        200,
                        vec![],
                        json!(
                            item.labels
                                .iter()
                                .map(|l| json!({"name": l}))
                                .collect::<Vec<_>>()
                        ),
                    )
                }
                None => (404, vec![], json!({"message": "Not Found"})),
            }
        }
        ("GET", ["pulls"]) => {
            // GitHub's filters: `state` (open by default), `head`
            // (`user:ref-name`), `base`; `sort=created` with
            // `direction=desc` puts the newest first; `per_page` cuts.
            let wanted = query.get("state").map_or("open", String::as_str);
            let mut pulls: Vec<&Item> = state
                .items
                .values()
                .filter(|i| wanted == "all" || i.state == wanted)
                .filter(|i| {
                    i.pull.as_ref().is_some_and(|p| {
                        query.get("head").is_none_or(|h| *h == p.head)
                            && query.get("base").is_none_or(|b| *b == p.base)
                    })
                })
                .collect();
            if query.get("direction").is_some_and(|d| d == "desc") {
                pulls.reverse();
            }
            let per_page = query
                .get("per_page")
                .and_then(|n| n.parse().ok())
                .unwrap_or(30usize);
            let pulls = pulls
                .into_iter()
                .take(per_page)
                .map(|i| pull_json(state, i))
                .collect();
            (200, vec![], Value::Array(pulls))
        }
        ("POST", ["pulls"]) => {
            let head = body["head"].as_str().unwrap_or_default().to_owned();
            if state.organisation_fork && body["maintainer_can_modify"].as_bool() != Some(false) {
                return (
                    422,
                    vec![],
                    json!({"message": "Validation Failed",
                           "errors": [{"resource": "PullRequest", "code": "custom", "field": "fork_collab",
                                       "message": "Fork collab can't be granted by someone without permission"}],
                           "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"}),
                );
            }
            let open_twin = state
                .items
                .values()
                .any(|i| i.state == "open" && i.pull.as_ref().is_some_and(|p| p.head == head));
            if open_twin {
                // GitHub refuses a second open pull request from one branch.
                return (
                    422,
                    vec![],
                    json!({"message": "Validation Failed",
                    "errors": [{"message": format!("A pull request already exists for {head}.")}]}),
                );
            }
            let login = state.login.clone();
            let number = state.open_item(
                &login,
                body["title"].as_str().unwrap_or_default(),
                body["body"].as_str().unwrap_or_default(),
                Vec::new(),
                Some(PullPart {
                    head,
                    base: body["base"].as_str().unwrap_or("master").to_owned(),
                    merged: false,
                }),
            );
            (201, vec![], pull_json(state, &state.items[&number]))
        }
        ("GET", ["pulls", n]) => match number(n)
            .and_then(|n| state.items.get(&n))
            .filter(|i| i.pull.is_some())
        {
            Some(item) => (200, vec![], pull_json(state, item)),
            None => (404, vec![], json!({"message": "Not Found"})),
        },
        _ => (404, vec![], json!({"message": "Not Found"})),
    }
}

fn labels(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A small subset of GitHub's search syntax: `is:pr`, `is:issue`,
/// `is:open`, `is:closed`, `author:x`, `repo:x` (ignored) and quoted
/// phrases looked for in the title (with `in:title`) or title and body.
fn search_matches(item: &Item, q: &str) -> bool {
    let mut rest = q.to_owned();
    let mut phrases = Vec::new();
    while let Some(start) = rest.find('"') {
        let Some(len) = rest[start + 1..].find('"') else {
            break;
        };
        phrases.push(rest[start + 1..start + 1 + len].to_owned());
        rest.replace_range(start..start + len + 2, " ");
    }
    let title_only = rest.split_whitespace().any(|w| w == "in:title");
    let words_ok = rest.split_whitespace().all(|w| match w {
        "is:pr" => item.pull.is_some(),
        "is:issue" => item.pull.is_none(),
        "is:open" => item.state == "open",
        "is:closed" => item.state == "closed",
        w if w.starts_with("author:") => item.author == w["author:".len()..],
        _ => true,
    });
    // As GitHub: a phrase matches words, not characters. Punctuation splits
    // words, so "hello:" finds "hello-unfree: 1.0 -> 1.1" too.
    let words = |text: &str| -> Vec<String> {
        text.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let has_phrase = |text: &str, phrase: &str| {
        let (text, phrase) = (words(text), words(phrase));
        !phrase.is_empty() && text.windows(phrase.len()).any(|w| w == phrase.as_slice())
    };
    words_ok
        && phrases
            .iter()
            .all(|p| has_phrase(&item.title, p) || (!title_only && has_phrase(&item.body, p)))
}

fn item_json(state: &State, item: &Item) -> Value {
    let mut value = json!({
        "number": item.number,
        "title": item.title,
        "body": item.body,
        "state": item.state,
        "labels": item.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
        "user": user_json(&item.author),
        "html_url": format!("https://github.com/{}/issues/{}", state.repo, item.number),
        "updated_at": time_json(item.updated_at),
    });
    if item.pull.is_some() {
        value["pull_request"] = json!({"url": format!("https://api.github.com/repos/{}/pulls/{}", state.repo, item.number)});
    }
    value
}

fn pull_json(state: &State, item: &Item) -> Value {
    let pull = item.pull.clone().unwrap_or(PullPart {
        head: String::new(),
        base: String::new(),
        merged: false,
    });
    json!({
        "number": item.number,
        "title": item.title,
        "body": item.body,
        "state": item.state,
        "merged_at": if pull.merged { json!("2026-01-01T00:00:00Z") } else { Value::Null },
        "head": {"label": pull.head, "ref": pull.head.split_once(':').map_or(pull.head.as_str(), |(_, b)| b)},
        "base": {"label": pull.base, "ref": pull.base},
        "labels": item.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
        "user": user_json(&item.author),
        "html_url": format!("https://github.com/{}/pull/{}", state.repo, item.number),
        "updated_at": time_json(item.updated_at),
    })
}

/// A user object, or `null` for a deleted account.
fn user_json(login: &str) -> Value {
    if login == DELETED {
        Value::Null
    } else {
        json!({"login": login})
    }
}

/// A review or review comment. GitHub numbers each kind in a sequence of
/// its own: the same number as an issue comment's is a different thing.
fn add_review_text(
    store: &mut BTreeMap<u64, Vec<StoredComment>>,
    number: u64,
    author: &str,
    body: &str,
    created_at: i64,
) {
    let id = store.values().map(Vec::len).sum::<usize>() as u64 + 1;
    store.entry(number).or_default().push(StoredComment {
        id,
        author: author.to_owned(),
        body: body.to_owned(),
        created_at,
    });
}

fn comment_json(comment: &StoredComment) -> Value {
    json!({
        "id": comment.id,
        "body": comment.body,
        "user": user_json(&comment.author),
        "created_at": time_json(comment.created_at),
        "updated_at": time_json(comment.created_at),
    })
}

/// A request's endpoint with the repository and numbers left out.
fn endpoint_of(repo: &str, request: &GitHubRequest) -> String {
    let path = request
        .path()
        .replacen(&format!("/repos/{repo}"), "/repos/{repo}", 1);
    let path: Vec<String> = path
        .split('/')
        .map(|part| {
            if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
                "{n}".to_owned()
            } else {
                part.to_owned()
            }
        })
        .collect();
    format!("{} {}", request.method, path.join("/"))
}

/// A strong ETag for an answer's body (FNV-1a), as GitHub sends one on
/// every `GET` it answers 200.
fn etag_of(body: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in body.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{hash:016x}\"")
}
