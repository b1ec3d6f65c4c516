//! The real forge: GitHub's REST API through octocrab.
//!
//! octocrab supplies authentication, TLS and HTTP; we use its raw request
//! methods so that every answer's status and rate-limit headers pass through
//! one place ([`GitHub::send`]) that knows which requests may be repeated.
//! octocrab's own retry layer is switched off: it would repeat a `POST` after
//! a 5xx, which may duplicate an issue or a pull request.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use octocrab::Octocrab;
use octocrab::service::middleware::retry::RetryConfig;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::{Value, json};
use url::Url;

use super::{Comment, Forge, ForgeError, Issue, NewIssue, NewPull, PullRequest, Secret, State};

/// Most pages read when listing (100 items each).
const MAX_PAGES: usize = 50;

#[derive(Debug, Clone)]
pub struct GitHubSettings {
    /// `https://api.github.com`, or a test server.
    pub api_url: Url,
    /// `owner/name` of the repository acted on.
    pub repo: String,
    pub token: Secret,
    /// Longest rate-limit wait ridden out inside one call; a longer one is
    /// returned as [`ForgeError::RateLimited`] for the caller to come back later.
    pub max_rate_limit_wait: Duration,
    /// Retries of reads after a 5xx or a transport error, with exponential
    /// backoff from `retry_base_delay`.
    pub read_retries: usize,
    pub retry_base_delay: Duration,
    /// Least time between two writes: GitHub asks integrators to space
    /// content-creating requests to avoid secondary rate limits.
    pub min_write_interval: Duration,
}

impl GitHubSettings {
    pub fn new(api_url: Url, repo: &str, token: Secret) -> GitHubSettings {
        GitHubSettings {
            api_url,
            repo: repo.to_owned(),
            token,
            // Below the service's watchdog: a longer wait ends the cycle and
            // the next one comes back.
            max_rate_limit_wait: Duration::from_secs(5 * 60),
            read_retries: 4,
            retry_base_delay: Duration::from_millis(500),
            min_write_interval: Duration::from_secs(1),
        }
    }
}

pub struct GitHub {
    octo: Octocrab,
    api: Url,
    repo: String,
    settings: GitHubSettings,
    last_write: Mutex<Option<Instant>>,
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
        let octo = Octocrab::builder()
            .personal_token(settings.token.expose().to_owned())
            .base_uri(api.as_str())
            .map_err(|e| ForgeError::Settings(format!("api_url {}: {e}", api)))?
            .add_retry_config(RetryConfig::None)
            .set_connect_timeout(Some(Duration::from_secs(30)))
            .set_read_timeout(Some(Duration::from_secs(120)))
            .build()
            .map_err(|e| ForgeError::Settings(format!("cannot build the GitHub client: {e}")))?;
        Ok(GitHub {
            octo,
            repo: settings.repo.clone(),
            api,
            settings,
            last_write: Mutex::new(None),
        })
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
        let mut url = self
            .api
            .join(path)
            .map_err(|e| ForgeError::Settings(format!("bad path {path}: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            if method != Method::Get {
                self.space_writes().await;
            }
            tracing::debug!(method = method.name(), path, attempt, "GitHub request");
            let result = match method {
                Method::Get => self.octo._get(url.as_str()).await,
                Method::Post => self.octo._post(url.as_str(), body).await,
                Method::Patch => self.octo._patch(url.as_str(), body).await,
            };
            let response = match result {
                Ok(response) => response,
                Err(e) => {
                    if method == Method::Get && attempt <= self.settings.read_retries {
                        tracing::warn!(path, error = %e, "GitHub read failed; retrying");
                        tokio::time::sleep(self.backoff(attempt)).await;
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
            let mut wait = rate_limit_wait(status, response.headers());
            let bytes = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if wait.is_none()
                && status == 403
                && String::from_utf8_lossy(&bytes)
                    .to_ascii_lowercase()
                    .contains("rate limit")
            {
                wait = Some(Duration::from_secs(60));
            }
            if (200..300).contains(&status) {
                return Ok(bytes);
            }
            if let Some(wait) = wait {
                if wait > self.settings.max_rate_limit_wait {
                    return Err(ForgeError::RateLimited {
                        method: method.name(),
                        path: path.to_owned(),
                        wait,
                    });
                }
                // A rate-limited request was not processed: repeating it,
                // even a create, cannot duplicate anything.
                tracing::warn!(path, ?wait, status, "GitHub rate limit; waiting");
                tokio::time::sleep(wait).await;
                continue;
            }
            if status >= 500 && method == Method::Get && attempt <= self.settings.read_retries {
                tracing::warn!(path, status, "GitHub server error on a read; retrying");
                tokio::time::sleep(self.backoff(attempt)).await;
                continue;
            }
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()
                });
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
}

/// How long GitHub asks us to wait, if this answer is a rate limit.
fn rate_limit_wait(status: u16, headers: &http::HeaderMap) -> Option<Duration> {
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
        return Some(Duration::from_secs(secs));
    }
    if header("x-ratelimit-remaining") == Some("0") {
        let reset = header("x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok())?;
        let now = chrono::Utc::now().timestamp();
        return Some(Duration::from_secs((reset - now).max(1) as u64));
    }
    // A 429 without headers is still a rate limit, and so is a 403 whose
    // message says so (secondary limits); any other 403 is a real "no".
    (status == 429).then(|| Duration::from_secs(60))
}

#[derive(Deserialize)]
struct GhUser {
    login: String,
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
    user: GhUser,
    html_url: String,
    #[serde(default)]
    pull_request: Option<IgnoredAny>,
}

impl From<GhIssue> for Issue {
    fn from(i: GhIssue) -> Issue {
        Issue {
            number: i.number,
            title: i.title,
            body: i.body.unwrap_or_default(),
            state: i.state,
            labels: i.labels.into_iter().map(|l| l.name).collect(),
            author: i.user.login,
            url: i.html_url,
            is_pull_request: i.pull_request.is_some(),
        }
    }
}

#[derive(Deserialize)]
struct GhComment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    user: GhUser,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl From<GhComment> for Comment {
    fn from(c: GhComment) -> Comment {
        Comment {
            id: c.id,
            author: c.user.login,
            body: c.body.unwrap_or_default(),
            created_at: c.created_at.timestamp(),
        }
    }
}

#[derive(Deserialize)]
struct GhRef {
    label: String,
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
    user: GhUser,
    html_url: String,
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
            author: p.user.login,
            url: p.html_url,
        }
    }
}

#[derive(Deserialize)]
struct GhSearch {
    items: Vec<GhIssue>,
}

impl Forge for GitHub {
    async fn whoami(&self) -> Result<String, ForgeError> {
        let user: GhUser = self.json(Method::Get, "user", &[], None).await?;
        Ok(user.login)
    }

    async fn issues_by(&self, creator: &str) -> Result<Vec<Issue>, ForgeError> {
        let issues: Vec<GhIssue> = self
            .pages(
                &self.repo_path("issues"),
                &[("creator", creator), ("state", "all")],
            )
            .await?;
        Ok(issues
            .into_iter()
            .map(Issue::from)
            .filter(|i| !i.is_pull_request)
            .collect())
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
        let body = json!({"title": issue.title, "body": issue.body, "labels": issue.labels});
        let created: GhIssue = self
            .json(Method::Post, &self.repo_path("issues"), &[], Some(&body))
            .await?;
        Ok(created.into())
    }

    async fn edit_issue(
        &self,
        number: u64,
        body: Option<&str>,
        state: Option<State>,
    ) -> Result<Issue, ForgeError> {
        let mut patch = serde_json::Map::new();
        if let Some(body) = body {
            patch.insert("body".into(), json!(body));
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
        Ok(edited.into())
    }

    async fn comment(&self, number: u64, body: &str) -> Result<Comment, ForgeError> {
        let created: GhComment = self
            .json(
                Method::Post,
                &self.repo_path(&format!("issues/{number}/comments")),
                &[],
                Some(&json!({"body": body})),
            )
            .await?;
        Ok(created.into())
    }

    async fn comments(&self, number: u64) -> Result<Vec<Comment>, ForgeError> {
        let comments: Vec<GhComment> = self
            .pages(&self.repo_path(&format!("issues/{number}/comments")), &[])
            .await?;
        Ok(comments.into_iter().map(Comment::from).collect())
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

    async fn pull(&self, number: u64) -> Result<PullRequest, ForgeError> {
        let pull: GhPull = self
            .json(
                Method::Get,
                &self.repo_path(&format!("pulls/{number}")),
                &[],
                None,
            )
            .await?;
        Ok(pull.into())
    }

    async fn create_pull(
        &self,
        pull: &NewPull,
        labels: &[String],
    ) -> Result<PullRequest, ForgeError> {
        let body = json!({"title": pull.title, "head": pull.head, "base": pull.base, "body": pull.body,
                          "maintainer_can_modify": true});
        let created: PullRequest = self
            .json::<GhPull>(Method::Post, &self.repo_path("pulls"), &[], Some(&body))
            .await?
            .into();
        if !labels.is_empty() {
            // Labels are for people; a token without triage rights cannot
            // set them, and the pull request exists either way.
            if let Err(e) = self
                .send(
                    Method::Post,
                    &self.repo_path(&format!("issues/{}/labels", created.number)),
                    &[],
                    Some(&json!({"labels": labels})),
                )
                .await
            {
                tracing::warn!(pull = created.number, error = %e, "could not label a pull request");
            }
        }
        Ok(created)
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
        Ok(closed.into())
    }

    async fn open_pulls_mentioning(&self, text: &str) -> Result<Vec<Issue>, ForgeError> {
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
}
