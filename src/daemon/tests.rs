//! The loop in process, with scripted steps, a recording notifier and
//! tokio's paused clock: schedules, reloads, shutdown and the watchdog rule
//! without waiting in real time.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::config::Config;

#[derive(Default)]
struct Recorder {
    messages: Mutex<Vec<String>>,
    watchdog: Option<Duration>,
}

impl Recorder {
    fn push(&self, m: String) {
        self.messages.lock().unwrap().push(m);
    }
    fn count(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| pred(m))
            .count()
    }
}

impl Notifier for Recorder {
    fn ready(&self) {
        self.push("READY".into());
    }
    fn status(&self, text: &str) {
        self.push(format!("STATUS={text}"));
    }
    fn reloading(&self) {
        self.push("RELOADING".into());
    }
    fn stopping(&self) {
        self.push("STOPPING".into());
    }
    fn watchdog_period(&self) -> Option<Duration> {
        self.watchdog
    }
    fn watchdog_ping(&self) {
        self.push("WATCHDOG".into());
    }
}

/// What a scripted step does on its n-th run (0-based).
#[derive(Clone, Copy)]
enum Act {
    Succeed,
    /// Never finishes, but stops when cancelled.
    HangPolitely,
    /// Never finishes and ignores cancellation.
    HangStubbornly,
}

struct Scripted {
    runs: Arc<AtomicUsize>,
    script: fn(usize) -> Act,
}

impl CycleStep for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn run<'a>(&'a mut self, cx: &'a CycleContext<'a>) -> StepFuture<'a> {
        let n = self.runs.fetch_add(1, Ordering::SeqCst);
        let act = (self.script)(n);
        Box::pin(async move {
            match act {
                Act::Succeed => Ok(format!("run {n}")),
                Act::HangPolitely => {
                    cx.control.cancel.cancelled().await;
                    Err(StepError::Cancelled)
                }
                Act::HangStubbornly => std::future::pending().await,
            }
        })
    }
    fn reconfigure(&mut self, _: &Settings) -> Result<(), StepError> {
        Ok(())
    }
}

fn settings(interval_secs: u64) -> Settings {
    let text = format!("[daemon]\ninterval_secs = {interval_secs}\n");
    Settings {
        config: Config::parse(&text, std::path::Path::new("test.toml")).unwrap(),
        policy: crate::policy::Policy::nixpkgs(),
    }
}

struct Harness {
    runs: Arc<AtomicUsize>,
    notifier: Arc<Recorder>,
    health: Arc<Mutex<Health>>,
    signals: mpsc::UnboundedSender<Signal>,
    task: tokio::task::JoinHandle<Result<(), DaemonError>>,
}

fn start(
    interval_secs: u64,
    watchdog: Option<Duration>,
    script: fn(usize) -> Act,
    loader: Loader,
) -> Harness {
    let runs = Arc::new(AtomicUsize::new(0));
    let notifier = Arc::new(Recorder {
        watchdog,
        ..Recorder::default()
    });
    let settings = settings(interval_secs);
    let health = Arc::new(Mutex::new(Health::new(
        Instant::now(),
        &settings.config.daemon,
    )));
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run_loop(LoopParts {
        settings,
        steps: vec![Box::new(Scripted {
            runs: Arc::clone(&runs),
            script,
        })],
        loader,
        signals: rx,
        notifier: Arc::clone(&notifier) as Arc<dyn Notifier>,
        clock: Arc::new(SystemClock),
        health: Arc::clone(&health),
    }));
    Harness {
        runs,
        notifier,
        health,
        signals: tx,
        task,
    }
}

fn never_reloaded() -> Loader {
    Box::new(|| panic!("no reload expected"))
}

async fn advance(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

#[tokio::test(start_paused = true)]
async fn cycles_follow_the_interval_and_a_refused_reload_keeps_the_old_one() {
    let mut attempts = 0;
    let loader: Loader = Box::new(move || {
        attempts += 1;
        if attempts == 1 {
            Err(Config::parse(
                "[daemon]\ninterval_secs = 0\n",
                std::path::Path::new("bad.toml"),
            )
            .unwrap_err()
            .into())
        } else {
            Ok(settings(10))
        }
    });
    let h = start(60, None, |_| Act::Succeed, loader);
    advance(125).await;
    assert_eq!(
        h.runs.load(Ordering::SeqCst),
        3,
        "cycles at 0, 60 and 120 s"
    );

    h.signals.send(Signal::Reload).unwrap();
    advance(50).await;
    assert_eq!(
        h.runs.load(Ordering::SeqCst),
        3,
        "the refused file changed nothing"
    );
    let report = h.health.lock().unwrap().report(Instant::now());
    assert!(report.last_reload_error.unwrap().contains("bad.toml:2:17"));

    h.signals.send(Signal::Reload).unwrap();
    advance(1).await;
    // 180 s: the 60 s cycle is due anyway; after it, every 10 s.
    advance(34).await;
    assert_eq!(h.runs.load(Ordering::SeqCst), 3 + 1 + 3);
    assert_eq!(h.notifier.count(|m| m == "RELOADING"), 2);
    assert_eq!(
        h.notifier.count(|m| m == "READY"),
        3,
        "once at start, once per reload"
    );

    h.signals.send(Signal::Shutdown).unwrap();
    h.task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_step_that_ignores_cancellation_is_dropped_after_the_grace_period() {
    let h = start(60, None, |_| Act::HangStubbornly, never_reloaded());
    advance(30).await;
    let asked = Instant::now();
    h.signals.send(Signal::Shutdown).unwrap();
    h.task.await.unwrap().unwrap();
    assert!(Instant::now() - asked >= SHUTDOWN_GRACE);
    assert!(Instant::now() - asked < SHUTDOWN_GRACE + Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_step_that_honours_cancellation_stops_at_once() {
    let h = start(60, None, |_| Act::HangPolitely, never_reloaded());
    advance(30).await;
    let asked = Instant::now();
    h.signals.send(Signal::Shutdown).unwrap();
    h.task.await.unwrap().unwrap();
    assert!(Instant::now() - asked < Duration::from_secs(1));
    assert!(h.notifier.count(|m| m.starts_with("STATUS=stopping")) == 1);
}

#[tokio::test(start_paused = true)]
async fn the_watchdog_is_fed_while_waiting_and_starves_while_a_step_hangs() {
    // The first cycle succeeds; the second (at 60 s) hangs.
    let script: fn(usize) -> Act = |n| {
        if n == 0 {
            Act::Succeed
        } else {
            Act::HangPolitely
        }
    };
    let h = start(60, Some(Duration::from_secs(10)), script, never_reloaded());
    advance(59).await;
    let fed_while_waiting = h.notifier.count(|m| m == "WATCHDOG");
    assert!(
        fed_while_waiting >= 10,
        "{fed_while_waiting} pings in 59 s of waiting"
    );
    advance(15).await; // the hang began at 60 s; pings stop once 10 s pass
    let at_stall = h.notifier.count(|m| m == "WATCHDOG");
    advance(60).await;
    assert_eq!(
        h.notifier.count(|m| m == "WATCHDOG"),
        at_stall,
        "pinged without progress"
    );
    assert_eq!(h.notifier.count(|m| m.starts_with("STATUS=STALLED")), 1);
    h.signals.send(Signal::Shutdown).unwrap();
    h.task.await.unwrap().unwrap();
}
