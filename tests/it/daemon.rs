//! `hydra-sentinel run`, the real binary as systemd runs it: readiness and
//! status over a real notify socket, the watchdog fed by progress, SIGTERM
//! and SIGHUP, `/metrics` and `/healthz` over HTTP, kills at random moments,
//! a read-only database, Hydra faults, and the unit files themselves.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hydra_sentinel::sim::{FakeHydra, Fault, Rng, SimSpec};

use crate::helpers::{
    SKIP_ROOT_TESTS, SKIP_SYSTEMD_TESTS, Sandbox, assert_evals_complete, fingerprint, small_spec,
    start, unmet_precondition,
};

/// `[daemon]` and `[metrics]` for tests: a short interval and an ephemeral port.
const FAST: &str = "\n[daemon]\ninterval_secs = 1\nunhealthy_after_cycles = 3\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[ingest]\nmax_evals_per_pass = 100\n";

/// Poll `probe` until it yields, or fail with `context()` (logs and such).
fn wait_until<T>(
    timeout: Duration,
    what: &str,
    context: impl Fn() -> String,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `hydra-sentinel run`. Dropping it sends SIGTERM, then SIGKILL.
struct Service {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Service {
    /// The service on `config` with an `[daemon]` interval of
    /// `interval_secs` and `/metrics` on an ephemeral port.
    fn serving(config: &Path, interval_secs: u64) -> Service {
        let text = std::fs::read_to_string(config).unwrap();
        std::fs::write(
            config,
            format!(
                "{text}\n[daemon]\ninterval_secs = {interval_secs}\nunhealthy_after_cycles = 3\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n"
            ),
        )
        .unwrap();
        Service::spawn(Service::command(config))
    }

    fn command(config: &Path) -> Command {
        Service::command_of(Path::new(env!("CARGO_BIN_EXE_hydra-sentinel")), config)
    }

    fn command_of(binary: &Path, config: &Path) -> Command {
        let mut command = Command::new(binary);
        command
            .args(["--config", config.to_str().unwrap(), "run"])
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .env("HYDRA_SENTINEL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    fn start(sandbox: &Sandbox) -> Service {
        Service::spawn(Service::command(&sandbox.config_path))
    }

    fn spawn(mut command: Command) -> Service {
        let mut child = command.spawn().expect("starting hydra-sentinel run");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Service {
            child: Some(child),
            log,
            reader: Some(reader),
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -s {name} failed");
    }

    fn context(&self) -> String {
        format!("stderr of hydra-sentinel run:\n{}", self.log())
    }

    fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        wait_until(
            timeout,
            &format!("{needle:?} in the log"),
            || self.context(),
            || {
                self.log()
                    .lines()
                    .find(|l| l.contains(needle))
                    .map(str::to_owned)
            },
        )
    }

    /// The address the endpoint was bound to (the config asks for port 0).
    fn addr(&self) -> SocketAddr {
        let line = self.wait_for_log("serving /metrics and /healthz", Duration::from_secs(20));
        let bound = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("bound="))
            .unwrap_or_else(|| panic!("no bound= in {line:?}"));
        bound.parse().unwrap()
    }

    /// Wait for the process to end on its own.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "hydra-sentinel run did not exit within {timeout:?}\n{}",
                    self.context()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then require a clean exit.
    fn stop(&mut self) {
        self.signal("TERM");
        let status = self.wait_exit(Duration::from_secs(10));
        assert!(
            status.success(),
            "SIGTERM should end in exit 0, got {status}\n{}",
            self.context()
        );
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("hydra-sentinel run exited ({status})\n{}", self.context());
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-s", "TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// One plain HTTP/1.1 GET: the status and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of one series (`name{labels}` exactly as rendered) in `/metrics` text.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn metric_of(addr: SocketAddr, series: &str) -> Option<f64> {
    metric(&get(addr, "/metrics").1, series)
}

const OK_CYCLES: &str = "hydra_sentinel_cycles_total{outcome=\"ok\"}";

/// A notify socket like systemd's: collects every datagram with its time.
struct NotifySocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    messages: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, halt) = (Arc::clone(&messages), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !halt.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    sink.lock().unwrap().push((Instant::now(), text));
                }
            }
        });
        NotifySocket {
            _dir: dir,
            path,
            messages,
            stop,
        }
    }

    /// Every line received, in order.
    fn lines(&self) -> Vec<(Instant, String)> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(t, m)| m.lines().map(|l| (*t, l.to_owned())).collect::<Vec<_>>())
            .collect()
    }

    fn position(&self, pred: impl Fn(&str) -> bool) -> Option<usize> {
        self.lines().iter().position(|(_, l)| pred(l))
    }

    fn dump(&self) -> String {
        self.lines()
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn run_is_ready_after_migrations_ingests_reports_and_stops_on_sigterm() {
    let spec = small_spec(60, 6);
    let hydra = start(&spec);
    let sandbox = Sandbox::new(&hydra, FAST);
    let notify = NotifySocket::new();
    let mut command = Service::command(&sandbox.config_path);
    command.env("NOTIFY_SOCKET", &notify.path);
    let mut service = Service::spawn(command);
    let addr = service.addr();
    let both = || format!("{}\nnotify messages:\n{}", service.context(), notify.dump());

    wait_until(Duration::from_secs(20), "READY=1", both, || {
        notify.position(|l| l == "READY=1")
    });
    wait_until(Duration::from_secs(20), "a successful cycle", both, || {
        metric_of(addr, OK_CYCLES).filter(|n| *n >= 1.0)
    });
    let migrating = notify.position(|l| l.contains("migrating the database"));
    let ready = notify.position(|l| l == "READY=1");
    assert!(
        migrating.is_some() && migrating < ready,
        "READY=1 must follow the migration\n{}",
        both()
    );
    assert!(
        notify.position(|l| l == "STATUS=cycle 1: ingest").is_some(),
        "{}",
        both()
    );
    wait_until(Duration::from_secs(10), "an idle STATUS", both, || {
        notify.position(|l| l.starts_with("STATUS=idle: last cycle ok: ingest: 6 new evals"))
    });

    let text = get(addr, "/metrics").1;
    let jobset = "jobset=\"nixpkgs:trunk\"";
    assert_eq!(
        metric(
            &text,
            &format!("hydra_sentinel_evals_ingested_total{{{jobset}}}")
        ),
        Some(6.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, &format!("hydra_sentinel_evals_stored{{{jobset}}}")),
        Some(6.0),
        "{text}"
    );
    let newest = hydra.hydra().evals[5].builds.len() as f64;
    let per_class: f64 = ["ok", "failing", "dependency_failed", "noise", "pending"]
        .iter()
        .map(|class| {
            metric(
                &text,
                &format!("hydra_sentinel_jobs{{{jobset},class=\"{class}\"}}"),
            )
            .unwrap_or_else(|| panic!("no jobs gauge for {class}\n{text}"))
        })
        .sum();
    assert_eq!(per_class, newest, "{text}");
    assert!(
        metric(
            &text,
            "hydra_sentinel_hydra_requests_total{endpoint=\"evals\"}"
        )
        .unwrap()
            >= 1.0
    );
    let last = metric(&text, "hydra_sentinel_last_success_timestamp_seconds").unwrap();
    assert!(last > 1.7e9, "{text}");
    let (status, body) = get(addr, "/healthz");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["healthy"], true);
    assert_eq!(get(addr, "/nope").0, 404);

    service.stop();
    assert!(
        notify.position(|l| l == "STOPPING=1").is_some(),
        "{}",
        notify.dump()
    );
    assert_eq!(sandbox.count("SELECT count(*) FROM evals"), 6);
    assert_evals_complete(&sandbox.sql());
}

#[test]
fn each_successful_cycle_writes_the_configured_html_report() {
    let hydra = start(&small_spec(30, 4));
    let parent = tempfile::tempdir().unwrap();
    let site = parent.path().join("site");
    let sandbox = Sandbox::new(
        &hydra,
        &format!(
            "{FAST}\n[report]\nhtml_dir = {:?}\n",
            site.display().to_string()
        ),
    );
    let mut service = Service::start(&sandbox);
    let addr = service.addr();
    let written = "hydra_sentinel_reports_total{outcome=\"ok\"}";
    // A cycle is counted once its last step, the report, is written: wait
    // for the count, so that the reports of both cycles are done too.
    wait_until(
        Duration::from_secs(30),
        "two successful cycles",
        || service.context(),
        || metric_of(addr, OK_CYCLES).filter(|n| *n >= 2.0),
    );
    assert!(
        metric_of(addr, written).is_some_and(|n| n >= 2.0),
        "each successful cycle writes a report: {}",
        service.context()
    );
    assert_eq!(
        metric_of(addr, "hydra_sentinel_reports_total{outcome=\"failed\"}"),
        None
    );
    let index = std::fs::read_to_string(site.join("index.html")).unwrap();
    assert!(index.contains("Failing packages"), "{index}");
    assert!(site.join(hydra_sentinel::site::MARKER).is_file());
    service.wait_for_log("HTML report written", Duration::from_secs(5));
    service.stop();
    let beside: Vec<_> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, vec!["site"], "no staging folder left behind");
}

#[test]
fn sigterm_during_a_slow_download_rolls_the_eval_back_and_exits_at_once() {
    let spec = small_spec(400, 3);
    let hydra = start(&spec);
    // The first eval's builds (~800) trickle in at ~5 KB/s: many seconds.
    hydra.throttle(Some(5_000));
    let sandbox = Sandbox::new(&hydra, FAST);
    let mut service = Service::start(&sandbox);
    wait_until(
        Duration::from_secs(20),
        "the builds download to start",
        || service.context(),
        || {
            hydra
                .requests()
                .iter()
                .any(|r| r.path.ends_with("/builds"))
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_millis(700));
    service.assert_running();
    service.signal("TERM");
    let status = service.wait_exit(Duration::from_secs(15));
    let log = service.log();
    assert!(status.success(), "exit {status}\n{log}");
    // The clean path: the download was cut and the cycle wound down by
    // itself, not dropped at the end of the grace period.
    assert!(log.contains("download cut on request"), "{log}");
    assert!(log.contains("cycle stopped cleanly"), "{log}");
    assert_eq!(
        sandbox.count("SELECT count(*) FROM evals"),
        0,
        "the eval in flight must roll back\n{log}"
    );
    assert_evals_complete(&sandbox.sql());

    hydra.throttle(None);
    let mut service = Service::start(&sandbox);
    let addr = service.addr();
    wait_until(
        Duration::from_secs(30),
        "a successful cycle",
        || service.context(),
        || metric_of(addr, OK_CYCLES),
    );
    service.stop();
    assert_eq!(sandbox.count("SELECT count(*) FROM evals"), 3);
    assert_evals_complete(&sandbox.sql());
}

#[test]
fn sighup_applies_a_valid_file_and_refuses_an_invalid_one_keeping_the_old() {
    let hydra = start(&small_spec(20, 2));
    let slow = FAST.replace("interval_secs = 1", "interval_secs = 3600");
    let sandbox = Sandbox::new(&hydra, &slow);
    let original = std::fs::read_to_string(&sandbox.config_path).unwrap();
    let mut service = Service::start(&sandbox);
    let addr = service.addr();
    wait_until(
        Duration::from_secs(20),
        "the first cycle",
        || service.context(),
        || metric_of(addr, OK_CYCLES),
    );

    let broken = original.replace("interval_secs = 3600", "interval_secs = 0");
    std::fs::write(&sandbox.config_path, &broken).unwrap();
    service.signal("HUP");
    let line = service.wait_for_log("new configuration refused", Duration::from_secs(10));
    let line_no = broken
        .lines()
        .position(|l| l == "interval_secs = 0")
        .unwrap()
        + 1;
    assert!(
        line.contains(&format!(
            "hydra-sentinel.toml:{line_no}:17: daemon.interval_secs must be at least 1"
        )),
        "{line}"
    );
    service.assert_running();
    // The refusal is logged first, then recorded for /healthz.
    let body = wait_until(
        Duration::from_secs(5),
        "the refusal in /healthz",
        || service.context(),
        || {
            let (status, body) = get(addr, "/healthz");
            assert_eq!(
                status, 200,
                "a refused reload is not a failed cycle: {body}"
            );
            body.contains("interval_secs must be at least 1")
                .then_some(body)
        },
    );
    assert!(body.contains("\"healthy\": true"), "{body}");
    assert_eq!(
        metric_of(addr, "hydra_sentinel_reloads_total{outcome=\"refused\"}"),
        Some(1.0)
    );

    // With the hour-long interval still in force no second cycle comes; the
    // valid file shortens it and cycles follow at once.
    std::fs::write(
        &sandbox.config_path,
        original.replace("interval_secs = 3600", "interval_secs = 1"),
    )
    .unwrap();
    service.signal("HUP");
    service.wait_for_log("configuration reloaded", Duration::from_secs(10));
    wait_until(
        Duration::from_secs(15),
        "cycles on the new interval",
        || service.context(),
        || metric_of(addr, OK_CYCLES).filter(|n| *n >= 3.0),
    );
    assert_eq!(
        metric_of(addr, "hydra_sentinel_reloads_total{outcome=\"ok\"}"),
        Some(1.0)
    );
    service.stop();
}

#[test]
fn the_watchdog_is_fed_by_progress_and_starves_while_hydra_hangs() {
    let hydra = start(&small_spec(20, 2));
    let sandbox = Sandbox::new(&hydra, FAST);
    let notify = NotifySocket::new();
    let mut command = Service::command(&sandbox.config_path);
    command
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "1000000");
    let service = Service::spawn(command);
    let both = || format!("{}\nnotify messages:\n{}", service.context(), notify.dump());
    wait_until(Duration::from_secs(20), "watchdog pings", both, || {
        (notify
            .lines()
            .iter()
            .filter(|(_, l)| l == "WATCHDOG=1")
            .count()
            >= 3)
            .then_some(())
    });

    // The next pass's first request (has Hydra checked the jobset again?)
    // hangs for 6 s: no progress, so no pings.
    hydra.inject("/api/jobsets", Fault::Delay(Duration::from_secs(6)));
    let stalled = wait_until(Duration::from_secs(15), "a STALLED status", both, || {
        notify.position(|l| l.starts_with("STATUS=STALLED: no progress"))
    });
    // When Hydra answers, progress resumes and so do the pings.
    let resumed = wait_until(
        Duration::from_secs(20),
        "pings after the stall",
        both,
        || {
            let lines = notify.lines();
            lines[stalled..]
                .iter()
                .find(|(_, l)| l == "WATCHDOG=1")
                .map(|(t, _)| *t)
        },
    );
    let lines = notify.lines();
    let last_before = lines[..stalled]
        .iter()
        .rev()
        .find(|(_, l)| l == "WATCHDOG=1")
        .map(|(t, _)| *t)
        .expect("pings before the stall");
    // A free-running pinger would have pinged every 0.5 s throughout.
    assert!(
        resumed - last_before >= Duration::from_secs(3),
        "pings went on while nothing progressed (gap {:?})\n{}",
        resumed - last_before,
        both()
    );
    assert!(
        service.log().contains("watchdog pings resumed"),
        "{}",
        both()
    );
}

#[test]
fn run_killed_at_random_moments_restarts_whole_and_ends_like_an_uninterrupted_run() {
    let spec = SimSpec {
        rebuild_rate: 0.2,
        flip_rate: 0.05,
        ..small_spec(100, 60)
    };
    let hydra = start(&spec);
    let reference = Sandbox::new(&hydra, "");
    reference.pass(Some(100));
    let expected = fingerprint(&reference);

    // ~25 KB of gzip per eval at 150 KB/s plus a little latency per request:
    // ingest of all 60 evals takes many seconds. Odd rounds kill at a random
    // moment after the start (start-up, migrations, discovery, downloads);
    // even rounds at a random moment after a builds download began (parsing,
    // writing, committing, the next eval).
    hydra.throttle(Some(150_000));
    hydra.set_latency(Some(Duration::from_millis(3)));
    let sandbox = Sandbox::new(&hydra, FAST);
    let mut rng = Rng::new(0x72756e);
    let mut stored = 0;
    let mut during_ingest = 0;
    let mut round = 0;
    while during_ingest < 20 {
        round += 1;
        assert!(
            round <= 60 && stored < expected[0],
            "ingest finished after {during_ingest} kills during it: slow the fake Hydra down"
        );
        let downloads = || {
            hydra
                .requests()
                .iter()
                .filter(|r| r.path.ends_with("/builds"))
                .count()
        };
        let before = downloads();
        let mut service = Service::start(&sandbox);
        let delay = if round % 2 == 1 {
            Duration::from_millis(150 + rng.below(1050))
        } else {
            wait_until(
                Duration::from_secs(20),
                "a builds download",
                || service.context(),
                || (downloads() > before).then_some(()),
            );
            Duration::from_millis(rng.below(700))
        };
        std::thread::sleep(delay);
        service.kill9();
        if !sandbox.db().exists() {
            continue;
        }
        assert_evals_complete(&sandbox.sql());
        let now = sandbox.count("SELECT count(*) FROM evals");
        assert!(
            now >= stored,
            "round {round}: evals went from {stored} to {now}"
        );
        if now < expected[0] {
            during_ingest += 1;
        }
        eprintln!(
            "round {round}: SIGKILL {delay:?} after the start or a download; {now} evals stored"
        );
        stored = now;
    }

    hydra.throttle(None);
    let mut service = Service::start(&sandbox);
    let addr = service.addr();
    wait_until(
        Duration::from_secs(60),
        "a successful cycle after the kills",
        || service.context(),
        || metric_of(addr, OK_CYCLES),
    );
    service.stop();
    assert_evals_complete(&sandbox.sql());
    assert_eq!(
        fingerprint(&sandbox),
        expected,
        "killed-and-restarted run differs from an uninterrupted ingest"
    );
}

fn euid_is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_read_only_database_is_a_clear_error_and_stays_intact() {
    let hydra = start(&small_spec(30, 3));
    let root = euid_is_root();
    // As root the binary runs as nobody (root writes anything), so nobody must
    // reach the binary, the config and the database whoever cloned where.
    let sandbox = if root {
        Sandbox::reachable_by_everyone(&hydra, FAST)
    } else {
        Sandbox::new(&hydra, FAST)
    };
    let binary = if root {
        sandbox.private_binary()
    } else {
        PathBuf::from(env!("CARGO_BIN_EXE_hydra-sentinel"))
    };
    sandbox.pass(None);
    // Settle the WAL into the main file so that the bytes can be compared.
    sandbox
        .sql()
        .pragma_update(None, "wal_checkpoint", "TRUNCATE")
        .unwrap();
    let before = fingerprint(&sandbox);
    let bytes = std::fs::read(sandbox.db()).unwrap();
    let dir = sandbox.db().parent().unwrap().to_owned();

    // (the directory is writable, the file is not), then (neither is).
    for (dir_mode, case) in [(0o777, "read-only file"), (0o555, "read-only directory")] {
        chmod(&dir, dir_mode);
        chmod(sandbox.db(), 0o444);
        chmod(&sandbox.config_path, 0o644);
        let mut command = Service::command_of(&binary, &sandbox.config_path);
        if root {
            // Root writes anything: run as nobody so the permissions bite.
            use std::os::unix::process::CommandExt;
            command.uid(65534).gid(65534);
        }
        let mut service = Service::spawn(command);
        let status = service.wait_exit(Duration::from_secs(20));
        let log = service.log();
        assert_eq!(status.code(), Some(2), "{case}: {log}");
        assert!(
            log.contains(&sandbox.db().display().to_string()),
            "{case}: the message must name the database\n{log}"
        );
        assert!(
            log.contains("is not writable") && log.contains("Permission denied"),
            "{case}: the message must say why\n{log}"
        );
        chmod(&dir, 0o755);
    }
    chmod(sandbox.db(), 0o644);
    assert_eq!(
        std::fs::read(sandbox.db()).unwrap(),
        bytes,
        "the file changed"
    );
    assert_eq!(fingerprint(&sandbox), before);
    assert_evals_complete(&sandbox.sql());
}

#[test]
fn hydra_faults_are_ridden_out_while_healthz_stays_healthy() {
    let hydra = start(&small_spec(80, 8));
    hydra.publish(2);
    // Healthy means a success within 5 intervals; one cycle through all the
    // injected faults and retries takes far less.
    let sandbox = Sandbox::new(
        &hydra,
        &FAST.replace("unhealthy_after_cycles = 3", "unhealthy_after_cycles = 5"),
    );
    let inject_round = |hydra: &FakeHydra| {
        hydra.inject("/jobset/", Fault::Status(502));
        hydra.inject("/eval/", Fault::Status(503));
        hydra.inject(
            "/eval/",
            Fault::Truncate {
                per_mille: 400,
                honest_length: false,
            },
        );
        hydra.inject(
            "/eval/",
            Fault::Truncate {
                per_mille: 700,
                honest_length: true,
            },
        );
        hydra.inject("/build/", Fault::Status(500));
        hydra.inject("/jobset/", Fault::Delay(Duration::from_millis(1200)));
    };
    inject_round(&hydra);
    let service = Service::start(&sandbox);
    let addr = service.addr();
    let mut published: i64 = 2;
    let mut checks = 0;
    wait_until(
        Duration::from_secs(60),
        "all evals through the faults",
        || service.context(),
        || {
            let (status, body) = get(addr, "/healthz");
            assert_eq!(
                status,
                200,
                "unhealthy while riding out faults: {body}\n{}",
                service.context()
            );
            checks += 1;
            let stored = sandbox.count("SELECT count(*) FROM evals");
            if stored == published && published < 8 {
                published += 3;
                published = published.min(8);
                inject_round(&hydra);
                hydra.publish(published as usize);
            }
            (stored == 8).then_some(())
        },
    );
    assert!(checks > 10, "healthz was hardly looked at ({checks} times)");
    let text = get(addr, "/metrics").1;
    for kind in ["5xx", "body"] {
        let n = metric(
            &text,
            &format!("hydra_sentinel_hydra_errors_total{{kind=\"{kind}\"}}"),
        );
        assert!(
            n.unwrap_or(0.0) >= 2.0,
            "{kind} faults were not seen\n{text}"
        );
    }
    assert_eq!(
        metric(&text, "hydra_sentinel_cycles_total{outcome=\"failed\"}"),
        None,
        "{text}"
    );
    assert_evals_complete(&sandbox.sql());
}

#[test]
fn healthz_turns_unhealthy_when_cycles_keep_failing_and_recovers_after_a_fix() {
    let hydra = start(&small_spec(10, 2));
    let fast = FAST.replace("unhealthy_after_cycles = 3", "unhealthy_after_cycles = 2");
    let sandbox = Sandbox::new(&hydra, &fast);
    let good = std::fs::read_to_string(&sandbox.config_path).unwrap();
    // A jobset Hydra does not have: every cycle fails with a 404.
    std::fs::write(
        &sandbox.config_path,
        good.replace("jobset = \"trunk\"", "jobset = \"gone\""),
    )
    .unwrap();
    let mut service = Service::start(&sandbox);
    let addr = service.addr();
    let body = wait_until(
        Duration::from_secs(20),
        "/healthz to turn 503",
        || service.context(),
        || {
            let (status, body) = get(addr, "/healthz");
            (status == 503).then_some(body)
        },
    );
    assert!(body.contains("no successful cycle"), "{body}");
    assert!(
        body.contains("404"),
        "the last error should be shown: {body}"
    );
    assert_eq!(metric_of(addr, "hydra_sentinel_healthy"), Some(0.0));
    service.assert_running();

    std::fs::write(&sandbox.config_path, &good).unwrap();
    service.signal("HUP");
    wait_until(
        Duration::from_secs(20),
        "/healthz to recover",
        || service.context(),
        || (get(addr, "/healthz").0 == 200).then_some(()),
    );
    service.stop();
}

/// `/healthz` tells the two kinds of trouble apart: a cycle that failed on
/// something worth another try (`last_error`), and actions GitHub refused
/// for good and set aside, to be done by hand (`set_aside`), which stay
/// listed and never make the service unhealthy.
#[test]
fn healthz_lists_set_aside_refusals_apart_from_the_last_transient_error() {
    use hydra_sentinel::sim::GitHubFault;

    use crate::act::World;

    let world = World::with_a_pull_request_refused_as_invalid();
    // The service's first cycle meets a 502 on its first post (the week's
    // digest or a comment): a failure worth another try. One cycle an hour,
    // so /healthz is read before the next one.
    world.github.inject(
        "POST",
        "/repos/NixOS/nixpkgs/issues",
        GitHubFault::Status(502),
    );
    let mut service = Service::serving(&world.config, 3600);
    let addr = service.addr();
    let (status, body, health) = wait_until(
        Duration::from_secs(60),
        "a failed cycle in /healthz",
        || service.context(),
        || {
            let (status, body) = get(addr, "/healthz");
            let health: serde_json::Value = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("/healthz is not JSON ({e}): {body}"));
            health["last_error"]
                .is_string()
                .then_some((status, body, health))
        },
    );
    assert_eq!(
        status, 200,
        "one failed cycle is within the allowance: {body}"
    );
    let last_error = health["last_error"].as_str().unwrap_or_default();
    assert!(last_error.contains("502"), "the transient error: {body}");
    assert!(
        !last_error.contains("refused it as invalid"),
        "a set-aside refusal is not an error: {body}"
    );
    let set_aside = health["set_aside"]
        .as_array()
        .unwrap_or_else(|| panic!("no set_aside list: {body}"));
    let mut attrs: Vec<&str> = set_aside
        .iter()
        .map(|s| s["attr"].as_str().unwrap_or_default())
        .collect();
    attrs.sort();
    assert_eq!(
        attrs,
        ["frobnicate", "hello"],
        "the batch GitHub refused, by package: {body}"
    );
    assert!(
        health["set_aside_as_of"].as_i64().is_some(),
        "the list says which cycle's act step made it: {body}"
    );
    for entry in set_aside {
        assert_eq!(entry["kind"], "mark_broken", "{body}");
        let reason = entry["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("GitHub refused it as invalid") && reason.contains("422"),
            "{body}"
        );
    }
    service.stop();
}

/// `/healthz`'s set-aside list is what the cycle that just ended leaves: a
/// pull request GitHub refuses during the service's own first cycle is
/// listed at that cycle's end, although the cycle read the history before
/// acting, and read it only once.
#[test]
fn healthz_lists_what_this_very_cycle_set_aside_reading_the_history_once() {
    use crate::act::World;

    let world = World::refusing_pull_requests();
    let pulls_before = world
        .github
        .requests_to("POST", "/repos/NixOS/nixpkgs/pulls");
    assert!(
        pulls_before.is_empty(),
        "the notice's cycle opens no pull request: {pulls_before:?}"
    );
    let mut service = Service::serving(&world.config, 4);
    let addr = service.addr();
    let healthz = || {
        let (_, body) = get(addr, "/healthz");
        let health: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("/healthz is not JSON ({e}): {body}"));
        (body, health)
    };
    let set_aside = |health: &serde_json::Value| -> Vec<String> {
        let mut attrs: Vec<String> = health["set_aside"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| s["attr"].as_str().unwrap_or_default().to_owned())
            .collect();
        attrs.sort();
        attrs
    };

    let (body, health) = wait_until(
        Duration::from_secs(90),
        "the service's first cycle to end",
        || service.context(),
        || {
            let (body, health) = healthz();
            (health["cycles"] == 1).then_some((body, health))
        },
    );
    assert!(
        !world
            .github
            .requests_to("POST", "/repos/NixOS/nixpkgs/pulls")
            .is_empty(),
        "the service's first cycle should have tried to open the mark's pull request: {body}"
    );
    assert_eq!(
        set_aside(&health),
        ["frobnicate", "hello"],
        "what GitHub refused in this very cycle, listed at its end: {body}"
    );

    // Between cycles, the plan's reads of the history number the cycles.
    let (cycles, reads, metrics) = wait_until(
        Duration::from_secs(30),
        "a moment between two later cycles",
        || service.context(),
        || {
            let (_, before) = healthz();
            let metrics = get(addr, "/metrics").1;
            let (_, after) = healthz();
            let between = before["phase"] == "waiting"
                && after["phase"] == "waiting"
                && before["cycles"] == after["cycles"]
                && after["cycles"].as_u64() >= Some(2);
            let reads = metric(
                &metrics,
                "hydra_sentinel_plan_read_seconds_count{for=\"plan\"}",
            );
            between.then(|| (after["cycles"].as_u64().unwrap_or_default(), reads, metrics))
        },
    );
    assert_eq!(
        reads,
        Some(cycles as f64),
        "one read of the history per cycle:\n{metrics}"
    );
    service.stop();
}

/// A tmpfs far too small for the history: SQLite reports a full disk, the
/// cycle fails with that message, and the database stays consistent.
#[test]
fn a_full_disk_is_a_clear_error_not_corruption() {
    const TEST: &str = "a_full_disk_is_a_clear_error_not_corruption";
    if !euid_is_root() {
        return unmet_precondition(TEST, SKIP_ROOT_TESTS, "mounting a small tmpfs needs root");
    }
    let mount = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=400k", "tmpfs"])
        .arg(mount.path())
        .output();
    match mounted {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return unmet_precondition(
                TEST,
                SKIP_ROOT_TESTS,
                &format!(
                    "mount -t tmpfs failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            );
        }
        Err(e) => {
            return unmet_precondition(TEST, SKIP_ROOT_TESTS, &format!("cannot run mount: {e}"));
        }
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.path().to_owned());
    let hydra = start(&small_spec(1500, 3));
    let db = mount.path().join("state.sqlite");
    let sandbox = Sandbox::new(&hydra, FAST);
    let text = std::fs::read_to_string(&sandbox.config_path)
        .unwrap()
        .replace(
            &format!("{:?}", sandbox.db().display().to_string()),
            &format!("{:?}", db.display().to_string()),
        );
    std::fs::write(&sandbox.config_path, text).unwrap();
    let mut service = Service::start(&sandbox);
    let line = service.wait_for_log("cycle failed; trying again", Duration::from_secs(30));
    assert!(
        line.contains("database or disk is full"),
        "{line}\n{}",
        service.context()
    );
    service.stop();
    let conn = rusqlite::Connection::open(&db).unwrap();
    assert_evals_complete(&conn);
}

/// The unit files pass `systemd-analyze verify` and rate 2.0 or lower in
/// `systemd-analyze security --offline=true` (the README records the figure).
#[test]
fn the_systemd_units_verify_and_are_hardened() {
    let version = Command::new("systemd-analyze").arg("--version").output();
    if !version.is_ok_and(|o| o.status.success()) {
        return unmet_precondition(
            "the_systemd_units_verify_and_are_hardened",
            SKIP_SYSTEMD_TESTS,
            "systemd-analyze is not installed (Debian: apt-get install systemd)",
        );
    }
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "hydra-sentinel.service",
        "hydra-sentinel-once.service",
        "hydra-sentinel-once.timer",
    ];
    // verify checks that ExecStart exists: point it at the binary under test.
    for name in names {
        let text = std::fs::read_to_string(units.join(name)).unwrap();
        let text = text.replace(
            "/usr/bin/hydra-sentinel",
            env!("CARGO_BIN_EXE_hydra-sentinel"),
        );
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let paths: Vec<PathBuf> = names.iter().map(|n| dir.path().join(n)).collect();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "systemd-analyze verify:\n{stderr}");
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("hydra-sentinel"))
        .collect();
    assert!(complaints.is_empty(), "systemd-analyze verify:\n{stderr}");

    for service in &paths[..2] {
        let output = Command::new("systemd-analyze")
            .args(["security", "--offline=true"])
            .arg(service)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let level: f64 = stdout
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no exposure level in:\n{stdout}\n{}",
                    String::from_utf8_lossy(&output.stderr)
                )
            });
        assert!(
            level <= 2.0,
            "{} rates {level}:\n{stdout}",
            service.display()
        );
    }
}
