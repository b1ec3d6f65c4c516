//! The cost of a plan as history grows: a simulated year of
//! `nixpkgs:trunk` (300,000 jobs on four systems, about 700 evals, 1% of
//! jobs with a new build each eval, four mass breakages) written straight
//! into a store with the store's own writer, and at 100, 300 and 700 evals:
//!
//! - the plan step (`Store::plan_facts` + the engine) in this process, best
//!   of three after a first plan that keeps what it read of long failures
//!   (the daemon's connection does so every cycle), next to the same plan
//!   on the whole history
//!   (`Store::policy_facts`, what `backtest` reads);
//! - the real release binary's `plan` (wall time and peak RSS, VmHWM);
//! - the database's size.
//!
//! Run with `cargo bench --bench plan_year`. Targets: the plan step under
//! 1 s and flat in the number of stored evals, peak RSS under 150 MB.
//! `PLAN_YEAR_JOBS` sets the number of jobs (default 300000);
//! `PLAN_YEAR_DB=PATH` keeps the database there, to look into afterwards
//! (`sqlite3 PATH`, `EXPLAIN QUERY PLAN`); `PLAN_YEAR_EVALS=N` stops after
//! the checkpoints up to `N`.
//!
//! Next to wall times it reports the step's CPU time (this thread's, from
//! `/proc/thread-self/schedstat`): on a machine shared with other builds the
//! wall time says as much about the neighbours as about the step.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hydra_sentinel::config::JobsetRef;
use hydra_sentinel::policy::{self, Policy};
use hydra_sentinel::sim::{YearSpec, YearWriter};
use hydra_sentinel::store::{PlanScope, Store};

const CHECKPOINTS: [usize; 3] = [100, 300, 700];

fn main() {
    // `cargo bench` passes --bench; accept and ignore harness flags.
    let jobs: usize = std::env::var("PLAN_YEAR_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let last_checkpoint: usize = std::env::var("PLAN_YEAR_EVALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    let dir = tempfile::tempdir().unwrap();
    let db = match std::env::var_os("PLAN_YEAR_DB") {
        Some(path) => {
            let path = std::path::PathBuf::from(path);
            for suffix in ["", "-wal", "-shm"] {
                let mut file = path.clone().into_os_string();
                file.push(suffix);
                let _ = std::fs::remove_file(file);
            }
            path
        }
        None => dir.path().join("state.sqlite"),
    };
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[hydra]\nurl = \"https://hydra.nixos.org\"\n[[jobsets]]\nproject = \"nixpkgs\"\njobset = \"trunk\"\n[database]\npath = {:?}\n",
            db.display().to_string()
        ),
    )
    .unwrap();
    let trunk = JobsetRef {
        project: "nixpkgs".into(),
        jobset: "trunk".into(),
    };
    let policy = Policy::nixpkgs();
    let hydra = "https://hydra.nixos.org".parse().unwrap();
    let mut store = Store::open(&db).unwrap();
    let mut year = YearWriter::new(YearSpec::trunk(jobs));

    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "plan benchmark: a simulated year of nixpkgs:trunk, {jobs} jobs, 1% churn, 4 mass breakages"
    );
    let _ = writeln!(
        out,
        "  evals  write (s)  first plan (s)  plan step (s)  its CPU (s)  of it reading (s)  jobs listed  step peak (MB)  whole-history plan (s)  binary plan (s)  binary peak RSS (MB)  database (MB)"
    );
    for checkpoint in CHECKPOINTS.into_iter().filter(|c| *c <= last_checkpoint) {
        let start = Instant::now();
        while year.written() < checkpoint {
            year.write_eval(&mut store, &trunk).unwrap();
        }
        let write = start.elapsed();
        let now = year.newest_time() + 3600;

        // The daemon plans on its own writable connection, which keeps what
        // a plan reads of long failures for the next plan (`history_memo`).
        // The first plan after the evals written here keeps it (in service
        // each cycle keeps the few jobs that changed since the last one).
        let reader = Store::open(&db).unwrap();
        let ledger = reader.ledger().unwrap();
        let first = {
            let start = Instant::now();
            let facts = reader
                .plan_facts(&hydra, "NixOS/nixpkgs", PlanScope::new(now, &policy.streak))
                .unwrap();
            std::hint::black_box(policy::plan(&policy, &facts, &ledger, now));
            start.elapsed()
        };
        // The step's own peak: the high-water mark is reset to what this
        // process holds now (the writer's maps, the generator), so what it
        // reaches during the step is the step's.
        let baseline = status_kb("VmRSS:");
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let (step, cpu, read, listed) = (0..3)
            .map(|_| {
                let start = Instant::now();
                let cpu_start = thread_cpu();
                let facts = reader
                    .plan_facts(&hydra, "NixOS/nixpkgs", PlanScope::new(now, &policy.streak))
                    .unwrap();
                let read = start.elapsed();
                let listed: usize = facts.jobsets.iter().map(|js| js.jobs.len()).sum();
                let plan = policy::plan(&policy, &facts, &ledger, now);
                std::hint::black_box(plan);
                (start.elapsed(), thread_cpu() - cpu_start, read, listed)
            })
            .min()
            .unwrap();
        let step_peak = status_kb("VmHWM:").saturating_sub(baseline);
        let whole = {
            let start = Instant::now();
            let facts = reader.policy_facts(&hydra, "NixOS/nixpkgs").unwrap();
            let plan = policy::plan(&policy, &facts, &ledger, now);
            std::hint::black_box(plan);
            start.elapsed()
        };
        drop(reader);
        let (binary, peak_kb) = plan_binary(&config, now);
        let size = file_size(&db) + file_size(&db.with_extension("sqlite-wal"));
        let _ = writeln!(
            out,
            "  {checkpoint:>5}  {:>9.1}  {:>14.3}  {:>13.3}  {:>11.3}  {:>17.3}  {listed:>11}  {:>14.1}  {:>22.3}  {:>15.3}  {:>20.1}  {:>13.1}",
            write.as_secs_f64(),
            first.as_secs_f64(),
            step.as_secs_f64(),
            cpu.as_secs_f64(),
            read.as_secs_f64(),
            step_peak as f64 / 1024.0,
            whole.as_secs_f64(),
            binary.as_secs_f64(),
            peak_kb as f64 / 1024.0,
            size as f64 / 1e6,
        );
        let _ = out.flush();
    }
}

/// The CPU time this thread has used (the scheduler's own count, in ns).
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// A `kB` figure of this process's `/proc/self/status`.
fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix(field).map(str::to_owned))
        })
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Run `hydra-sentinel plan` as of `now`; its wall time and peak RSS (KiB).
fn plan_binary(config: &Path, now: i64) -> (Duration, u64) {
    let now = chrono::DateTime::from_timestamp(now, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let start = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_hydra-sentinel"))
        .args(["--config", config.to_str().unwrap(), "plan", "--now", &now])
        .env("HYDRA_SENTINEL_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("running hydra-sentinel");
    let (status, peak) = common::wait_with_peak_rss(child);
    let elapsed = start.elapsed();
    assert!(status.success(), "plan failed: {status}");
    (elapsed, peak)
}
