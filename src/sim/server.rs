//! A minimal HTTP/1.1 server on loopback that answers like Hydra, and, in
//! its "real cost" mode, like hydra.nixos.org behind its nginx: slow to
//! start answering `/eval/{id}/builds`, cut off by the gateway after 900 s,
//! and rate-limited, all on a scaled clock so that tests stay fast.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{SimBuild, SimHydra};

/// A fault to inject into the next response whose path starts with a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and Hydra's `{"error": …}` body.
    Status(u16),
    /// Send only this share (per mille) of the body. With `honest_length`
    /// the Content-Length matches what is sent (the JSON itself is cut);
    /// without, the connection closes before the promised length.
    Truncate { per_mille: u32, honest_length: bool },
    /// Wait before answering.
    Delay(Duration),
}

/// What answering costs, as on hydra.nixos.org. Durations are simulated
/// seconds; `time_scale` turns them into real ones (0.001: 900 s are 0.9 s).
/// [`Costs::free`] (the default) is the look-alike as it always was.
#[derive(Debug, Clone, PartialEq)]
pub struct Costs {
    /// Real seconds per simulated second.
    pub time_scale: f64,
    /// Hydra's work per build of `/eval/{id}/builds` before the first byte:
    /// the array is built whole in memory (NixOS/hydra
    /// `Controller/JobsetEval.pm` `all_builds`), each element with several
    /// queries (`Schema/Result/Builds.pm` `as_json`).
    pub eval_builds_work_per_build: Duration,
    /// nginx's `proxy_read_timeout`: with no byte from Hydra by then, 504
    /// (NixOS/infra `build/hydra-proxy.nix`: `proxyTimeout = "900s"`).
    pub gateway_timeout: Option<Duration>,
    /// nginx's `limit_req`.
    pub limiter: Option<Limiter>,
}

/// nginx `limit_req` without `nodelay`: a request above the rate is held
/// until its turn (excess / rate), one beyond the burst is refused with
/// `limit_req_status` and no Retry-After (NixOS/infra
/// `build/hydra-proxy.nix`: `limit_req_zone $binary_remote_addr
/// zone=hydra-server:8m rate=2r/s`, `limit_req_status 429`, `limit_req
/// zone=hydra-server burst=7`; nginx `ngx_http_limit_req_module.c`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limiter {
    /// Requests per simulated second.
    pub rate: f64,
    pub burst: u32,
}

impl Costs {
    /// No costs at all: every answer at once, no limits.
    pub fn free() -> Costs {
        Costs {
            time_scale: 1.0,
            eval_builds_work_per_build: Duration::ZERO,
            gateway_timeout: None,
            limiter: None,
        }
    }

    /// hydra.nixos.org's costs on a clock running `1 / time_scale` times
    /// faster. The work per build (5 ms) is an assumption: `as_json` runs
    /// about five queries per build, and it puts nixpkgs trunk (~250,000
    /// builds, ~1,250 s) beyond the gateway's 900 s, as reported
    /// (NixOS/infra#270).
    pub fn hydra_nixos_org(time_scale: f64) -> Costs {
        Costs {
            time_scale,
            eval_builds_work_per_build: Duration::from_millis(5),
            gateway_timeout: Some(Duration::from_secs(900)),
            limiter: Some(Limiter {
                rate: 2.0,
                burst: 7,
            }),
        }
    }

    /// A simulated duration in real time.
    pub fn real(&self, simulated: Duration) -> Duration {
        simulated.mul_f64(self.time_scale)
    }
}

impl Default for Costs {
    fn default() -> Self {
        Costs::free()
    }
}

/// nginx's per-client limiter state (one client: loopback).
#[derive(Debug, Default)]
struct LimiterState {
    /// Requests above the rate not yet drained, as of `last`.
    excess: f64,
    last: Option<std::time::Instant>,
}

enum Admission {
    Now,
    After(Duration),
    Refused,
}

impl LimiterState {
    /// nginx's `ngx_http_limit_req_lookup`: `excess = old - rate * elapsed
    /// + 1`, at least 0; beyond the burst refused (and not counted), else
    /// kept and the request delayed by `excess / rate`.
    fn admit(&mut self, limiter: &Limiter, costs: &Costs, now: std::time::Instant) -> Admission {
        let Some(last) = self.last else {
            self.last = Some(now);
            self.excess = 0.0;
            return Admission::Now;
        };
        let elapsed = now.saturating_duration_since(last).as_secs_f64() / costs.time_scale;
        // nginx counts in whole milli-requests; so do we, to the microsecond.
        let excess = (self.excess - limiter.rate * elapsed + 1.0).max(0.0);
        let excess = if excess < 1e-6 { 0.0 } else { excess };
        if excess > f64::from(limiter.burst) {
            return Admission::Refused;
        }
        self.excess = excess;
        self.last = Some(now);
        if excess > 0.0 {
            Admission::After(costs.real(Duration::from_secs_f64(excess / limiter.rate)))
        } else {
            Admission::Now
        }
    }
}

/// Requests and bytes per kind of page, as the server saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Per endpoint (`evals`, `eval`, `eval_builds`, `build`, `build_page`
    /// (a build's HTML page), `other`).
    pub endpoints: BTreeMap<&'static str, EndpointCounters>,
    /// The most requests that were open at once (from the request line to
    /// the last byte of the answer, nginx's wait included).
    pub max_in_flight: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointCounters {
    pub requests: usize,
    /// Body bytes sent.
    pub bytes: usize,
    /// Answers by status code.
    pub statuses: BTreeMap<u16, usize>,
}

impl Counters {
    pub fn requests(&self, endpoint: &str) -> usize {
        self.endpoints.get(endpoint).map_or(0, |e| e.requests)
    }

    pub fn bytes(&self, endpoint: &str) -> usize {
        self.endpoints.get(endpoint).map_or(0, |e| e.bytes)
    }

    /// Answers with `status`, over every endpoint.
    pub fn status(&self, status: u16) -> usize {
        self.endpoints
            .values()
            .map(|e| e.statuses.get(&status).copied().unwrap_or(0))
            .sum()
    }
}

/// The kind of page a path asks for (the same labels as the client's metrics).
pub fn endpoint(path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
    if path == "/api/jobsets" {
        "api_jobsets"
    } else if path.starts_with("/eval/") && path.contains("/job/") {
        "eval_job"
    } else if path.starts_with("/job/") && path.ends_with("/latest") {
        "job_latest"
    } else if path.ends_with("/evals") {
        "evals"
    } else if path.starts_with("/eval/") && path.ends_with("/builds") {
        "eval_builds"
    } else if path.starts_with("/build/") {
        "build"
    } else if path.starts_with("/eval/") {
        "eval"
    } else {
        "other"
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub path: String,
    pub accept: Option<String>,
    pub accept_encoding: Option<String>,
    pub user_agent: Option<String>,
}

struct State {
    hydra: SimHydra,
    /// How many of the generated evals are published (oldest first).
    visible: usize,
    /// More jobsets of the same instance (staging-next beside trunk), each
    /// with its published count: a request is served by the jobset it
    /// names, by name, eval id or build id ([`route_any`]).
    others: Vec<(SimHydra, usize)>,
    page_size: usize,
    faults: VecDeque<(String, Fault)>,
    requests: Vec<RequestRecord>,
    /// Bytes per second for large bodies; None for full speed.
    throttle: Option<usize>,
    /// Rendered `/eval/{id}/builds` bodies, plain and gzipped.
    bodies: HashMap<(i64, bool), Arc<Vec<u8>>>,
    /// Fixed answers by exact request target, served before anything else.
    files: HashMap<String, Arc<Vec<u8>>>,
    /// Added to every answer, to make a pass take a while.
    latency: Option<Duration>,
    costs: Costs,
    limiter: LimiterState,
    counters: Counters,
    in_flight: usize,
    /// A jobset renamed from this name: its URLs redirect (301).
    renamed_from: Option<String>,
}

/// A running fake Hydra. Stops when dropped.
pub struct FakeHydra {
    served: super::http::Served,
    state: Arc<Mutex<State>>,
}

impl FakeHydra {
    /// Serve `hydra` on an ephemeral loopback port, from a thread of its own
    /// so that callers may be synchronous tests or another runtime.
    pub fn start(hydra: SimHydra) -> std::io::Result<FakeHydra> {
        let visible = hydra.evals.len();
        let state = Arc::new(Mutex::new(State {
            hydra,
            visible,
            others: Vec::new(),
            page_size: 20,
            faults: VecDeque::new(),
            requests: Vec::new(),
            throttle: None,
            bodies: HashMap::new(),
            files: HashMap::new(),
            latency: None,
            costs: Costs::free(),
            limiter: LimiterState::default(),
            counters: Counters::default(),
            in_flight: 0,
            renamed_from: None,
        }));
        let server_state = Arc::clone(&state);
        let served = super::http::Served::start("fake-hydra", move |stream| {
            let state = Arc::clone(&server_state);
            async move {
                let _ = serve(stream, state).await;
            }
        })?;
        Ok(FakeHydra { served, state })
    }

    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.served.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serve another jobset of the same Hydra (its eval and build ids must
    /// differ from the others'), every eval published.
    pub fn add_jobset(&self, hydra: SimHydra) {
        let mut state = self.state();
        let visible = hydra.evals.len();
        state.others.push((hydra, visible));
        state.bodies.clear();
    }

    /// Publish only the oldest `n` evals of the added jobset `jobset`.
    pub fn publish_jobset(&self, jobset: &str, n: usize) {
        let mut state = self.state();
        if let Some((hydra, visible)) = state.others.iter_mut().find(|(h, _)| h.jobset == jobset) {
            *visible = n.min(hydra.evals.len());
        }
        state.bodies.clear();
    }

    /// Publish only the oldest `n` evals (to simulate time passing).
    pub fn publish(&self, n: usize) {
        let mut state = self.state();
        state.visible = n.min(state.hydra.evals.len());
        state.bodies.clear();
    }

    pub fn set_page_size(&self, n: usize) {
        self.state().page_size = n.max(1);
    }

    /// Serve large bodies at this many bytes per second.
    pub fn throttle(&self, bytes_per_second: Option<usize>) {
        self.state().throttle = bytes_per_second;
    }

    /// Delay every answer by this much.
    pub fn set_latency(&self, latency: Option<Duration>) {
        self.state().latency = latency;
    }

    /// Answer requests for exactly `target` (path and query) with `body`,
    /// e.g. a recorded Hydra response.
    pub fn serve_file(&self, target: &str, body: impl Into<Vec<u8>>) {
        self.state()
            .files
            .insert(target.to_owned(), Arc::new(body.into()));
    }

    /// Inject `fault` into the next request whose path starts with `prefix`.
    pub fn inject(&self, prefix: &str, fault: Fault) {
        self.state().faults.push_back((prefix.to_owned(), fault));
    }

    /// Change a build in place (restarts, late results).
    pub fn edit_build(&self, id: i64, edit: impl FnOnce(&mut SimBuild)) {
        let mut state = self.state();
        if let Some(build) = state.hydra.builds.get_mut(&id) {
            edit(build);
        }
        state.bodies.clear();
    }

    /// Answer with these costs from now on ([`Costs::hydra_nixos_org`] for
    /// the real thing, scaled).
    pub fn set_costs(&self, costs: Costs) {
        let mut state = self.state();
        state.costs = costs;
        state.limiter = LimiterState::default();
    }

    /// Requests, bytes and statuses per endpoint so far.
    pub fn counters(&self) -> Counters {
        self.state().counters.clone()
    }

    /// Rename the jobset, as Hydra's admin can: the old URLs answer 301 to
    /// the new ones and every build reports the new name (NixOS/hydra
    /// `Controller/Jobset.pm` `jobsetChain`: `jobsetrenames`, `redirect(…,
    /// 301)`; `Builds.pm` `as_json` reads the jobset's current name).
    pub fn rename_jobset(&self, new_name: &str) {
        let mut state = self.state();
        let old = std::mem::replace(&mut state.hydra.jobset, new_name.to_owned());
        state.renamed_from = Some(old);
        state.bodies.clear();
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state().requests.clone()
    }

    pub fn hydra(&self) -> SimHydra {
        self.state().hydra.clone()
    }

    /// Render an eval's builds body ahead of time (benchmarks time the client,
    /// not the fake server's serialisation).
    pub fn prepare(&self, eval: i64, gzip: bool) {
        let mut state = self.state();
        let _ = eval_builds_body(&mut state, eval, gzip);
    }
}

struct Response {
    status: u16,
    body: Arc<Vec<u8>>,
    gzip: bool,
    location: Option<String>,
    fault: Option<Fault>,
    throttle: Option<usize>,
    content_type: &'static str,
}

/// Counts a request as open until dropped.
struct Open(Arc<Mutex<State>>);

impl Drop for Open {
    fn drop(&mut self) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        state.in_flight -= 1;
    }
}

async fn serve(stream: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let (request, mut stream) = super::http::read_request(stream).await?;
    let headers = request.headers;
    let target = request.target;
    // A build's HTML page is its own, costlier kind of request.
    let kind = match endpoint(&target) {
        "build" if !headers.get("accept").is_some_and(|a| a.contains("json")) => "build_page",
        other => other,
    };
    let admission = {
        let mut guard = state.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *guard;
        state.in_flight += 1;
        state.counters.max_in_flight = state.counters.max_in_flight.max(state.in_flight);
        state.counters.endpoints.entry(kind).or_default().requests += 1;
        state.requests.push(RequestRecord {
            path: target.clone(),
            accept: headers.get("accept").cloned(),
            accept_encoding: headers.get("accept-encoding").cloned(),
            user_agent: headers.get("user-agent").cloned(),
        });
        match state.costs.limiter {
            Some(limiter) => state
                .limiter
                .admit(&limiter, &state.costs, std::time::Instant::now()),
            None => Admission::Now,
        }
    };
    let _open = Open(Arc::clone(&state));
    match admission {
        Admission::Now => {}
        Admission::After(delay) => tokio::time::sleep(delay).await,
        Admission::Refused => {
            let response = nginx_page(429, "Too Many Requests");
            return finish(&mut stream, response, &state, kind).await;
        }
    }
    let (response, latency, work, costs) = {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        let (path, _) = target.split_once('?').unwrap_or((&target, ""));
        let fault = state
            .faults
            .iter()
            .position(|(prefix, _)| path.starts_with(prefix.as_str()))
            .and_then(|i| state.faults.remove(i))
            .map(|(_, f)| f);
        let gzip = headers
            .get("accept-encoding")
            .is_some_and(|e| e.contains("gzip"));
        let html = !headers.get("accept").is_some_and(|a| a.contains("json"));
        let mut response = match state.files.get(&target) {
            Some(body) => Response {
                status: 200,
                body: Arc::clone(body),
                gzip: false,
                location: None,
                fault: None,
                throttle: None,
                content_type: "application/json",
            },
            None => route_any(&mut state, &target, gzip, html),
        };
        response.throttle = state.throttle;
        response.fault = fault;
        // Hydra's work before the first byte of `/eval/{id}/builds`.
        let work = match (kind, response.status) {
            ("eval_builds", 200) => {
                let builds = path
                    .trim_matches('/')
                    .split('/')
                    .nth(1)
                    .and_then(|id| id.parse::<i64>().ok())
                    .and_then(|id| state.hydra.eval(id))
                    .map_or(0, |e| e.builds.len());
                state.costs.eval_builds_work_per_build * builds as u32
            }
            _ => Duration::ZERO,
        };
        (response, state.latency, work, state.costs.clone())
    };
    if let Some(latency) = latency {
        tokio::time::sleep(latency).await;
    }
    match costs.gateway_timeout {
        Some(limit) if work > limit => {
            tokio::time::sleep(costs.real(limit)).await;
            let response = nginx_page(504, "Gateway Time-out");
            return finish(&mut stream, response, &state, kind).await;
        }
        _ => tokio::time::sleep(costs.real(work)).await,
    }
    finish(&mut stream, response, &state, kind).await
}

/// nginx's own error page (HTML, no Retry-After).
fn nginx_page(status: u16, reason: &str) -> Response {
    let body = format!(
        "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    );
    Response {
        status,
        body: Arc::new(body.into_bytes()),
        gzip: false,
        location: None,
        fault: None,
        throttle: None,
        content_type: "text/html",
    }
}

/// Write the answer and count it.
async fn finish(
    stream: &mut TcpStream,
    response: Response,
    state: &Arc<Mutex<State>>,
    kind: &'static str,
) -> std::io::Result<()> {
    let result = write_response(stream, response).await;
    if let Ok((status, bytes)) = &result {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        let counters = state.counters.endpoints.entry(kind).or_default();
        counters.bytes += bytes;
        *counters.statuses.entry(*status).or_default() += 1;
    }
    result.map(drop)
}

/// Write a response; returns its status and the body bytes sent.
async fn write_response(
    stream: &mut TcpStream,
    mut response: Response,
) -> std::io::Result<(u16, usize)> {
    let mut cut = None;
    match response.fault.take() {
        Some(Fault::Status(code)) => {
            response.status = code;
            response.gzip = false;
            response.body = Arc::new(
                json!({"error": "injected failure"})
                    .to_string()
                    .into_bytes(),
            );
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::Truncate {
            per_mille,
            honest_length,
        }) => {
            let keep = response.body.len() * per_mille.min(1000) as usize / 1000;
            cut = Some((keep, honest_length));
        }
        None => {}
    }
    let (send, promised) = match cut {
        Some((keep, true)) => (keep, keep),
        Some((keep, false)) => (keep, response.body.len()),
        None => (response.body.len(), response.body.len()),
    };
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nVary: Accept\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        super::http::reason(response.status),
        response.content_type,
        promised
    );
    if response.gzip {
        head.push_str("Content-Encoding: gzip\r\n");
    }
    if let Some(location) = &response.location {
        head.push_str(&format!("Location: {location}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    let body = &response.body[..send];
    match response.throttle {
        Some(rate) if body.len() > 4096 => {
            let chunk = (rate / 20).max(256);
            for part in body.chunks(chunk) {
                stream.write_all(part).await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        _ => stream.write_all(body).await?,
    }
    stream.flush().await?;
    stream.shutdown().await?;
    Ok((response.status, send))
}

/// Serve `target` from the jobset it is about: the one it names
/// (`/jobset/P/J/...`), or whose eval or build it asks for; the first
/// jobset otherwise. An added jobset is swapped in for the time of the
/// request, so every route reads one jobset as `state.hydra`.
fn route_any(state: &mut State, target: &str, gzip: bool, html: bool) -> Response {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let id = |s: &str| s.parse::<i64>().ok();
    let owner = state
        .others
        .iter()
        .position(|(h, _)| match segments.as_slice() {
            ["jobset", project, jobset, ..] => *project == h.project && *jobset == h.jobset,
            ["eval", e, ..] => id(e).is_some_and(|e| h.eval(e).is_some()),
            ["build", b, ..] => id(b).is_some_and(|b| h.builds.contains_key(&b)),
            _ => false,
        });
    let Some(i) = owner else {
        return route(state, target, gzip, html);
    };
    let swap = |state: &mut State| {
        let (other, visible) = &mut state.others[i];
        std::mem::swap(&mut state.hydra, other);
        std::mem::swap(&mut state.visible, visible);
    };
    swap(state);
    let response = route(state, target, gzip, html);
    swap(state);
    response
}

fn route(state: &mut State, target: &str, gzip: bool, html: bool) -> Response {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let json_response = |status: u16, value: Value| Response {
        status,
        body: Arc::new(value.to_string().into_bytes()),
        gzip: false,
        location: None,
        fault: None,
        throttle: None,
        content_type: "application/json",
    };
    let not_found = |what: &str| json_response(404, json!({"error": format!("{what} not found")}));
    let visible: Vec<i64> = state.hydra.evals[..state.visible]
        .iter()
        .map(|e| e.id)
        .collect();
    if let (["jobset", project, jobset, rest @ ..], Some(old)) =
        (segments.as_slice(), state.renamed_from.as_deref())
        && *project == state.hydra.project
        && *jobset == old
    {
        let mut location = format!("/jobset/{project}/{}", state.hydra.jobset);
        for part in rest {
            location.push('/');
            location.push_str(part);
        }
        if !query.is_empty() {
            location.push('?');
            location.push_str(query);
        }
        return Response {
            location: Some(location),
            ..json_response(301, json!({}))
        };
    }
    match segments.as_slice() {
        ["jobset", project, jobset, "evals"]
            if *project == state.hydra.project && *jobset == state.hydra.jobset =>
        {
            let page: usize = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("page="))
                .and_then(|p| p.parse().ok())
                .unwrap_or(1)
                .max(1);
            let newest_first: Vec<i64> = visible.iter().rev().copied().collect();
            let last = newest_first.len().div_ceil(state.page_size);
            let evals: Vec<Value> = newest_first
                .iter()
                .skip((page - 1) * state.page_size)
                .take(state.page_size)
                .map(|id| eval_json(state, *id))
                .collect();
            let mut body =
                json!({"evals": evals, "first": "?page=1", "last": format!("?page={last}")});
            if page < last {
                body["next"] = json!(format!("?page={}", page + 1));
            }
            if page > 1 {
                body["previous"] = json!(format!("?page={}", page - 1));
            }
            json_response(200, body)
        }
        ["jobset", project, jobset, "latest-eval"]
            if *project == state.hydra.project && *jobset == state.hydra.jobset =>
        {
            match visible.last() {
                Some(id) => Response {
                    location: Some(format!("/eval/{id}")),
                    ..json_response(302, json!({}))
                },
                None => not_found("eval"),
            }
        }
        ["eval", id] => match id.parse::<i64>().ok().filter(|id| visible.contains(id)) {
            Some(id) => json_response(200, eval_json(state, id)),
            None => not_found("eval"),
        },
        ["eval", id, "builds"] => match id.parse::<i64>().ok().filter(|id| visible.contains(id)) {
            Some(id) => Response {
                status: 200,
                body: eval_builds_body(state, id, gzip),
                gzip,
                location: None,
                fault: None,
                throttle: None,
                content_type: "application/json",
            },
            None => not_found("eval"),
        },
        // `Controller/API.pm` `jobsets`: the project's jobsets; the
        // look-alike checks its jobset whenever an eval is published.
        ["api", "jobsets"] => {
            let project = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("project="))
                .unwrap_or_default();
            if project != state.hydra.project {
                return json_response(404, json!({"error": "Project not found."}));
            }
            let checked = visible
                .last()
                .and_then(|id| state.hydra.eval(*id))
                .map(|e| e.timestamp + 60);
            json_response(
                200,
                json!([{
                    "project": state.hydra.project,
                    "name": state.hydra.jobset,
                    "nrscheduled": 0, "nrsucceeded": 0, "nrfailed": 0, "nrtotal": 0,
                    "lastcheckedtime": checked,
                    "starttime": checked, "checkinterval": 3600, "triggertime": null,
                    "fetcherrormsg": null, "errortime": null, "haserrormsg": false
                }]),
            )
        }
        // Hydra's `Base/Controller/ListBuilds.pm` `latest`: a redirect to
        // the job's newest (by id) finished build with status 0, else 404.
        ["job", project, jobset, job, "latest"]
            if *project == state.hydra.project && *jobset == state.hydra.jobset =>
        {
            let latest = state
                .hydra
                .builds
                .values()
                .filter(|b| b.job == *job && b.finished && b.status == Some(0))
                .filter(|b| b.evals.iter().any(|e| visible.contains(e)))
                .map(|b| b.id)
                .max();
            match latest {
                Some(id) => Response {
                    location: Some(format!("/build/{id}")),
                    ..json_response(302, json!({}))
                },
                None => json_response(
                    404,
                    json!({"error": "There is no successful build to redirect to."}),
                ),
            }
        }
        // `Controller/JobsetEval.pm` `job`: a redirect to the eval's build
        // of that job, else 404.
        ["eval", id, "job", job] => {
            let build = id
                .parse::<i64>()
                .ok()
                .filter(|id| visible.contains(id))
                .and_then(|id| state.hydra.eval(id))
                .and_then(|eval| {
                    eval.builds
                        .iter()
                        .find(|b| state.hydra.builds.get(b).is_some_and(|b| b.job == *job))
                        .copied()
                });
            match build {
                Some(id) => Response {
                    location: Some(format!("/build/{id}")),
                    ..json_response(302, json!({}))
                },
                None => json_response(
                    404,
                    json!({"error": "This evaluation has no job with the specified name."}),
                ),
            }
        }
        ["build", id] => match id
            .parse::<i64>()
            .ok()
            .and_then(|id| state.hydra.builds.get(&id))
        {
            Some(build) if html => Response {
                body: Arc::new(build_page(&state.hydra, build).into_bytes()),
                content_type: "text/html; charset=utf-8",
                ..json_response(200, Value::Null)
            },
            Some(build) => json_response(200, build_json(&state.hydra, build, &visible)),
            None => not_found("build"),
        },
        _ => not_found("page"),
    }
}

fn eval_json(state: &State, id: i64) -> Value {
    let Some(eval) = state.hydra.eval(id) else {
        return Value::Null;
    };
    json!({
        "id": eval.id,
        "timestamp": eval.timestamp,
        "checkouttime": 12,
        "evaltime": 2100,
        "hasnewbuilds": 1,
        "flake": null,
        "builds": eval.builds,
        "jobsetevalinputs": {
            "nixpkgs": {
                "uri": "https://github.com/NixOS/nixpkgs.git",
                "type": "git",
                "revision": eval.revision,
                "value": null,
                "dependency": null
            }
        }
    })
}

/// A build in the exact shape of Hydra's `Builds.pm` `as_json`.
fn build_json(hydra: &SimHydra, build: &SimBuild, visible: &[i64]) -> Value {
    let out = format!("/nix/store/{}-{}", build.out_hash, build.nixname);
    let products = if build.status == Some(0) {
        json!({"1": {"type": "nix-build", "subtype": "", "name": build.nixname, "path": out,
                      "defaultpath": "", "filesize": null, "sha256hash": null}})
    } else {
        json!({})
    };
    let evals: Vec<i64> = build
        .evals
        .iter()
        .copied()
        .filter(|e| visible.contains(e))
        .collect();
    let start = build.stoptime.map(|s| s - 300);
    json!({
        "id": build.id,
        "project": hydra.project,
        "jobset": hydra.jobset,
        "job": build.job,
        "system": build.system,
        "nixname": build.nixname,
        "drvpath": format!("/nix/store/{}-{}.drv", build.drv_hash, build.nixname),
        "finished": i64::from(build.finished),
        "buildstatus": build.status,
        "timestamp": build.timestamp,
        "starttime": start,
        "stoptime": build.stoptime,
        "priority": 100,
        "releasename": null,
        "jobsetevals": evals,
        "buildoutputs": {"out": {"path": out}},
        "buildproducts": products,
        "buildmetrics": {}
    })
}

/// The parts of Hydra's build page (`root/build.tt`, block
/// `renderBuildSteps`, "Failed build steps") that tell a build's own failure
/// from one propagated from a dependency: the failed step, and, when it
/// failed in another build, "(propagated from build N)" linking to it.
fn build_page(hydra: &SimHydra, build: &SimBuild) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut page = format!(
        "<!DOCTYPE html>\n<html><head><title>Build {} of job {}:{}:{}</title></head><body>\n",
        build.id,
        escape(&hydra.project),
        escape(&hydra.jobset),
        escape(&build.job)
    );
    if build.finished && build.status.is_some_and(|s| s != 0) {
        let root = build
            .propagated_from
            .and_then(|id| hydra.builds.get(&id))
            .unwrap_or(build);
        let out = format!("/nix/store/{}-{}", root.out_hash, root.nixname);
        let status = match root.status {
            Some(7) => "Timed out",
            Some(8) => "Cached failure",
            Some(3) => "Aborted",
            _ => "Failed",
        };
        page.push_str(
            "<h3>Failed build steps</h3>\n<table class=\"table table-striped table-condensed clickable-rows\">\n\
             <thead>\n<tr><th>Nr</th><th>Step</th><th>Duration</th><th>Machine</th><th>Status</th></tr>\n</thead>\n<tbody>\n",
        );
        page.push_str(&format!(
            "<tr>\n<td><a class=\"row-link\" href=\"/build/{id}/step/1\">1</a></td>\n<td>\nBuild of <tt>{out}</tt>\n</td>\n\
             <td>5m 0s</td>\n<td><em>localhost</em></td>\n<td class=\"step-status\">\n<span class=\"text-danger\">{status}</span>",
            id = build.id,
            out = escape(&out),
        ));
        if let Some(from) = build.propagated_from {
            page.push_str(&format!(
                " (propagated from <a href=\"/build/{from}\">build {from}</a>)"
            ));
        }
        page.push_str("\n</td>\n</tr>\n</tbody>\n</table>\n");
    }
    page.push_str("</body></html>\n");
    page
}

fn eval_builds_body(state: &mut State, id: i64, gzip: bool) -> Arc<Vec<u8>> {
    if let Some(body) = state.bodies.get(&(id, gzip)) {
        return Arc::clone(body);
    }
    let visible: Vec<i64> = state.hydra.evals[..state.visible]
        .iter()
        .map(|e| e.id)
        .collect();
    let mut plain = Vec::new();
    plain.push(b'[');
    if let Some(eval) = state.hydra.eval(id) {
        for (i, build_id) in eval.builds.iter().enumerate() {
            if i > 0 {
                plain.push(b',');
            }
            if let Some(build) = state.hydra.builds.get(build_id) {
                serde_json::to_writer(&mut plain, &build_json(&state.hydra, build, &visible))
                    .expect("writing to a Vec");
            }
        }
    }
    plain.push(b']');
    let body = if gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&plain).expect("writing to a Vec");
        encoder.finish().expect("writing to a Vec")
    } else {
        plain
    };
    let body = Arc::new(body);
    state.bodies.insert((id, gzip), Arc::clone(&body));
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_holds_requests_within_the_burst_and_refuses_beyond_it() {
        let costs = Costs::hydra_nixos_org(1.0);
        let limiter = costs.limiter.unwrap();
        let mut state = LimiterState::default();
        let t = std::time::Instant::now();
        let answers: Vec<Option<u64>> = (0..9)
            .map(|_| match state.admit(&limiter, &costs, t) {
                Admission::Now => Some(0),
                Admission::After(d) => Some(d.as_millis() as u64),
                Admission::Refused => None,
            })
            .collect();
        assert_eq!(
            answers,
            vec![
                Some(0),
                Some(500),
                Some(1000),
                Some(1500),
                Some(2000),
                Some(2500),
                Some(3000),
                Some(3500),
                None
            ]
        );
        // Half a second drains one request: one more is held, not refused.
        let later = t + Duration::from_millis(500);
        assert!(matches!(
            state.admit(&limiter, &costs, later),
            Admission::After(d) if d == Duration::from_millis(3500)
        ));
        assert!(matches!(
            state.admit(&limiter, &costs, later),
            Admission::Refused
        ));
    }

    #[test]
    fn a_client_at_the_rate_is_never_held() {
        let costs = Costs::hydra_nixos_org(0.001);
        let limiter = costs.limiter.unwrap();
        let mut state = LimiterState::default();
        let t = std::time::Instant::now();
        for i in 0..100 {
            // 2 requests per simulated second: one every 0.5 ms of real time.
            let at = t + Duration::from_micros(500 * i);
            assert!(matches!(state.admit(&limiter, &costs, at), Admission::Now));
        }
    }

    #[test]
    fn endpoints_are_named_like_the_clients_metrics() {
        assert_eq!(endpoint("/jobset/nixpkgs/trunk/evals?page=2"), "evals");
        assert_eq!(endpoint("/eval/12/builds"), "eval_builds");
        assert_eq!(endpoint("/eval/12"), "eval");
        assert_eq!(endpoint("/build/7"), "build");
        assert_eq!(endpoint("/"), "other");
    }
}
