//! The real forge: GitHub's REST API through octocrab.
//!
//! octocrab supplies TLS and HTTP; we use its raw request methods so that
//! every answer's status and rate-limit headers pass through one place
//! ([`GitHub::send`]) that knows which requests may be repeated. octocrab's
//! own retry layer is left out: it would repeat a `POST` after a 5xx, which
//! may duplicate an issue or a pull request.
//!
//! Identity: every request says who we are (`User-Agent:
//! hydra-sentinel/<version> (+<contact>)`, GitHub requires a User-Agent and
//! asks for the app's name or the owner's contact) and which API version we
//! speak (`X-GitHub-Api-Version: 2022-11-28`: octocrab 0.54 sets it on every
//! request it builds, from its `[package.metadata.github-api]
//! request-headers`; the forge tests check it arrives, once). octocrab's default builder
//! always sends `User-Agent: octocrab` and appends headers from
//! `OctocrabBuilder::add_header` after it (its `ExtraHeaders` middleware
//! extends the request's `HeaderMap`, which appends), so the request would
//! carry two User-Agents; we assemble the service stack ourselves instead,
//! as octocrab's `examples/custom_client.rs` does, with exactly our headers.
//!
//! Rate limits follow GitHub's "Rate limits for the REST API" page
//! (apiVersion 2022-11-28, "Exceeding the rate limit"): a 403 or 429 with
//! `retry-after` waits that many seconds; with `x-ratelimit-remaining: 0`
//! until `x-ratelimit-reset`; otherwise at least a minute, then
//! exponentially longer; and after a bounded number of tries it gives up
//! with [`ForgeError::RateLimited`], which ends the cycle with that reason.
//!
//! Must never: log or return the token (it travels in a header marked
//! sensitive), repeat a write that GitHub may have processed, or wait
//! unboundedly.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue, USER_AGENT};
use http_body_util::BodyExt;
use octocrab::service::middleware::base_uri::BaseUriLayer;
use octocrab::service::middleware::extra_headers::ExtraHeadersLayer;
use octocrab::{AuthState, Octocrab, OctocrabBuilder};
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::{Value, json};
use url::Url;

use super::{
    Comment, Forge, ForgeError, GHOST, Issue, Memo, NewIssue, NewPull, Permission, PullRequest,
    Secret, State,
};

/// Most pages read when listing (100 items each): 100,000 items, far above
/// any repository's count of one bot's issues and pull requests, so only a
/// wrong login (a human's token with years of work) ends a cycle this way.
const MAX_PAGES: usize = 1000;

/// The User-Agent of every GitHub request: the program, its version, and
/// how to reach whoever runs it (GitHub: "use your GitHub username, or the
/// name of your application").
pub fn user_agent(contact: Option<&str>) -> String {
    // A header value: visible ASCII only, whatever the configuration says.
    let contact: String = contact
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect();
    match contact.trim() {
        "" => format!("hydra-sentinel/{}", env!("CARGO_PKG_VERSION")),
        contact => format!("hydra-sentinel/{} (+{contact})", env!("CARGO_PKG_VERSION")),
    }
}

/// How the client waits (rate limits, retries): the real clock, or in
/// tests a recording, time-scaled one.
#[derive(Clone)]
pub struct Sleeper(Arc<dyn Fn(Duration) -> BoxFuture<'static, ()> + Send + Sync>);

impl Sleeper {
    pub fn real() -> Sleeper {
        Sleeper(Arc::new(|d| Box::pin(tokio::time::sleep(d))))
    }

    /// Record every wait asked for, and sleep it divided by `scale`.
    pub fn recording(scale: u32) -> (Sleeper, Arc<Mutex<Vec<Duration>>>) {
        let waits = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&waits);
        let sleeper = Sleeper(Arc::new(move |d: Duration| {
            seen.lock().unwrap_or_else(|p| p.into_inner()).push(d);
            Box::pin(tokio::time::sleep(d / scale.max(1))) as BoxFuture<'static, ()>
        }));
        (sleeper, waits)
    }

    async fn sleep(&self, wait: Duration) {
        (self.0)(wait).await
    }
}

impl std::fmt::Debug for Sleeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sleeper")
    }
}

#[derive(Debug, Clone)]
pub struct GitHubSettings {
    /// `https://api.github.com`, or a test server.
    pub api_url: Url,
    /// `owner/name` of the repository acted on.
    pub repo: String,
    pub token: Secret,
    /// The `User-Agent` header (see [`user_agent`]).
    pub user_agent: String,
    /// Longest single rate-limit wait ridden out inside one call; a longer
    /// one is returned as [`ForgeError::RateLimited`] at once.
    pub max_rate_limit_wait: Duration,
    /// Rate-limited answers tolerated for one request; the last one ends it
    /// with [`ForgeError::RateLimited`].
    pub rate_limit_attempts: usize,
    /// The first wait when GitHub says "rate limit" but not how long
    /// (GitHub: "wait for at least one minute"); doubled on each repeat.
    pub rate_limit_floor: Duration,
    /// Retries of reads after a 5xx or a transport error, with exponential
    /// backoff from `retry_base_delay`.
    pub read_retries: usize,
    pub retry_base_delay: Duration,
    /// Least time between two writes: GitHub asks integrators to space
    /// content-creating requests to avoid secondary rate limits.
    pub min_write_interval: Duration,
    pub sleeper: Sleeper,
}

impl GitHubSettings {
    pub fn new(api_url: Url, repo: &str, token: Secret) -> GitHubSettings {
        GitHubSettings {
            api_url,
            repo: repo.to_owned(),
            token,
            user_agent: user_agent(None),
            // Below the service's watchdog: a longer wait ends the cycle and
            // the next one comes back.
            max_rate_limit_wait: Duration::from_secs(5 * 60),
            rate_limit_attempts: 5,
            rate_limit_floor: Duration::from_secs(60),
            read_retries: 4,
            retry_base_delay: Duration::from_millis(500),
            min_write_interval: Duration::from_secs(1),
            sleeper: Sleeper::real(),
        }
    }
}

pub struct GitHub {
    octo: Octocrab,
    api: Url,
    repo: String,
    settings: GitHubSettings,
    last_write: Mutex<Option<Instant>>,
    permission: tokio::sync::OnceCell<Permission>,
    login: tokio::sync::OnceCell<String>,
    /// What GitHub told earlier clients and this one (see [`Memo`]).
    memo: Mutex<Memo>,
    /// Whose items this client listed already: one listing per client (a
    /// cycle), our own writes kept in the memo after it.
    listed: tokio::sync::OnceCell<String>,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub")
            .field("api", &self.api.as_str())
            .field("repo", &self.repo)
            .finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Patch,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
        }
    }
}

/// The HTTP client under octocrab, as its default builder makes it but for
/// the headers: TLS (rustls with the system's roots), connect and read
/// timeouts, HTTP/1.1, redirects followed; no retry layer, no trace layer
/// (our own `send` logs each request).
fn octocrab(api: &Url, headers: Vec<(HeaderName, HeaderValue)>) -> Result<Octocrab, ForgeError> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider)
        .map_err(|e| ForgeError::Settings(format!("no TLS roots for GitHub: {e}")))?
        // Plain HTTP only for the loopback look-alike in tests.
        .https_or_http()
        .enable_http1()
        .build();
    let mut connector = hyper_timeout::TimeoutConnector::new(connector);
    connector.set_connect_timeout(Some(Duration::from_secs(30)));
    connector.set_read_timeout(Some(Duration::from_secs(120)));
    connector.set_write_timeout(Some(Duration::from_secs(120)));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector);
    // GitHub answers 301/307 for renamed or transferred repositories.
    let client = tower_http::follow_redirect::FollowRedirect::new(client);
    let base: http::Uri = api
        .as_str()
        .parse()
        .map_err(|e| ForgeError::Settings(format!("api_url {api}: {e}")))?;
    OctocrabBuilder::new_empty()
        .with_service(client)
        .with_layer(&BaseUriLayer::new(base))
        .with_layer(&ExtraHeadersLayer::new(Arc::new(headers)))
        .with_auth(AuthState::None)
        .build()
        .map_err(|e| ForgeError::Settings(format!("cannot build the GitHub client: {e}")))
}

impl GitHub {
    /// Build the client. Must be called inside a tokio runtime.
    pub fn new(settings: GitHubSettings) -> Result<GitHub, ForgeError> {
        if settings.repo.split('/').filter(|p| !p.is_empty()).count() != 2 {
            return Err(ForgeError::Settings(format!(
                "repo {:?} is not owner/name",
                settings.repo
            )));
        }
        let mut api = settings.api_url.clone();
        if !api.path().ends_with('/') {
            api.set_path(&format!("{}/", api.path()));
        }
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", settings.token.expose())).map_err(
                |_| ForgeError::Settings("the token is not a valid header value".into()),
            )?;
        // Kept out of octocrab's and hyper's debug output.
        authorization.set_sensitive(true);
        let user_agent = HeaderValue::from_str(&settings.user_agent).map_err(|_| {
            ForgeError::Settings(format!(
                "User-Agent {:?} is not a valid header value",
                settings.user_agent
            ))
        })?;
        let headers = vec![
            (USER_AGENT, user_agent),
            (
                http::header::ACCEPT,
                HeaderValue::from_static("application/vnd.github+json"),
            ),
            (AUTHORIZATION, authorization),
        ];
        let octo = octocrab(&api, headers)?;
        Ok(GitHub {
            octo,
            repo: settings.repo.clone(),
            api,
            settings,
            last_write: Mutex::new(None),
            permission: tokio::sync::OnceCell::new(),
            login: tokio::sync::OnceCell::new(),
            memo: Mutex::new(Memo::default()),
            listed: tokio::sync::OnceCell::new(),
        })
    }

    /// Start from what an earlier client learned (see [`Memo`]).
    pub fn with_memo(self, memo: Memo) -> GitHub {
        *self.memo() = memo;
        self
    }

    /// What this client knows now, to hand to the next one.
    pub fn take_memo(&self) -> Memo {
        self.memo().clone()
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, Memo> {
        self.memo.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn backoff(&self, attempt: usize) -> Duration {
        self.settings
            .retry_base_delay
            .saturating_mul(1 << attempt.min(6))
    }

    fn repo_path(&self, rest: &str) -> String {
        format!("repos/{}/{rest}", self.repo)
    }

    /// Send one request, riding out rate limits, retrying reads; returns the body.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Bytes, ForgeError> {
        Ok(self.exchange(method, path, query, body, None).await?.body)
    }

    /// [`GitHub::send`], conditional on `if_none_match` (an ETag of an
    /// earlier answer): GitHub answers 304 when nothing changed, and such a
    /// 304 "does not count against your primary rate limit" (GitHub's "Best
    /// practices for using the REST API", "Use conditional requests if
    /// appropriate").
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        if_none_match: Option<&str>,
    ) -> Result<Answered, ForgeError> {
        let endpoint = endpoint(path);
        let mut url = self
            .api
            .join(path)
            .map_err(|e| ForgeError::Settings(format!("bad path {path}: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut attempt = 0;
        let mut limited = 0;
        loop {
            attempt += 1;
            if method != Method::Get {
                self.space_writes().await;
            }
            tracing::debug!(method = method.name(), path, attempt, "GitHub request");
            let result = match method {
                Method::Get => match if_none_match.and_then(|e| HeaderValue::from_str(e).ok()) {
                    Some(etag) => {
                        let mut headers = http::HeaderMap::new();
                        headers.insert(http::header::IF_NONE_MATCH, etag);
                        self.octo
                            ._get_with_headers(url.as_str(), Some(headers))
                            .await
                    }
                    None => self.octo._get(url.as_str()).await,
                },
                Method::Post => self.octo._post(url.as_str(), body).await,
                Method::Patch => self.octo._patch(url.as_str(), body).await,
            };
            let response = match result {
                Ok(response) => response,
                Err(e) => {
                    count_request(endpoint, "network");
                    count_error("network");
                    if method == Method::Get && attempt <= self.settings.read_retries {
                        tracing::warn!(path, error = %e, "GitHub read failed; retrying");
                        self.settings.sleeper.sleep(self.backoff(attempt)).await;
                        continue;
                    }
                    return Err(ForgeError::Transport {
                        method: method.name(),
                        path: path.to_owned(),
                        source: Box::new(e),
                    });
                }
            };
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            count_request(endpoint, status_class(status));
            let etag = headers
                .get(http::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if (200..300).contains(&status) || (status == 304 && if_none_match.is_some()) {
                return Ok(Answered {
                    body: bytes,
                    etag,
                    scopes: headers
                        .get("x-oauth-scopes")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                    not_modified: status == 304,
                });
            }
            if let Some(limit) =
                rate_limit(status, &headers, &bytes, chrono::Utc::now().timestamp())
            {
                limited += 1;
                let wait = limit.wait.unwrap_or_else(|| {
                    self.settings
                        .rate_limit_floor
                        .saturating_mul(1 << (limited - 1).min(10))
                });
                count_error("rate_limited");
                if limited >= self.settings.rate_limit_attempts
                    || wait > self.settings.max_rate_limit_wait
                {
                    return Err(ForgeError::RateLimited {
                        method: method.name(),
                        path: path.to_owned(),
                        attempts: attempt,
                        wait,
                        reason: limit.reason,
                    });
                }
                // A rate-limited request was not processed: repeating it,
                // even a create, cannot duplicate anything.
                tracing::warn!(
                    path,
                    ?wait,
                    status,
                    reason = limit.reason,
                    "GitHub rate limit; waiting"
                );
                self.settings.sleeper.sleep(wait).await;
                continue;
            }
            count_error(if status >= 500 { "5xx" } else { "4xx" });
            if status >= 500 && method == Method::Get && attempt <= self.settings.read_retries {
                tracing::warn!(path, status, "GitHub server error on a read; retrying");
                self.settings.sleeper.sleep(self.backoff(attempt)).await;
                continue;
            }
            let message = error_message(&bytes);
            return Err(ForgeError::Status {
                method: method.name(),
                path: path.to_owned(),
                status,
                message,
            });
        }
    }

    async fn space_writes(&self) {
        let wait = {
            let mut last = self.last_write.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let next = last.map_or(now, |t| (t + self.settings.min_write_interval).max(now));
            *last = Some(next);
            next - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<T, ForgeError> {
        let bytes = self.send(method, path, query, body).await?;
        serde_json::from_slice(&bytes).map_err(|source| ForgeError::Decode {
            method: method.name(),
            path: path.to_owned(),
            source,
        })
    }

    async fn pages<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<T>, ForgeError> {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let page = page.to_string();
            let mut q: Vec<(&str, &str)> = query.to_vec();
            q.push(("per_page", "100"));
            q.push(("page", &page));
            let items: Vec<T> = self.json(Method::Get, path, &q, None).await?;
            let done = items.len() < 100;
            all.extend(items);
            if done {
                return Ok(all);
            }
        }
        Err(ForgeError::TooManyPages {
            path: path.to_owned(),
            pages: MAX_PAGES,
        })
    }

    /// Add labels to issue or pull request `number` where they stick. A
    /// refusal is logged, never returned: the item exists either way.
    /// Returns the item's labels afterwards, when GitHub told us.
    async fn label(&self, number: u64, labels: &[String]) -> Option<Vec<String>> {
        if labels.is_empty() {
            return None;
        }
        match self.permission().await {
            Ok(permission) if permission.may_label() => {}
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!(number, error = %e, "cannot learn the token's role; #{number} stays unlabelled");
                return None;
            }
        }
        match self
            .json::<Vec<GhLabel>>(
                Method::Post,
                &self.repo_path(&format!("issues/{number}/labels")),
                &[],
                Some(&json!({"labels": labels})),
            )
            .await
        {
            Ok(now) => Some(now.into_iter().map(|l| l.name).collect()),
            Err(e) => {
                tracing::warn!(number, error = %e, "could not label #{number}; it stays unlabelled");
                None
            }
        }
    }
}

/// GitHub's explanation of a refusal: its `message`, and for a validation
/// error what each of its `errors` says (field, code and message: the
/// `fork_collab` of an organisation's fork is only there).
fn error_message(bytes: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    };
    let mut message = value
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("no message")
        .to_owned();
    let details: Vec<String> = value
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            ["field", "code", "message"]
                .iter()
                .filter_map(|k| e.get(*k).and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|d| !d.is_empty())
        .collect();
    if !details.is_empty() {
        message = format!("{message}: {}", details.join("; "));
    }
    message.chars().take(500).collect()
}

/// Said in a pull request's body when GitHub would not let maintainers push
/// to its branch, and only then.
pub const NO_MAINTAINER_EDITS: &str = "*Maintainers cannot push to this branch: it is in an organisation's fork, \
which GitHub does not let open its branches to the maintainers of the repository. \
Suggest changes in a review, or open a pull request of your own and I step aside.*";

/// A successful answer (2xx, or 304 to a conditional request).
struct Answered {
    body: Bytes,
    etag: Option<String>,
    /// `x-oauth-scopes`: a classic token's scopes.
    scopes: Option<String>,
    /// 304: the answer is the one whose ETag was sent.
    not_modified: bool,
}

/// The endpoint of a request path, for the requests metric: a small fixed
/// set (numbers and the repository's name left out).
fn endpoint(path: &str) -> &'static str {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["user"] => "user",
        ["search", "issues"] => "search",
        ["repos", _, _] => "repo",
        ["repos", _, _, "issues"] => "issues",
        ["repos", _, _, "issues", _] => "issue",
        ["repos", _, _, "issues", _, "comments"] => "comments",
        ["repos", _, _, "issues", _, "labels"] => "labels",
        ["repos", _, _, "pulls"] => "pulls",
        ["repos", _, _, "pulls", _] => "pull",
        ["repos", _, _, "pulls", _, "reviews"] => "reviews",
        ["repos", _, _, "pulls", _, "comments"] => "review_comments",
        _ => "other",
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        304 => "not_modified",
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// One request sent (an attempt: a retried call counts each time).
fn count_request(endpoint: &'static str, answer: &'static str) {
    metrics::counter!("hydra_sentinel_github_requests_total", "endpoint" => endpoint, "answer" => answer)
        .increment(1);
}

/// One failed answer, by kind: `network`, `4xx`, `5xx`, `rate_limited`.
fn count_error(kind: &'static str) {
    metrics::counter!("hydra_sentinel_github_errors_total", "kind" => kind).increment(1);
}

/// A rate-limited answer: how long GitHub asks us to wait, if it says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Limited {
    wait: Option<Duration>,
    reason: &'static str,
}

/// Whether this answer is a rate limit, after GitHub's "Exceeding the rate
/// limit": only 403 and 429 can be; `retry-after` wins, then an exhausted
/// primary quota (`x-ratelimit-remaining: 0`, until `x-ratelimit-reset`,
/// Unix seconds); a 429, or a 403 whose message says "rate limit" (the
/// secondary limits), without either header leaves the wait to us. Any
/// other 403 is a real "no".
fn rate_limit(status: u16, headers: &http::HeaderMap, body: &[u8], now: i64) -> Option<Limited> {
    if status != 403 && status != 429 {
        return None;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(secs) = header("retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Some(Limited {
            wait: Some(Duration::from_secs(secs)),
            reason: "secondary rate limit, retry-after",
        });
    }
    if header("x-ratelimit-remaining") == Some("0") {
        let reset = header("x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok());
        return Some(Limited {
            // At least a second: a reset in the past is a clock skew.
            wait: reset.map(|r| Duration::from_secs((r - now).max(1) as u64)),
            reason: if reset.is_some() {
                "primary rate limit, until x-ratelimit-reset"
            } else {
                "primary rate limit, no reset given"
            },
        });
    }
    if status == 429 {
        return Some(Limited {
            wait: None,
            reason: "429 without retry-after",
        });
    }
    let message = String::from_utf8_lossy(body).to_ascii_lowercase();
    message.contains("rate limit").then_some(Limited {
        wait: None,
        reason: "secondary rate limit without retry-after",
    })
}

#[derive(Deserialize)]
struct GhUser {
    login: String,
}

/// The author of an item: `user` is `null` for a deleted account, which
/// github.com shows as "ghost"; such an item must not break a listing.
fn author(user: Option<GhUser>) -> String {
    user.map_or_else(|| GHOST.to_owned(), |u| u.login)
}

#[derive(Deserialize, Default)]
struct GhPermissions {
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    maintain: bool,
    #[serde(default)]
    push: bool,
    #[serde(default)]
    triage: bool,
    #[serde(default)]
    pull: bool,
}

#[derive(Deserialize)]
struct GhRepo {
    /// Only for a token that can see it; fine-grained tokens and apps get
    /// none, and are treated as knowing nothing.
    #[serde(default)]
    permissions: Option<GhPermissions>,
}

impl From<GhPermissions> for Permission {
    fn from(p: GhPermissions) -> Permission {
        if p.admin {
            Permission::Admin
        } else if p.maintain {
            Permission::Maintain
        } else if p.push {
            Permission::Push
        } else if p.triage {
            Permission::Triage
        } else if p.pull {
            Permission::Pull
        } else {
            Permission::None
        }
    }
}

#[derive(Deserialize)]
struct GhLabel {
    name: String,
}

#[derive(Deserialize)]
struct GhIssue {
    number: u64,
    title: String,
    #[serde(default)]
    body: Option<String>,
    state: State,
    #[serde(default)]
    labels: Vec<GhLabel>,
    #[serde(default)]
    user: Option<GhUser>,
    html_url: String,
    #[serde(default)]
    pull_request: Option<IgnoredAny>,
    #[serde(default)]
    updated_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    closed_by: Option<GhUser>,
    #[serde(default)]
    state_reason: Option<String>,
}

impl From<GhIssue> for Issue {
    fn from(i: GhIssue) -> Issue {
        Issue {
            number: i.number,
            title: i.title,
            body: i.body.unwrap_or_default(),
            state: i.state,
            labels: i.labels.into_iter().map(|l| l.name).collect(),
            author: author(i.user),
            url: i.html_url,
            is_pull_request: i.pull_request.is_some(),
            closed_by: i.closed_by.map(|u| u.login),
            state_reason: i.state_reason,
        }
    }
}

#[derive(Deserialize)]
struct GhComment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    user: Option<GhUser>,
    created_at: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A pull request review; `submitted_at` is null while it is pending.
#[derive(Deserialize)]
struct GhReview {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    user: Option<GhUser>,
    #[serde(default)]
    submitted_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<GhComment> for Comment {
    fn from(c: GhComment) -> Comment {
        Comment {
            id: c.id,
            author: author(c.user),
            body: c.body.unwrap_or_default(),
            created_at: c.created_at.timestamp(),
        }
    }
}

#[derive(Deserialize)]
struct GhRef {
    label: String,
    /// The branch name alone (`master`).
    #[serde(rename = "ref", default)]
    name: String,
}

#[derive(Deserialize)]
struct GhPull {
    number: u64,
    title: String,
    #[serde(default)]
    body: Option<String>,
    state: State,
    #[serde(default)]
    merged_at: Option<String>,
    head: GhRef,
    #[serde(default)]
    base: Option<GhRef>,
    #[serde(default)]
    user: Option<GhUser>,
    html_url: String,
    #[serde(default)]
    labels: Vec<GhLabel>,
    #[serde(default)]
    updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<GhPull> for PullRequest {
    fn from(p: GhPull) -> PullRequest {
        PullRequest {
            number: p.number,
            title: p.title,
            body: p.body.unwrap_or_default(),
            state: p.state,
            merged: p.merged_at.is_some(),
            head: p.head.label,
            base: p.base.map(|b| b.name).unwrap_or_default(),
            author: author(p.user),
            url: p.html_url,
            labels: p.labels.into_iter().map(|l| l.name).collect(),
        }
    }
}

#[derive(Deserialize)]
struct GhSearch {
    items: Vec<GhIssue>,
}

impl Forge for GitHub {
    async fn whoami(&self) -> Result<String, ForgeError> {
        self.login
            .get_or_try_init(|| async {
                let user: GhUser = self.json(Method::Get, "user", &[], None).await?;
                Ok(user.login)
            })
            .await
            .cloned()
    }

    async fn permission(&self) -> Result<Permission, ForgeError> {
        self.permission
            .get_or_try_init(|| async {
                let repo: GhRepo = self
                    .json(Method::Get, &format!("repos/{}", self.repo), &[], None)
                    .await?;
                let permission = repo.permissions.map_or(Permission::None, Permission::from);
                tracing::info!(
                    repo = self.repo,
                    permission = permission.as_str(),
                    labels = permission.may_label(),
                    "the token's role on the repository"
                );
                Ok(permission)
            })
            .await
            .copied()
    }

    async fn items_by(&self, creator: &str) -> Result<Vec<Issue>, ForgeError> {
        let mirrored = self
            .listed
            .get_or_try_init(|| async {
                self.list_items(creator).await?;
                Ok::<_, ForgeError>(creator.to_owned())
            })
            .await?;
        if mirrored.eq_ignore_ascii_case(creator) {
            return Ok(self.memo().listed());
        }
        // Someone else's: not mirrored (nothing asks for that today).
        let issues: Vec<GhIssue> = self
            .pages(
                &self.repo_path("issues"),
                &[("creator", creator), ("state", "all")],
            )
            .await?;
        Ok(issues.into_iter().map(Issue::from).collect())
    }

    async fn issue(&self, number: u64) -> Result<Issue, ForgeError> {
        let issue: GhIssue = self
            .json(
                Method::Get,
                &self.repo_path(&format!("issues/{number}")),
                &[],
                None,
            )
            .await?;
        Ok(issue.into())
    }

    async fn create_issue(&self, issue: &NewIssue) -> Result<Issue, ForgeError> {
        // Labels are never sent with the create: GitHub drops them silently
        // for a token without push access, and refuses the whole create
        // (403 "You do not have permission to create labels on this
        // repository") when one does not exist yet. They are added after.
        let body = json!({"title": issue.title, "body": super::fit_body(&issue.body)});
        let answer: GhIssue = self
            .json(Method::Post, &self.repo_path("issues"), &[], Some(&body))
            .await?;
        let updated_at = answer.updated_at.unwrap_or_default();
        let mut created: Issue = answer.into();
        if let Some(labels) = self.label(created.number, &issue.labels).await {
            created.labels = labels;
        }
        let mut memo = self.memo();
        memo.remember_item(created.clone(), updated_at);
        // A new issue has no comments: nothing to read until it changes.
        memo.merge_comments(created.number, updated_at, Vec::new());
        drop(memo);
        Ok(created)
    }

    async fn edit_issue(
        &self,
        number: u64,
        body: Option<&str>,
        state: Option<State>,
    ) -> Result<Issue, ForgeError> {
        let mut patch = serde_json::Map::new();
        if let Some(body) = body {
            patch.insert("body".into(), json!(super::fit_body(body)));
        }
        if let Some(state) = state {
            patch.insert("state".into(), json!(state));
        }
        let edited: GhIssue = self
            .json(
                Method::Patch,
                &self.repo_path(&format!("issues/{number}")),
                &[],
                Some(&Value::Object(patch)),
            )
            .await?;
        let updated_at = edited.updated_at.unwrap_or_default();
        let edited = Issue::from(edited);
        self.remember_own(edited.clone(), updated_at);
        Ok(edited)
    }

    async fn comment(&self, number: u64, body: &str) -> Result<Comment, ForgeError> {
        let created: Comment = self
            .json::<GhComment>(
                Method::Post,
                &self.repo_path(&format!("issues/{number}/comments")),
                &[],
                Some(&json!({"body": super::fit_body(body)})),
            )
            .await?
            .into();
        // Kept with what was read, but the time of the newest comment read
        // stays: a human's comment from just before ours is still asked for.
        if let Some(seen) = self.memo().comments.get_mut(&number) {
            seen.comments.push(created.clone());
        }
        Ok(created)
    }

    async fn edit_comment(&self, id: u64, body: &str) -> Result<Comment, ForgeError> {
        // https://docs.github.com/rest/issues/comments#update-an-issue-comment
        let edited: GhComment = self
            .json(
                Method::Patch,
                &self.repo_path(&format!("issues/comments/{id}")),
                &[],
                Some(&json!({"body": super::fit_body(body)})),
            )
            .await?;
        Ok(edited.into())
    }

    async fn comments(&self, number: u64) -> Result<Vec<Comment>, ForgeError> {
        let path = self.repo_path(&format!("issues/{number}/comments"));
        let (as_of, seen) = {
            let memo = self.memo();
            (
                self.listed_at(&memo, number),
                memo.comments.get(&number).cloned(),
            )
        };
        let Some(as_of) = as_of else {
            let comments: Vec<GhComment> = self.pages(&path, &[]).await?;
            return Ok(comments.into_iter().map(Comment::from).collect());
        };
        if let Some(seen) = &seen
            && seen.as_of == as_of
        {
            return Ok(seen.comments.clone());
        }
        // Only what changed since the newest comment read (GitHub's "List
        // issue comments": `since`, "only show results that were last
        // updated after the given time"; it includes that time itself).
        let since = seen.and_then(|s| s.newest).map(wire_time);
        let query: Vec<(&str, &str)> = since.iter().map(|s| ("since", s.as_str())).collect();
        let fresh: Vec<GhComment> = self.pages(&path, &query).await?;
        Ok(self.memo().merge_comments(
            number,
            as_of,
            fresh
                .into_iter()
                .map(|c| {
                    let updated = c.updated_at.or(Some(c.created_at));
                    (Comment::from(c), updated)
                })
                .collect(),
        ))
    }

    async fn review_comments(&self, number: u64) -> Result<Vec<Comment>, ForgeError> {
        let as_of = self.listed_at(&self.memo(), number);
        if let Some(as_of) = as_of
            && let Some(seen) = self.memo().reviews.get(&number)
            && seen.as_of == as_of
        {
            return Ok(seen.value.clone());
        }
        let read = self.read_review_comments(number).await?;
        if let Some(as_of) = as_of {
            self.memo().reviews.insert(
                number,
                super::memo::Seen {
                    as_of,
                    value: read.clone(),
                },
            );
        }
        Ok(read)
    }

    async fn pull_by_head(&self, head: &str) -> Result<Option<PullRequest>, ForgeError> {
        let pulls: Vec<GhPull> = self
            .json(
                Method::Get,
                &self.repo_path("pulls"),
                &[("head", head), ("state", "all"), ("per_page", "100")],
                None,
            )
            .await?;
        Ok(pulls
            .into_iter()
            .map(PullRequest::from)
            .filter(|p| p.head.eq_ignore_ascii_case(head))
            .max_by_key(|p| p.number))
    }

    async fn newest_pull_from_branch(
        &self,
        branch: &str,
    ) -> Result<Option<PullRequest>, ForgeError> {
        // `head` filters by `user:ref-name`; the newest first, one is
        // enough (GitHub's "List pull requests": state, head, sort,
        // direction, per_page).
        let owner = self
            .repo
            .split_once('/')
            .map_or(self.repo.as_str(), |(o, _)| o);
        let head = format!("{owner}:{branch}");
        let path = self.repo_path("pulls");
        let query = [
            ("head", head.as_str()),
            ("state", "all"),
            ("sort", "created"),
            ("direction", "desc"),
            ("per_page", "1"),
        ];
        let known = self.memo().branch_pulls.get(branch).cloned();
        let answer = self
            .exchange(
                Method::Get,
                &path,
                &query,
                None,
                known.as_ref().map(|k| k.etag.as_str()),
            )
            .await?;
        if answer.not_modified
            && let Some(known) = known
        {
            return Ok(known.value);
        }
        let listed: Vec<GhPull> =
            serde_json::from_slice(&answer.body).map_err(|source| ForgeError::Decode {
                method: "GET",
                path: path.clone(),
                source,
            })?;
        let newest = listed
            .into_iter()
            .map(PullRequest::from)
            .filter(|p| p.head.eq_ignore_ascii_case(&head))
            .max_by_key(|p| p.number);
        if let Some(etag) = answer.etag {
            self.memo().branch_pulls.insert(
                branch.to_owned(),
                super::memo::Tagged {
                    etag,
                    value: newest.clone(),
                },
            );
        }
        Ok(newest)
    }

    async fn pull(&self, number: u64) -> Result<PullRequest, ForgeError> {
        let as_of = self.listed_at(&self.memo(), number);
        if let Some(as_of) = as_of
            && let Some(seen) = self.memo().pulls.get(&number)
            && seen.as_of == as_of
        {
            return Ok(seen.value.clone());
        }
        let pull: PullRequest = self
            .json::<GhPull>(
                Method::Get,
                &self.repo_path(&format!("pulls/{number}")),
                &[],
                None,
            )
            .await?
            .into();
        if let Some(as_of) = as_of {
            self.memo().pulls.insert(
                number,
                super::memo::Seen {
                    as_of,
                    value: pull.clone(),
                },
            );
        }
        Ok(pull)
    }

    async fn create_pull(
        &self,
        pull: &NewPull,
        labels: &[String],
    ) -> Result<PullRequest, ForgeError> {
        self.create_pull_request(pull, labels).await
    }

    async fn close_pull(&self, number: u64) -> Result<PullRequest, ForgeError> {
        let closed: GhPull = self
            .json(
                Method::Patch,
                &self.repo_path(&format!("pulls/{number}")),
                &[],
                Some(&json!({"state": "closed"})),
            )
            .await?;
        let updated_at = closed.updated_at.unwrap_or_default();
        let closed = PullRequest::from(closed);
        self.remember_own_pull(&closed, updated_at);
        Ok(closed)
    }

    async fn open_pulls_mentioning(&self, text: &str) -> Result<Vec<Issue>, ForgeError> {
        self.search_open_pulls(text).await
    }
}

impl GitHub {
    async fn read_review_comments(&self, number: u64) -> Result<Vec<Comment>, ForgeError> {
        // https://docs.github.com/rest/pulls/reviews#list-reviews-for-a-pull-request
        // and .../comments#list-review-comments-on-a-pull-request
        let reviews: Vec<GhReview> = self
            .pages(&self.repo_path(&format!("pulls/{number}/reviews")), &[])
            .await?;
        let comments: Vec<GhComment> = self
            .pages(&self.repo_path(&format!("pulls/{number}/comments")), &[])
            .await?;
        let mut out: Vec<Comment> = reviews
            .into_iter()
            .filter(|r| r.body.as_deref().is_some_and(|b| !b.trim().is_empty()))
            .map(|r| Comment {
                id: super::REVIEW_ID | r.id,
                author: author(r.user),
                body: r.body.unwrap_or_default(),
                created_at: r.submitted_at.map_or(0, |t| t.timestamp()),
            })
            .collect();
        out.extend(comments.into_iter().map(|c| {
            let mut c = Comment::from(c);
            c.id |= super::REVIEW_COMMENT_ID;
            c
        }));
        out.sort_by_key(|c| c.created_at);
        Ok(out)
    }

    async fn create_pull_request(
        &self,
        pull: &NewPull,
        labels: &[String],
    ) -> Result<PullRequest, ForgeError> {
        let body = json!({"title": pull.title, "head": pull.head, "base": pull.base, "body": super::fit_body(&pull.body),
                          "maintainer_can_modify": true});
        let answer: GhPull = match self
            .json(Method::Post, &self.repo_path("pulls"), &[], Some(&body))
            .await
        {
            // An organisation's fork cannot open its branches to the
            // repository's maintainers (422 `fork_collab`); such a refusal
            // created nothing, so asking again without it is safe.
            Err(ForgeError::Status {
                status: 422,
                message,
                ..
            }) if message.contains("fork_collab") => {
                tracing::warn!(
                    head = pull.head,
                    "GitHub will not let maintainers push to a branch of this fork; opening the pull request without that"
                );
                let text = format!("{}\n\n{NO_MAINTAINER_EDITS}\n", pull.body);
                let body = json!({"title": pull.title, "head": pull.head, "base": pull.base, "body": super::fit_body(&text),
                                  "maintainer_can_modify": false});
                self.json(Method::Post, &self.repo_path("pulls"), &[], Some(&body))
                    .await?
            }
            answer => answer?,
        };
        let updated_at = answer.updated_at.unwrap_or_default();
        let mut created = PullRequest::from(answer);
        // The pull request exists whatever happens to its labels.
        if let Some(labels) = self.label(created.number, labels).await {
            created.labels = labels;
        }
        self.remember_own_pull(&created, updated_at);
        // A new pull request has no comments or reviews yet.
        let mut memo = self.memo();
        memo.merge_comments(created.number, updated_at, Vec::new());
        memo.reviews.insert(
            created.number,
            super::memo::Seen {
                as_of: updated_at,
                value: Vec::new(),
            },
        );
        drop(memo);
        Ok(created)
    }

    async fn search_open_pulls(&self, text: &str) -> Result<Vec<Issue>, ForgeError> {
        let escaped = text.replace('"', "");
        let query = format!("repo:{} is:pr is:open in:title \"{escaped}\"", self.repo);
        let found: GhSearch = self
            .json(
                Method::Get,
                "search/issues",
                &[("q", &query), ("per_page", "100")],
                None,
            )
            .await?;
        Ok(found.items.into_iter().map(Issue::from).collect())
    }

    /// Item `number`'s `updated_at`, when this client listed it: what was
    /// read for the item is trusted only while that matches, and only once
    /// this client's own listing has brought the times up to date.
    fn listed_at(&self, memo: &Memo, number: u64) -> Option<chrono::DateTime<chrono::Utc>> {
        self.listed.get()?;
        memo.updated_at(number)
    }

    /// An item of ours changed by us: the memo holds its new state (only
    /// for items it mirrors: ours).
    fn remember_own(&self, issue: Issue, updated_at: chrono::DateTime<chrono::Utc>) {
        let mut memo = self.memo();
        if memo.items.contains_key(&issue.number) {
            memo.remember_item(issue, updated_at);
        }
    }

    /// A pull request we opened or closed, as the issues listing shows it.
    fn remember_own_pull(&self, pull: &PullRequest, updated_at: chrono::DateTime<chrono::Utc>) {
        let mut memo = self.memo();
        if !pull
            .author
            .eq_ignore_ascii_case(memo.creator.as_deref().unwrap_or_default())
        {
            return;
        }
        memo.remember_item(
            Issue {
                number: pull.number,
                title: pull.title.clone(),
                body: pull.body.clone(),
                state: pull.state,
                labels: pull.labels.clone(),
                author: pull.author.clone(),
                url: pull.url.clone(),
                is_pull_request: true,
                closed_by: None,
                state_reason: None,
            },
            updated_at,
        );
        memo.pulls.insert(
            pull.number,
            super::memo::Seen {
                as_of: updated_at,
                value: pull.clone(),
            },
        );
    }

    /// List the bot's items into the memo: everything when due (see
    /// [`Memo`]), else only what changed `since` the watermark, each page
    /// conditional on its ETag from last time.
    ///
    /// Newest first (`sort=updated&direction=desc`): an item updated while
    /// the pages are read moves to the front, which shifts the rest towards
    /// later pages (read twice, never skipped); the item itself is newer
    /// than the watermark taken from the first page, so the next listing
    /// has it.
    async fn list_items(&self, creator: &str) -> Result<(), ForgeError> {
        let now = chrono::Utc::now().timestamp();
        let (full, watermark, tags) = {
            let memo = self.memo();
            (
                memo.needs_full_listing(creator, now),
                memo.watermark,
                memo.pages.clone(),
            )
        };
        let path = self.repo_path("issues");
        let since = watermark.map(wire_time);
        let mut query: Vec<(&str, &str)> = vec![
            ("creator", creator),
            ("state", "all"),
            ("sort", "updated"),
            ("direction", "desc"),
            ("per_page", "100"),
        ];
        if let Some(since) = since.as_deref().filter(|_| !full) {
            query.push(("since", since));
        }
        let mut fresh: Vec<(Issue, chrono::DateTime<chrono::Utc>)> = Vec::new();
        let mut new_tags = std::collections::BTreeMap::new();
        let mut complete = false;
        let mut pages = 0;
        for page in 1..=MAX_PAGES {
            pages = page;
            let page = page.to_string();
            let mut q = query.clone();
            q.push(("page", &page));
            let key = format!(
                "{path}?{}",
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&q)
                    .finish()
            );
            let known = tags.get(&key).filter(|_| !full);
            let answer = self
                .exchange(Method::Get, &path, &q, None, known.map(|t| t.etag.as_str()))
                .await?;
            let items = match (answer.not_modified, known) {
                // Unchanged since the last listing, which was merged then.
                (true, Some(known)) => {
                    new_tags.insert(key, known.clone());
                    known.items
                }
                _ => {
                    let listed: Vec<GhIssue> =
                        serde_json::from_slice(&answer.body).map_err(|source| {
                            ForgeError::Decode {
                                method: "GET",
                                path: path.clone(),
                                source,
                            }
                        })?;
                    let count = listed.len();
                    if let Some(etag) = answer.etag {
                        new_tags.insert(key, super::memo::PageTag { etag, items: count });
                    }
                    fresh.extend(listed.into_iter().map(|i| {
                        let updated = i.updated_at.unwrap_or_default();
                        (Issue::from(i), updated)
                    }));
                    count
                }
            };
            if items < 100 {
                complete = true;
                break;
            }
        }
        if !complete {
            return Err(ForgeError::TooManyPages {
                path,
                pages: MAX_PAGES,
            });
        }
        let mut memo = self.memo();
        if full {
            memo.items.clear();
            memo.full_at = Some(now);
        }
        tracing::debug!(
            full,
            changed = fresh.len(),
            pages,
            "listed our issues and pull requests"
        );
        // The watermark stays while what changed since fits one page: the
        // same question then gets the same answer, a free 304, every quiet
        // cycle. It moves on after a full listing or when the answer grew
        // past a page.
        let advance = full || pages > 1;
        for (issue, updated) in fresh {
            if advance {
                memo.watermark = Some(memo.watermark.map_or(updated, |w| w.max(updated)));
            }
            memo.remember_item(issue, updated);
        }
        memo.pages = new_tags;
        memo.creator = Some(creator.to_owned());
        Ok(())
    }
}

/// What `doctor` learns from GitHub about the token and the repositories.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Whose token it is.
    pub login: String,
    /// A classic token's scopes (`x-oauth-scopes`); `None` for other kinds.
    pub scopes: Option<Vec<String>>,
    /// The token's role on the repository acted on.
    pub permission: Permission,
    /// The fork, or why it cannot be seen.
    pub fork: Result<ForkProbe, String>,
    /// The account a `@mention` of this login reaches, if one exists.
    pub mentioned: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ForkProbe {
    pub default_branch: String,
    /// `owner/name` of the repository it is a fork of, if it is one.
    pub parent: Option<String>,
    /// Whether the token may push to it.
    pub push: bool,
}

#[derive(Deserialize)]
struct GhForkRepo {
    default_branch: String,
    #[serde(default)]
    parent: Option<GhFullName>,
    #[serde(default)]
    permissions: Option<GhPermissions>,
}

#[derive(Deserialize)]
struct GhFullName {
    full_name: String,
}

impl GitHub {
    /// Ask GitHub what `doctor` checks: who the token is and its scopes,
    /// its role here, the fork `fork` (`owner/name`), and whom `@mention`
    /// reaches. Reads only.
    pub async fn probe(&self, fork: &str, mention: &str) -> Result<Probe, ForgeError> {
        let answer = self.exchange(Method::Get, "user", &[], None, None).await?;
        let user: GhUser =
            serde_json::from_slice(&answer.body).map_err(|source| ForgeError::Decode {
                method: "GET",
                path: "user".into(),
                source,
            })?;
        let scopes = answer.scopes.map(|s| {
            s.split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect()
        });
        let permission = self.permission().await?;
        let fork = match self
            .json::<GhForkRepo>(Method::Get, &format!("repos/{fork}"), &[], None)
            .await
        {
            Ok(repo) => Ok(ForkProbe {
                default_branch: repo.default_branch,
                parent: repo.parent.map(|p| p.full_name),
                push: repo
                    .permissions
                    .is_some_and(|p| p.push || p.maintain || p.admin),
            }),
            Err(ForgeError::Status { status: 404, .. }) => {
                Err(format!("{fork} does not exist or this token cannot see it"))
            }
            Err(e) => return Err(e),
        };
        let login = mention.trim_start_matches('@');
        let mentioned = match self
            .json::<GhUser>(Method::Get, &format!("users/{login}"), &[], None)
            .await
        {
            Ok(user) => Some(user.login),
            Err(ForgeError::Status { status: 404, .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(Probe {
            login: user.login,
            scopes,
            permission,
            fork,
            mentioned,
        })
    }
}

/// A time as GitHub's query parameters take it (ISO 8601, UTC, seconds).
fn wire_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn only_a_403_or_429_can_be_a_rate_limit() {
        let exhausted = headers(&[("x-ratelimit-remaining", "0"), ("retry-after", "5")]);
        for status in [200, 404, 422, 500] {
            assert_eq!(
                rate_limit(status, &exhausted, b"rate limit", NOW),
                None,
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_wins_over_the_primary_reset() {
        let h = headers(&[
            ("retry-after", "7"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &(NOW + 600).to_string()),
        ]);
        let limit = rate_limit(403, &h, b"", NOW).expect("a limit");
        assert_eq!(limit.wait, Some(Duration::from_secs(7)));
    }

    #[test]
    fn an_exhausted_quota_waits_until_its_reset_or_names_no_wait() {
        let reset = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &(NOW + 600).to_string()),
        ]);
        assert_eq!(
            rate_limit(403, &reset, b"", NOW).unwrap().wait,
            Some(Duration::from_secs(600))
        );
        let past = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &(NOW - 5).to_string()),
        ]);
        assert_eq!(
            rate_limit(429, &past, b"", NOW).unwrap().wait,
            Some(Duration::from_secs(1)),
            "a reset in the past is clock skew: a second"
        );
        let bare = headers(&[("x-ratelimit-remaining", "0")]);
        let limit = rate_limit(403, &bare, b"", NOW).unwrap();
        assert_eq!(limit.wait, None);
        assert!(limit.reason.contains("primary"), "{}", limit.reason);
    }

    #[test]
    fn a_plain_403_is_a_refusal_unless_its_message_says_rate_limit() {
        let none = http::HeaderMap::new();
        assert_eq!(
            rate_limit(
                403,
                &none,
                br#"{"message":"You do not have permission to create labels on this repository."}"#,
                NOW
            ),
            None
        );
        let secondary = rate_limit(
            403,
            &none,
            br#"{"message":"You have exceeded a secondary rate limit."}"#,
            NOW,
        )
        .expect("a secondary limit");
        assert_eq!(secondary.wait, None);
        assert_eq!(rate_limit(429, &none, b"", NOW).unwrap().wait, None);
    }

    #[test]
    fn the_user_agent_keeps_only_what_a_header_may_carry() {
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(user_agent(None), format!("hydra-sentinel/{version}"));
        assert_eq!(user_agent(Some("  ")), format!("hydra-sentinel/{version}"));
        assert_eq!(
            user_agent(Some("ops@example.org\r\nX-Evil: 1")),
            format!("hydra-sentinel/{version} (+ops@example.orgX-Evil: 1)")
        );
        assert!(HeaderValue::from_str(&user_agent(Some("wörld\u{7}"))).is_ok());
    }
}
