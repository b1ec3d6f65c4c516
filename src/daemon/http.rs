//! The HTTP endpoint: `GET /metrics` (Prometheus text) and `GET /healthz`
//! (200 or 503 with a JSON body saying why). Loopback by default.
//!
//! Must never: read more than a small request head, keep a connection
//! open, or block the loop (each connection is its own task with a timeout).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Health;

const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub(crate) struct State {
    pub health: Arc<Mutex<Health>>,
    pub metrics: Option<PrometheusHandle>,
}

pub(crate) async fn serve(listener: TcpListener, state: State, stop: CancellationToken) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let state = state.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle(stream, &state).await {
                            tracing::debug!(error = %e, "HTTP connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = stop.cancelled() => return,
        }
    }
}

/// The method and path of a request head, if it is complete and sane.
fn parse_request_line(head: &[u8]) -> Option<(&str, &str)> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text.split("\r\n").next()?;
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return None;
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    Some((method, path))
}

async fn handle(mut stream: TcpStream, state: &State) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = tokio::time::timeout(READ_TIMEOUT, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok(head.len() < MAX_HEAD || head.windows(4).any(|w| w == b"\r\n\r\n"))
    })
    .await;
    let (status, content_type, body) = match (complete, parse_request_line(&head)) {
        (Ok(Ok(true)), Some((method, path))) => route(method, path, state),
        (Err(_), _) => return Ok(()),
        _ => (400, "text/plain", "bad request\n".to_string()),
    };
    let head_only = head.starts_with(b"HEAD ");
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    if !head_only {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

fn route(method: &str, path: &str, state: &State) -> (u16, &'static str, String) {
    if method != "GET" && method != "HEAD" {
        return (405, "text/plain", "only GET and HEAD\n".into());
    }
    let report = state
        .health
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .report(Instant::now());
    super::metrics::health(
        report.healthy,
        Duration::from_secs(report.seconds_since_progress),
    );
    match path {
        "/healthz" => {
            let body = serde_json::to_string_pretty(&report).unwrap_or_default() + "\n";
            let status = if report.healthy { 200 } else { 503 };
            (status, "application/json", body)
        }
        "/metrics" => match &state.metrics {
            Some(handle) => (
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                handle.render(),
            ),
            None => (404, "text/plain", "metrics are not recorded\n".into()),
        },
        _ => (404, "text/plain", "try /metrics or /healthz\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_parsed_strictly() {
        assert_eq!(
            parse_request_line(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("GET", "/healthz"))
        );
        assert_eq!(
            parse_request_line(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(parse_request_line(b"GET /healthz\r\n\r\n"), None);
        assert_eq!(parse_request_line(b"\xff\xfe"), None);
    }
}
