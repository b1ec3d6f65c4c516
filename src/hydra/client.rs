//! HTTP to Hydra: polite, patient, and never trusting a body until it parsed.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, HeaderMap, RETRY_AFTER};
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use url::Url;

use super::{Build, Eval, EvalsPage, HydraError};

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
            contact: None,
        }
    }
}

#[derive(Clone)]
pub struct HydraClient {
    http: reqwest::Client,
    base: Url,
    in_flight: Arc<Semaphore>,
    backoff: ExponentialBuilder,
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
        let http = reqwest::Client::builder()
            .user_agent(user_agent)
            .default_headers(headers)
            .gzip(true)
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
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
        Ok(HydraClient {
            http,
            base,
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            backoff,
        })
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

    /// One page of evals; `next` is resolved against the page's own URL, as
    /// Hydra's links are relative (`?page=2`).
    pub async fn evals_page(&self, url: &Url) -> Result<(EvalsPage, Option<Url>), HydraError> {
        let page: EvalsPage = self.get_json(url).await?;
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

    /// Open `/eval/{id}/builds` as a byte stream, retrying until the server
    /// answers with a success status. The body arrives as it is read, so a
    /// caller parses while downloading and never holds the document; errors
    /// in the middle of the body surface as `io::Error`s from the stream, and
    /// retrying them is the caller's business (it has state to roll back).
    pub async fn eval_builds_stream(
        &self,
        id: i64,
    ) -> Result<
        impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
        HydraError,
    > {
        let url = self.url(&format!("eval/{id}/builds"));
        let permit = (|| async {
            let permit = Arc::clone(&self.in_flight)
                .acquire_owned()
                .await
                .expect("semaphore never closed");
            let response = self.send(&url).await?;
            Ok((permit, response))
        })
        .retry(self.backoff)
        .sleep(tokio::time::sleep)
        .when(HydraError::is_transient)
        .adjust(|e: &HydraError, delay| e.retry_after().or(delay))
        .notify(|e, delay| tracing::warn!(error = %crate::error_chain(e), ?delay, "retrying Hydra request"))
        .await?;
        let (permit, response) = permit;
        Ok(response.bytes_stream().map(move |chunk| {
            // The permit lives as long as the body is being read.
            let _held = &permit;
            chunk.map_err(std::io::Error::other)
        }))
    }

    async fn get_json<T: DeserializeOwned>(&self, url: &Url) -> Result<T, HydraError> {
        (|| self.get_json_once(url))
            .retry(self.backoff)
            .sleep(tokio::time::sleep)
            .when(HydraError::is_transient)
            .adjust(|e, delay| e.retry_after().or(delay))
            .notify(|e, delay| tracing::warn!(error = %crate::error_chain(e), ?delay, "retrying Hydra request"))
            .await
    }

    async fn get_json_once<T: DeserializeOwned>(&self, url: &Url) -> Result<T, HydraError> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .expect("semaphore never closed");
        let response = self.send(url).await?;
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
        parsed
    }

    /// Send a GET and turn a non-success status into an error that keeps
    /// Hydra's `{"error": …}` message.
    async fn send(&self, url: &Url) -> Result<reqwest::Response, HydraError> {
        tracing::debug!(%url, "GET");
        metrics::counter!("hydra_sentinel_hydra_requests_total", "endpoint" => endpoint(url))
            .increment(1);
        let response = self.http.get(url.clone()).send().await.map_err(|source| {
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
    if path.ends_with("/evals") {
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
