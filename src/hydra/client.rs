//! HTTP to Hydra: polite, patient, and never trusting a body until it parsed.
//!
//! Every request waits for an in-flight slot, then for the [`Pacer`]. A 429
//! (nginx's "slow down", sent without `Retry-After`) holds every request back
//! for a jittered, growing, bounded delay and the request is sent again; these
//! waits have their own budget, so a busy Hydra slows a pass down instead of
//! failing it after the few retries meant for real errors.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, HeaderMap, RETRY_AFTER};
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use url::Url;

use super::build_page::{BuildCause, parse_build_page};
use super::pacer::{Pacer, Pacing, Progress};
use super::{Build, BuildInEvals, Eval, EvalsPage, HydraError, JobsetOverview};

/// Refusals (429) of one request ridden out before giving up on it: with
/// delays growing from `retry_initial_delay` to `retry_max_delay`, the
/// defaults wait out about half an hour of refusals.
const RATE_LIMIT_RETRIES: usize = 40;

/// Validated settings for talking to one Hydra.
#[derive(Debug, Clone)]
pub struct HydraSettings {
    pub url: Url,
    pub connect_timeout: Duration,
    /// Longest silence while reading a body. `/eval/{id}/builds` of nixpkgs
    /// takes minutes, so this is a read timeout, not a whole-request one.
    pub read_timeout: Duration,
    pub retries: usize,
    pub retry_initial_delay: Duration,
    pub retry_max_delay: Duration,
    /// Requests in flight at once (hydra.nixos.org asks for one or two).
    pub max_in_flight: usize,
    /// The pace of requests (see [`super::pacer`]).
    pub pacing: Pacing,
    /// Appended to the User-Agent so Hydra's operators can reach whoever runs us.
    pub contact: Option<String>,
}

impl HydraSettings {
    pub fn new(url: Url) -> HydraSettings {
        HydraSettings {
            url,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(900),
            retries: 5,
            retry_initial_delay: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(60),
            max_in_flight: 2,
            pacing: Pacing::default(),
            contact: None,
        }
    }
}

#[derive(Clone)]
pub struct HydraClient {
    http: reqwest::Client,
    /// Follows no redirect (see [`HydraClient::latest_success`]).
    locating: reqwest::Client,
    base: Url,
    in_flight: Arc<Semaphore>,
    pacer: Arc<Pacer>,
    backoff: ExponentialBuilder,
    rate_limit_backoff: ExponentialBuilder,
    /// Told while the client waits (pacing, backing off).
    progress: Option<Progress>,
}

impl std::fmt::Debug for HydraClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HydraClient")
            .field("base", &self.base.as_str())
            .finish()
    }
}

impl HydraClient {
    pub fn new(settings: &HydraSettings) -> Result<HydraClient, HydraError> {
        let mut user_agent = format!(
            "hydra-sentinel/{} (nixpkgs failure tracker",
            env!("CARGO_PKG_VERSION")
        );
        if let Some(contact) = &settings.contact {
            user_agent.push_str("; ");
            user_agent.push_str(contact);
        }
        user_agent.push(')');
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, "application/json".parse().expect("static header"));
        let builder = || {
            reqwest::Client::builder()
                .user_agent(user_agent.clone())
                .default_headers(headers.clone())
                .gzip(true)
                .connect_timeout(settings.connect_timeout)
                .read_timeout(settings.read_timeout)
        };
        let http = builder().build().map_err(HydraError::Client)?;
        // Hydra answers "which build?" questions with a redirect; reading the
        // Location instead of following it costs one request, not two.
        let locating = builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(HydraError::Client)?;
        let mut base = settings.url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(settings.retry_initial_delay)
            .with_max_delay(settings.retry_max_delay)
            .with_max_times(settings.retries);
        let rate_limit_backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(settings.retry_initial_delay)
            .with_max_delay(settings.retry_max_delay)
            .with_max_times(RATE_LIMIT_RETRIES);
        Ok(HydraClient {
            http,
            locating,
            base,
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            pacer: Arc::new(Pacer::new(settings.pacing)),
            backoff,
            rate_limit_backoff,
            progress: None,
        })
    }

    /// The same client (same pace, same in-flight slots) telling `progress`
    /// while it waits, so that a watchdog sees a pacing loop as alive.
    pub fn with_progress(mut self, progress: Option<Progress>) -> HydraClient {
        self.progress = progress;
        self
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// A URL under the Hydra base; `path` has no leading slash.
    pub fn url(&self, path: &str) -> Url {
        self.base
            .join(path)
            .expect("paths we build are valid relative URLs")
    }

    /// The first page of a jobset's evals (newest first).
    pub fn evals_url(&self, project: &str, jobset: &str) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("an http(s) base URL")
            .pop_if_empty()
            .extend(["jobset", project, jobset, "evals"]);
        url
    }

    /// The jobsets of a project with when Hydra last checked each.
    pub async fn jobsets_overview(&self, project: &str) -> Result<Vec<JobsetOverview>, HydraError> {
        let mut url = self.url("api/jobsets");
        url.query_pairs_mut().append_pair("project", project);
        self.get_json(&url).await
    }

    /// One page of evals; `next` is resolved against the page's own URL, as
    /// Hydra's links are relative (`?page=2`). A renamed jobset's old URLs
    /// answer 301 with the new ones (NixOS/hydra `Controller/Jobset.pm`
    /// `jobsetChain`, `jobsetrenames`): the redirect is followed, said in
    /// the log, and the next page is asked for at its new address.
    pub async fn evals_page(&self, url: &Url) -> Result<(EvalsPage, Option<Url>), HydraError> {
        let (page, served_from): (EvalsPage, Url) = self
            .paced(url, true, |permit| async move {
                let response = self.get_json_once_from(url).await;
                drop(permit);
                response
            })
            .await?;
        if served_from.path() != url.path() {
            tracing::warn!(asked = %url, served_from = %served_from,
                "Hydra redirected a jobset's evals page: the jobset was probably renamed; update [[jobsets]] in the configuration");
        }
        let url = &served_from;
        let next = match &page.next {
            Some(link) => Some(url.join(link).map_err(|e| HydraError::BadUrl {
                url: link.clone(),
                reason: e.to_string(),
            })?),
            None => None,
        };
        Ok((page, next))
    }

    pub async fn eval(&self, id: i64) -> Result<Eval, HydraError> {
        self.get_json(&self.url(&format!("eval/{id}"))).await
    }

    pub async fn build(&self, id: i64) -> Result<Build, HydraError> {
        self.get_json(&self.url(&format!("build/{id}"))).await
    }

    /// Whether build `id` failed on its own or inherited a dependency's
    /// failure, from its HTML page (no JSON carries it; see
    /// [`BuildCause`]). Paced and retried like every request.
    pub async fn build_cause(&self, id: i64) -> Result<BuildCause, HydraError> {
        let url = self.url(&format!("build/{id}"));
        self.paced(&url, true, |permit| {
            let url = &url;
            async move {
                let response = self.send_accepting(url, "text/html").await?;
                let body = response.bytes().await.map_err(|source| HydraError::Http {
                    url: url.to_string(),
                    source,
                });
                drop(permit);
                Ok(parse_build_page(&String::from_utf8_lossy(&body?)))
            }
        })
        .await
    }

    /// A build with the evals that contain it.
    pub async fn build_in_evals(&self, id: i64) -> Result<BuildInEvals, HydraError> {
        self.get_json(&self.url(&format!("build/{id}"))).await
    }

    /// The job's newest successful build, if Hydra has one: `/job/{p}/{j}/
    /// {job}/latest` redirects to it (NixOS/hydra
    /// `Base/Controller/ListBuilds.pm` `latest`: finished, status 0, highest
    /// id), or answers 404.
    pub async fn latest_success(
        &self,
        project: &str,
        jobset: &str,
        job: &str,
    ) -> Result<Option<i64>, HydraError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("an http(s) base URL")
            .pop_if_empty()
            .extend(["job", project, jobset, job, "latest"]);
        self.locate_build(&url).await
    }

    /// The eval's build of `job`: `/eval/{id}/job/{job}` redirects to it
    /// (`Controller/JobsetEval.pm` `job`), or answers 404.
    pub async fn eval_job(&self, eval: i64, job: &str) -> Result<Option<i64>, HydraError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("an http(s) base URL")
            .pop_if_empty()
            .extend(["eval", &eval.to_string(), "job", job]);
        self.locate_build(&url).await
    }

    /// The build id a redirect points at, or None on 404.
    async fn locate_build(&self, url: &Url) -> Result<Option<i64>, HydraError> {
        self.paced(url, true, |permit| async move {
            let answer = self.locate_once(url).await;
            drop(permit);
            answer
        })
        .await
    }

    async fn locate_once(&self, url: &Url) -> Result<Option<i64>, HydraError> {
        tracing::debug!(%url, "GET (where does it redirect?)");
        metrics::counter!("hydra_sentinel_hydra_requests_total", "endpoint" => endpoint(url))
            .increment(1);
        let response = self
            .locating
            .get(url.clone())
            .send()
            .await
            .map_err(|source| HydraError::Http {
                url: url.to_string(),
                source,
            })?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status.is_redirection() {
            let build = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|location| location.split('?').next())
                .and_then(|location| location.trim_end_matches('/').rsplit_once("/build/"))
                .and_then(|(_, id)| id.parse::<i64>().ok());
            return match build {
                Some(id) => Ok(Some(id)),
                None => Err(HydraError::Status {
                    url: url.to_string(),
                    status: status.as_u16(),
                    message: Some("a redirect that does not point at a build".into()),
                    retry_after: None,
                }),
            };
        }
        Err(HydraError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            message: Some(if status.is_success() {
                "expected a redirect to a build".into()
            } else {
                status.canonical_reason().unwrap_or("error").into()
            }),
            retry_after: None,
        })
    }

    /// Open `/eval/{id}/builds` as a byte stream. Sent once: a failure is
    /// returned, not retried, since each try costs Hydra the whole array's
    /// work (see [`crate::ingest`]); only a 429, which nginx answers without
    /// asking Hydra, is sent again after a pause. The body arrives as it is
    /// read, so a caller parses while downloading and never holds the
    /// document; errors in the middle of the body surface as `io::Error`s
    /// from the stream.
    pub async fn eval_builds_stream(
        &self,
        id: i64,
    ) -> Result<
        impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
        HydraError,
    > {
        let url = self.url(&format!("eval/{id}/builds"));
        let (permit, response) = self
            .paced(&url, false, |permit| async {
                let response = self.send(&url).await?;
                Ok((permit, response))
            })
            .await?;
        Ok(response.bytes_stream().map(move |chunk| {
            // The permit lives as long as the body is being read.
            let _held = &permit;
            chunk.map_err(std::io::Error::other)
        }))
    }

    async fn get_json<T: DeserializeOwned>(&self, url: &Url) -> Result<T, HydraError> {
        self.paced(url, true, |permit| async move {
            let response = self.get_json_once(url).await;
            drop(permit);
            response
        })
        .await
    }

    /// Run `attempt` with an in-flight slot, at the pace; a 429 holds every
    /// request back and `attempt` runs again (its own budget); other
    /// transient errors are retried with backoff when `retry_errors`.
    async fn paced<T, F, Fut>(
        &self,
        url: &Url,
        retry_errors: bool,
        attempt: F,
    ) -> Result<T, HydraError>
    where
        F: Fn(tokio::sync::OwnedSemaphorePermit) -> Fut,
        Fut: std::future::Future<Output = Result<T, HydraError>>,
    {
        let mut error_delays = self.backoff.build();
        let mut refusal_delays = self.rate_limit_backoff.build();
        loop {
            let permit = Arc::clone(&self.in_flight)
                .acquire_owned()
                .await
                .expect("semaphore never closed");
            self.pacer.wait(self.progress.as_ref()).await;
            let error = match attempt(permit).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let delay = if error.is_rate_limited() {
                metrics::counter!("hydra_sentinel_hydra_rate_limited_total").increment(1);
                // nginx sends no Retry-After; honour one if some proxy does.
                refusal_delays
                    .next()
                    .map(|d| error.retry_after().unwrap_or(d))
            } else if retry_errors && error.is_transient() {
                error_delays
                    .next()
                    .map(|d| error.retry_after().unwrap_or(d))
            } else {
                None
            };
            let Some(delay) = delay else {
                return Err(error);
            };
            tracing::warn!(%url, error = %crate::error_chain(&error), ?delay,
                "Hydra refused or failed; holding every request back, then retrying");
            // Everyone waits, not just this request: Hydra is one server.
            self.pacer.hold_off(delay);
        }
    }

    async fn get_json_once<T: DeserializeOwned>(&self, url: &Url) -> Result<T, HydraError> {
        self.get_json_once_from(url).await.map(|(value, _)| value)
    }

    /// [`Self::get_json_once`], with the URL that answered (after redirects).
    async fn get_json_once_from<T: DeserializeOwned>(
        &self,
        url: &Url,
    ) -> Result<(T, Url), HydraError> {
        let response = self.send(url).await?;
        let served_from = response.url().clone();
        let parsed = match response.bytes().await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| HydraError::Json {
                url: url.to_string(),
                source,
            }),
            Err(source) => Err(HydraError::Http {
                url: url.to_string(),
                source,
            }),
        };
        if parsed.is_err() {
            metrics::counter!("hydra_sentinel_hydra_errors_total", "kind" => "body").increment(1);
        }
        parsed.map(|value| (value, served_from))
    }

    /// Send a GET and turn a non-success status into an error that keeps
    /// Hydra's `{"error": …}` message.
    async fn send(&self, url: &Url) -> Result<reqwest::Response, HydraError> {
        self.send_accepting(url, "application/json").await
    }

    /// [`Self::send`] asking for `accept` (Hydra picks JSON or HTML by it).
    async fn send_accepting(
        &self,
        url: &Url,
        accept: &'static str,
    ) -> Result<reqwest::Response, HydraError> {
        tracing::debug!(%url, accept, "GET");
        let endpoint = match endpoint(url) {
            "build" if accept != "application/json" => "build_page",
            other => other,
        };
        metrics::counter!("hydra_sentinel_hydra_requests_total", "endpoint" => endpoint)
            .increment(1);
        let response = self
            .http
            .get(url.clone())
            .header(ACCEPT, accept)
            .send()
            .await
            .map_err(|source| {
                metrics::counter!("hydra_sentinel_hydra_errors_total", "kind" => "network")
                    .increment(1);
                HydraError::Http {
                    url: url.to_string(),
                    source,
                }
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let kind = if status.is_server_error() {
            "5xx"
        } else {
            "4xx"
        };
        metrics::counter!("hydra_sentinel_hydra_errors_total", "kind" => kind).increment(1);
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.bytes().await.unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|m| m.as_str()).map(str::to_owned));
        Err(HydraError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            message,
            retry_after,
        })
    }
}

/// The kind of Hydra page a URL asks for, as a metrics label.
fn endpoint(url: &Url) -> &'static str {
    let path = url.path().trim_end_matches('/');
    if path.ends_with("/api/jobsets") {
        "api_jobsets"
    } else if path.contains("/eval/") && path.contains("/job/") {
        "eval_job"
    } else if path.contains("/job/") && path.ends_with("/latest") {
        "job_latest"
    } else if path.ends_with("/evals") {
        "evals"
    } else if path.ends_with("/builds") {
        "eval_builds"
    } else if path.contains("/build/") {
        "build"
    } else if path.contains("/eval/") {
        "eval"
    } else {
        "other"
    }
}
