//! A minimal HTTP/1.1 server on loopback that answers like Hydra.

use std::collections::{HashMap, VecDeque};
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
            page_size: 20,
            faults: VecDeque::new(),
            requests: Vec::new(),
            throttle: None,
            bodies: HashMap::new(),
            files: HashMap::new(),
            latency: None,
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
}

async fn serve(stream: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let (request, mut stream) = super::http::read_request(stream).await?;
    let headers = request.headers;
    let target = request.target;
    let response = {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        let (path, _) = target.split_once('?').unwrap_or((&target, ""));
        state.requests.push(RequestRecord {
            path: target.clone(),
            accept: headers.get("accept").cloned(),
            accept_encoding: headers.get("accept-encoding").cloned(),
            user_agent: headers.get("user-agent").cloned(),
        });
        let fault = state
            .faults
            .iter()
            .position(|(prefix, _)| path.starts_with(prefix.as_str()))
            .and_then(|i| state.faults.remove(i))
            .map(|(_, f)| f);
        let gzip = headers
            .get("accept-encoding")
            .is_some_and(|e| e.contains("gzip"));
        let mut response = match state.files.get(&target) {
            Some(body) => Response {
                status: 200,
                body: Arc::clone(body),
                gzip: false,
                location: None,
                fault: None,
                throttle: None,
            },
            None => route(&mut state, &target, gzip),
        };
        response.throttle = state.throttle;
        response.fault = fault;
        (response, state.latency)
    };
    let (response, latency) = response;
    if let Some(latency) = latency {
        tokio::time::sleep(latency).await;
    }
    write_response(&mut stream, response).await
}

async fn write_response(stream: &mut TcpStream, mut response: Response) -> std::io::Result<()> {
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
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nVary: Accept\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        super::http::reason(response.status),
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
    stream.shutdown().await
}

fn route(state: &mut State, target: &str, gzip: bool) -> Response {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let json_response = |status: u16, value: Value| Response {
        status,
        body: Arc::new(value.to_string().into_bytes()),
        gzip: false,
        location: None,
        fault: None,
        throttle: None,
    };
    let not_found = |what: &str| json_response(404, json!({"error": format!("{what} not found")}));
    let visible: Vec<i64> = state.hydra.evals[..state.visible]
        .iter()
        .map(|e| e.id)
        .collect();
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
            },
            None => not_found("eval"),
        },
        ["build", id] => match id
            .parse::<i64>()
            .ok()
            .and_then(|id| state.hydra.builds.get(&id))
        {
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
